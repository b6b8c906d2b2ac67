//! `POST /images/create?fromImage=`: pull an image from a registry into the store, several
//! layers at once, each unpacked while it downloads, reporting Docker's progress messages. It works
//! on the image store, the registry client and the blob bookkeeping only: never containers,
//! networks or volumes, and never the routes (`routes::images` and the build call it).

use crate::error::{Error, Result};
use crate::state::Daemon;
use berth_api::progress::Message;
use berth_distribution::{Client, Credentials, ParsedManifest};
use berth_image::reference::Reference;
use berth_image::PullLayer;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// A layer's short id in progress messages, as Docker shows it.
pub(crate) fn short(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

/// A blocking reader fed with the chunks of a download (the unpacker is synchronous).
struct ChunkReader {
    /// Read on a blocking thread; the download task sends without blocking its worker.
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Pull every tag of a repository, one after the other.
pub async fn pull_all_tags(
    d: &Arc<Daemon>,
    repo: &str,
    platform: (&str, &str, Option<&str>),
    creds: &Credentials,
    tx: &Sender<Message>,
) -> Result<()> {
    let r = Reference::parse(repo)
        .map_err(|e| Error::bad_request(format!("invalid reference format: {e}")))?;
    let mut tags = d
        .registry
        .tags(r.domain(), r.path(), creds)
        .await
        .map_err(|e| Error::internal(format!("listing the tags of {}: {e}", r.familiar_name())))?;
    tags.sort();
    if tags.is_empty() {
        return Err(Error::not_found(format!(
            "{} has no tags",
            r.familiar_name()
        )));
    }
    for t in tags {
        pull(
            d,
            &d.registry,
            &r.with_tag(&t).to_string(),
            platform,
            creds,
            tx,
        )
        .await?;
    }
    Ok(())
}

/// Pull `image` (with `tag` when it has none) and tag it locally.
pub async fn pull(
    d: &Arc<Daemon>,
    client: &Client,
    image: &str,
    platform: (&str, &str, Option<&str>),
    creds: &Credentials,
    tx: &Sender<Message>,
) -> Result<()> {
    let r = Reference::parse(image)
        .map_err(|e| Error::bad_request(format!("invalid reference format: {e}")))?
        .with_default_tag();
    let registry = r.domain().to_string();
    let repo = r.path().to_string();
    let wanted = r.digest().or(r.tag()).unwrap_or("latest").to_string();
    let send = |m: Message| async move {
        let _ = tx.send(m).await;
    };
    let shown = r.tag().unwrap_or(&wanted).to_string();
    send(Message::status(
        &shown,
        format!("Pulling from {}", r.familiar_name()),
    ))
    .await;
    let fail = |e: berth_distribution::Error| {
        if e.is_not_found() {
            Error::not_found(format!("manifest for {} not found: {e}", r.familiar()))
        } else {
            Error::internal(format!("pulling {}: {e}", r.familiar()))
        }
    };
    let mut m = client
        .get_manifest(&registry, &repo, &wanted, creds)
        .await
        .map_err(fail)?;
    let top_digest = m.digest.clone();
    if let ParsedManifest::Index(index) = &m.parsed {
        let pick = berth_distribution::select_platform(index, platform.0, platform.1, platform.2)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no matching manifest for {}/{} in the manifest list entries",
                    if platform.0.is_empty() {
                        "linux"
                    } else {
                        platform.0
                    },
                    if platform.1.is_empty() {
                        "amd64"
                    } else {
                        platform.1
                    },
                ))
            })?
            .digest
            .clone();
        m = client
            .get_manifest(&registry, &repo, &pick, creds)
            .await
            .map_err(fail)?;
    }
    let ParsedManifest::Image(im) = &m.parsed else {
        return Err(Error::internal(format!(
            "{}: an index points to another index",
            r.familiar()
        )));
    };
    // The config is small: read it whole, checked against its digest.
    let mut cfg_stream = client
        .get_blob(
            &registry,
            &repo,
            &im.config.digest,
            Some(im.config.size),
            creds,
        )
        .await
        .map_err(fail)?;
    let mut config = Vec::new();
    while let Some(chunk) = cfg_stream.next().await {
        let chunk = chunk.map_err(|e| Error::internal(format!("config: {e}")))?;
        if config.len() + chunk.len() > 8 << 20 {
            return Err(Error::internal("image config larger than 8 MiB"));
        }
        config.extend_from_slice(&chunk);
    }
    if berth_distribution::sha256_digest(&config) != im.config.digest {
        return Err(Error::internal(format!(
            "{}: config blob does not match its digest {}",
            r.familiar(),
            im.config.digest
        )));
    }
    let layers: Vec<PullLayer> = im
        .layers
        .iter()
        .map(|l| PullLayer {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
        })
        .collect();
    let diff_ids = berth_image::config_diff_ids(&config, &im.config.digest, layers.len())?;
    let needs = {
        let (dd, c, cd, ls) = (
            d.clone(),
            config.clone(),
            im.config.digest.clone(),
            layers.clone(),
        );
        tokio::task::spawn_blocking(move || dd.images.pull_needs(&c, &cd, &ls))
            .await
            .map_err(|e| Error::internal(e.to_string()))??
    };
    for (l, need) in layers.iter().zip(&needs) {
        let status = if *need {
            "Pulling fs layer"
        } else {
            "Already exists"
        };
        send(Message::status(&short(&l.digest), status)).await;
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(
        d.cfg.max_concurrent_downloads.max(1),
    ));
    let mut tasks = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        if !needs[i] {
            continue;
        }
        let (client, registry, repo, creds) = (
            client.clone(),
            registry.clone(),
            repo.clone(),
            creds.clone(),
        );
        let (l, diff_id, sem, tx, dd) = (
            l.clone(),
            diff_ids[i].clone(),
            sem.clone(),
            tx.clone(),
            d.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let id = short(&l.digest);
            let _permit = sem
                .acquire_owned()
                .await
                .map_err(|e| Error::internal(e.to_string()))?;
            let mut stream = client
                .get_blob(&registry, &repo, &l.digest, Some(l.size), &creds)
                .await
                .map_err(|e| Error::internal(format!("layer {}: {e}", l.digest)))?;
            let (ctx, crx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
            let what = format!("layer {}", l.digest);
            let l2 = l.clone();
            let unpack = tokio::task::spawn_blocking(move || {
                let mut reader = ChunkReader {
                    rx: crx,
                    cur: Bytes::new(),
                };
                dd.images.fetch_layer(&mut reader, &l2, &diff_id, &what)
            });
            let mut got: u64 = 0;
            let mut last_report = 0u64;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(b) => {
                        got += b.len() as u64;
                        if got - last_report >= 512 * 1024 || got == l.size {
                            last_report = got;
                            let _ = tx
                                .send(Message::progress(&id, "Downloading", got, Some(l.size)))
                                .await;
                        }
                        // The unpacker stopped (it failed): its error is reported below.
                        if ctx.send(Ok(b)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = ctx.send(Err(std::io::Error::other(e.to_string()))).await;
                        break;
                    }
                }
            }
            drop(ctx);
            let fetched = unpack.await.map_err(|e| Error::internal(e.to_string()))??;
            let _ = tx.send(Message::status(&id, "Pull complete")).await;
            Ok::<_, Error>(fetched)
        }));
    }
    let mut fetched = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(f)) => fetched.push(f),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::internal(e.to_string()));
            }
        }
    }
    if let Some(e) = first_err {
        // The fetched layers are given back as they drop.
        return Err(e);
    }
    // The tag, and the repository digest Docker shows in RepoDigests (`repo@sha256:...`, the
    // digest of what was asked for: the index when there is one).
    let refs = match r.digest() {
        Some(dg) => vec![r.with_digest(dg)],
        None => vec![r.clone(), r.with_digest(&top_digest)],
    };
    let mut blobs: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
    blobs.push(im.config.digest.clone());
    let (mb, mt, cd) = (
        m.bytes.to_vec(),
        m.media_type.clone(),
        im.config.digest.clone(),
    );
    let before = d.images.resolve_id(&r.to_string()).ok();
    let dd = d.clone();
    let img = tokio::task::spawn_blocking(move || {
        dd.images
            .publish_pull(&mb, &mt, &config, &cd, &layers, fetched, refs)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    let dd = d.clone();
    let (reg2, repo2) = (registry.clone(), repo.clone());
    let _ = tokio::task::spawn_blocking(move || {
        dd.blob_sources
            .record(&reg2, &repo2, &blobs, |b| dd.images.blob_path(b).is_some())
    })
    .await;
    send(Message::status("", format!("Digest: {top_digest}"))).await;
    let status = if before.as_deref() == Some(img.id.as_str()) {
        format!("Status: Image is up to date for {}", r.familiar())
    } else {
        format!("Status: Downloaded newer image for {}", r.familiar())
    };
    send(Message::status("", status)).await;
    Ok(())
}
