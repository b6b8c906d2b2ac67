//! `POST /images/{name}/push`: send an image's blobs (those the registry lacks) and its
//! manifest to a registry, with Docker's progress messages. Like `pull`, it touches only the image
//! store, the registry client and the blob bookkeeping, never containers, networks, volumes or the
//! routes.

use crate::error::{Error, Result};
use crate::pull::short;
use crate::state::Daemon;
use berth_api::progress::Message;
use berth_distribution::{Client, Credentials, ParsedManifest};
use berth_image::reference::Reference;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// Push `name` (one tag, or every tag of the repository when it has none and `all` is set).
pub async fn push(
    d: &Arc<Daemon>,
    client: &Client,
    name: &str,
    tag: Option<&str>,
    creds: &Credentials,
    tx: &Sender<Message>,
) -> Result<()> {
    let base = Reference::parse(name)
        .map_err(|e| Error::bad_request(format!("invalid reference format: {e}")))?;
    let tags: Vec<String> = match tag.or(base.tag()) {
        Some(t) => vec![t.to_string()],
        None => {
            // All tags of the repository, as `docker push -a` (and a bare name) does.
            let repo = base.name();
            let mut v: Vec<String> = d
                .images
                .list()?
                .into_iter()
                .flat_map(|i| i.repo_tags)
                .filter_map(|t| {
                    let r = Reference::parse(&t).ok()?;
                    (r.name() == repo)
                        .then(|| r.tag().map(String::from))
                        .flatten()
                })
                .collect();
            v.sort();
            v.dedup();
            if v.is_empty() {
                return Err(Error::not_found(format!(
                    "An image does not exist locally with the tag: {}",
                    base.familiar_name()
                )));
            }
            v
        }
    };
    let registry = base.domain().to_string();
    let repo = base.path().to_string();
    let send = |m: Message| async move {
        let _ = tx.send(m).await;
    };
    send(Message::status(
        "",
        format!("The push refers to repository [{}]", base.name()),
    ))
    .await;
    for t in tags {
        let r = base.with_tag(&t);
        // The image as it is now: the pushed digest is recorded for it even if the tag moves.
        let image_id = d.images.resolve_id(&r.to_string()).map_err(|_| {
            Error::not_found(format!(
                "An image does not exist locally with the tag: {}",
                r.familiar()
            ))
        })?;
        let (manifest, media_type) = d.images.manifest(&image_id).map_err(|_| {
            Error::not_found(format!(
                "An image does not exist locally with the tag: {}",
                r.familiar()
            ))
        })?;
        let parsed = berth_distribution::parse_manifest(&manifest, Some(&media_type))
            .map_err(|e| Error::internal(format!("{}: stored manifest: {e}", r.familiar())))?;
        let ParsedManifest::Image(im) = parsed else {
            return Err(Error::internal(format!(
                "{}: pushing an index is not supported",
                r.familiar()
            )));
        };
        let fail = |e: berth_distribution::Error| Error::internal(e.to_string());
        for blob in im.layers.iter().chain(std::iter::once(&im.config)) {
            let is_layer = blob.digest != im.config.digest;
            let id = short(&blob.digest);
            if client
                .blob_exists(&registry, &repo, &blob.digest, creds)
                .await
                .map_err(fail)?
                .is_some()
            {
                if is_layer {
                    send(Message::status(&id, "Layer already exists")).await;
                }
                continue;
            }
            // Another repository of this registry may have it: ask for a mount first.
            let mut mounted = None;
            for from in d.blob_sources.candidates(&blob.digest, &registry, &repo) {
                match client
                    .mount_blob(&registry, &repo, &blob.digest, &from, creds)
                    .await
                {
                    Ok(true) => {
                        mounted = Some(from);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(%from, error = %e, "cross-repository mount"),
                }
            }
            if let Some(from) = mounted {
                if is_layer {
                    send(Message::status(&id, format!("Mounted from {from}"))).await;
                }
                continue;
            }
            let path = d.images.blob_path(&blob.digest).ok_or_else(|| {
                Error::internal(format!("blob {} is missing from the store", blob.digest))
            })?;
            if is_layer {
                send(Message::status(&id, "Preparing")).await;
            }
            let total = blob.size;
            let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let report = {
                let (tx, id) = (tx.clone(), id.clone());
                tokio::spawn(async move {
                    let mut last = 0u64;
                    while let Some(sent) = prx.recv().await {
                        if sent - last >= 512 * 1024 || sent == total {
                            last = sent;
                            let _ = tx
                                .send(Message::progress(&id, "Pushing", sent, Some(total)))
                                .await;
                        }
                    }
                })
            };
            let progress = move |sent: u64| {
                let _ = ptx.send(sent);
            };
            let res = client
                .push_blob(&registry, &repo, &blob.digest, &path, &progress, creds)
                .await;
            drop(progress);
            let _ = report.await;
            res.map_err(fail)?;
            if is_layer {
                send(Message::status(&id, "Pushed")).await;
            }
        }
        let digest = client
            .put_manifest(&registry, &repo, &t, &media_type, &manifest, creds)
            .await
            .map_err(fail)?;
        let mut blobs: Vec<String> = im.layers.iter().map(|l| l.digest.clone()).collect();
        blobs.push(im.config.digest.clone());
        let (dd, reg2, repo2, local) =
            (d.clone(), registry.clone(), repo.clone(), image_id.clone());
        let pushed_ref = r.with_digest(&digest);
        let _ = tokio::task::spawn_blocking(move || {
            dd.blob_sources.record(&reg2, &repo2, &blobs, |b| {
                dd.images.blob_path(b).is_some()
            });
            // Docker records the pushed digest in the image's RepoDigests.
            if let Err(e) = dd.images.add_digest_reference(&local, &pushed_ref) {
                tracing::warn!(reference = %pushed_ref.familiar(), error = %e, "recording the pushed digest");
            }
        })
        .await;
        send(Message::status(
            "",
            format!("{t}: digest: {digest} size: {}", manifest.len()),
        ))
        .await;
    }
    Ok(())
}
