//! Blob upload sessions: chunks are appended to `uploads/<id>/data` while a running sha256 is
//! kept in memory (recomputed from the data after a restart); the finished file is verified
//! against the client's digest and only then renamed into the blob store. Sessions left alone
//! for too long (an interrupted push) are expired: by a serving registry's periodic sweep
//! ([`Uploads::expire`]) and by gc.

use crate::error::{ApiError, Code};
use crate::fsutil;
use crate::names::Digest;
use crate::storage::Store;
use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// The live state of one session; its mutex serializes the requests on it.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// Bytes received so far (the data file's length).
    pub size: u64,
    /// sha256 of those bytes; `None` until recomputed for a session found on disk.
    hasher: Option<Sha256>,
    /// Set when the session was finished or cancelled under this lock.
    pub closed: bool,
}

#[derive(Debug)]
pub struct Handle {
    pub repo: String,
    pub session: tokio::sync::Mutex<Session>,
}

/// Every session this process knows about (the rest are loaded from disk on first use).
#[derive(Debug)]
pub struct Uploads {
    store: Store,
    live: Mutex<HashMap<String, Arc<Handle>>>,
}

/// Sessions kept in memory; past this, idle ones are dropped (and reloaded from disk if used).
const LIVE_MAX: usize = 4096;

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Why streaming a request body to a file failed.
enum StreamError {
    Client(String),
    Io(io::Error),
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> ApiError {
        match e {
            StreamError::Client(m) => ApiError::new(
                Code::BlobUploadInvalid,
                format!("reading the request body: {m}"),
            ),
            StreamError::Io(e) => ApiError::internal(e),
        }
    }
}

/// Copies `body` to the end of `file` (already positioned), hashing it; returns the byte count.
async fn stream_into(
    file: &mut tokio::fs::File,
    body: Body,
    hasher: &mut Sha256,
) -> Result<u64, StreamError> {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| StreamError::Client(e.to_string()))?;
        file.write_all(&chunk).await.map_err(StreamError::Io)?;
        hasher.update(&chunk);
        n += chunk.len() as u64;
    }
    file.flush().await.map_err(StreamError::Io)?;
    Ok(n)
}

/// Receives a whole blob into a temp file: `(temp path, digest)`. Nothing is left behind on
/// failure.
pub async fn receive_blob(store: &Store, body: Body) -> Result<(PathBuf, Digest), ApiError> {
    let tmp = store.temp_path()?;
    let result = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(StreamError::Io)?;
        let mut h = Sha256::new();
        stream_into(&mut file, body, &mut h).await?;
        Ok::<_, StreamError>(Digest::from_hasher(h))
    }
    .await;
    match result {
        Ok(d) => Ok((tmp, d)),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e.into())
        }
    }
}

fn hash_file(path: &Path, len: u64) -> io::Result<Sha256> {
    let mut f = std::fs::File::open(path)?.take(len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h)
}

/// How long the session in `dir` has been left alone at `now`: since its data was last written
/// (or, for the debris of a crash while it was created, since the directory changed); a time
/// in the future counts as now. None once the directory is gone.
pub fn idle_for(dir: &Path, now: SystemTime) -> Option<Duration> {
    let meta = std::fs::metadata(dir.join("data"))
        .or_else(|_| std::fs::metadata(dir))
        .ok()?;
    let modified = meta.modified().ok()?;
    Some(now.duration_since(modified).unwrap_or_default())
}

/// Drops the sessions no request is using: abandoned uploads must not pin memory. The map's
/// lock is held, so no request can pick one up meanwhile.
fn evict_idle(live: &mut HashMap<String, Arc<Handle>>) {
    live.retain(|_, h| Arc::strong_count(h) > 1);
}

impl Uploads {
    pub fn new(store: Store) -> Uploads {
        Uploads {
            store,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.store.uploads_dir().join(id)
    }

    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("data")
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Handle>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for repository `repo`.
    pub fn create(&self, repo: &str) -> io::Result<String> {
        let id = fsutil::random_id()?;
        let dir = self.dir(&id);
        std::fs::create_dir(&dir)?;
        std::fs::File::create(dir.join("data"))?;
        fsutil::write_atomic(&self.store.tmp_dir(), &dir.join("repo"), repo.as_bytes())?;
        let handle = Arc::new(Handle {
            repo: repo.to_string(),
            session: tokio::sync::Mutex::new(Session {
                id: id.clone(),
                size: 0,
                hasher: Some(Sha256::new()),
                closed: false,
            }),
        });
        let mut live = self.live();
        if live.len() >= LIVE_MAX {
            evict_idle(&mut live);
        }
        live.insert(id.clone(), handle);
        Ok(id)
    }

    /// The session `id` of repository `repo`, from memory or from disk.
    pub fn get(&self, repo: &str, id: &str) -> Result<Arc<Handle>, ApiError> {
        let unknown = || ApiError::new(Code::BlobUploadUnknown, "blob upload unknown to registry");
        if !valid_id(id) {
            return Err(unknown());
        }
        if let Some(h) = self.live().get(id) {
            return if h.repo == repo {
                Ok(h.clone())
            } else {
                Err(unknown())
            };
        }
        let dir = self.dir(id);
        let owner = match std::fs::read_to_string(dir.join("repo")) {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let size = match std::fs::metadata(dir.join("data")) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let handle = Arc::new(Handle {
            repo: owner,
            session: tokio::sync::Mutex::new(Session {
                id: id.to_string(),
                size,
                hasher: None,
                closed: false,
            }),
        });
        // Another request may have loaded it meanwhile: keep the first.
        let handle = self.live().entry(id.to_string()).or_insert(handle).clone();
        if handle.repo == repo {
            Ok(handle)
        } else {
            Err(unknown())
        }
    }

    /// Deletes a session's data and forgets it; the caller holds its lock. The session is
    /// closed first and leaves memory only once its directory is gone, so a request either
    /// finds it closed or finds nothing.
    pub fn remove(&self, session: &mut Session) -> io::Result<()> {
        session.closed = true;
        let removed = std::fs::remove_dir_all(self.dir(&session.id));
        self.live().remove(&session.id);
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the sessions left alone for `max_age` or longer at `now` (see [`idle_for`])
    /// that no request is using: a request holding a session (a chunk still streaming in)
    /// keeps it whatever its age. Returns how many went.
    pub fn expire(&self, max_age: Duration, now: SystemTime) -> io::Result<usize> {
        let mut removed = 0;
        for id in fsutil::list_dir(&self.store.uploads_dir())? {
            let dir = self.dir(&id);
            let stale = || idle_for(&dir, now).is_some_and(|age| age >= max_age);
            if !valid_id(&id) || !stale() {
                continue;
            }
            let repo = match std::fs::read_to_string(dir.join("repo")) {
                Ok(repo) => repo,
                // Debris of a crash while the session was created: no request can reach it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match std::fs::remove_dir_all(&dir) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => removed += 1,
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Through the same handle as requests, so that they see the session closed.
            let Ok(handle) = self.get(&repo, &id) else {
                continue;
            };
            let Ok(mut session) = handle.session.try_lock() else {
                continue;
            };
            // A request may have written to it since the first look.
            if session.closed || !stale() {
                continue;
            }
            self.remove(&mut session)?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn hasher(&self, session: &mut Session) -> Result<Sha256, ApiError> {
        if let Some(h) = &session.hasher {
            return Ok(h.clone());
        }
        let path = self.data_path(&session.id);
        let len = session.size;
        let h = tokio::task::spawn_blocking(move || hash_file(&path, len))
            .await
            .map_err(|e| ApiError::internal(io::Error::other(e)))??;
        session.hasher = Some(h.clone());
        Ok(h)
    }

    /// Appends a chunk. With `expect_len` (from `Content-Range`), the body must be exactly that
    /// long. On any failure the data is cut back to where it was.
    pub async fn append(
        &self,
        session: &mut Session,
        body: Body,
        expect_len: Option<u64>,
    ) -> Result<(), ApiError> {
        let mut h = self.hasher(session).await?;
        let path = self.data_path(&session.id);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await?;
        file.seek(io::SeekFrom::Start(session.size)).await?;
        let result = stream_into(&mut file, body, &mut h).await;
        let error = match (result, expect_len) {
            (Ok(n), Some(want)) if n != want => Some(
                ApiError::new(
                    Code::SizeInvalid,
                    format!("Content-Range announces {want} bytes, the body had {n}"),
                )
                .with_detail(serde_json::json!({"expected": want, "received": n})),
            ),
            (Ok(n), _) => {
                session.size += n;
                session.hasher = Some(h);
                None
            }
            (Err(e), _) => Some(e.into()),
        };
        match error {
            None => Ok(()),
            Some(e) => {
                file.set_len(session.size).await?;
                Err(e)
            }
        }
    }

    /// Checks the received data against `digest` and publishes it as that blob, linked into
    /// `repo`. On a mismatch nothing is published and the error says why.
    pub async fn finish(
        &self,
        repo: &str,
        session: &mut Session,
        digest: &Digest,
    ) -> Result<(), ApiError> {
        let h = self.hasher(session).await?;
        let actual = Digest::from_hasher(h);
        if &actual != digest {
            return Err(ApiError::new(
                Code::DigestInvalid,
                "provided digest did not match uploaded content",
            )
            .with_detail(
                serde_json::json!({"expected": digest.to_string(), "actual": actual.to_string()}),
            ));
        }
        let store = self.store.clone();
        let path = self.data_path(&session.id);
        let (repo, d) = (repo.to_string(), digest.clone());
        tokio::task::spawn_blocking(move || {
            store.publish_blob(&path, &d)?;
            store.link_blob(&repo, &d)
        })
        .await
        .map_err(|e| ApiError::internal(io::Error::other(e)))??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads(tag: &str) -> (Store, Uploads) {
        let p = std::env::temp_dir().join(format!(
            "berth-registry-upload-{tag}-{}-{}",
            std::process::id(),
            fsutil::random_id().unwrap()
        ));
        let store = Store::open(&p).unwrap();
        (store.clone(), Uploads::new(store))
    }

    #[tokio::test]
    async fn chunks_hash_across_a_restart() {
        let (store, up) = uploads("restart");
        let id = up.create("r").unwrap();
        let h = up.get("r", &id).unwrap();
        {
            let mut s = h.session.lock().await;
            up.append(&mut s, Body::from("hello "), Some(6))
                .await
                .unwrap();
            assert_eq!(s.size, 6);
        }
        // A new process finds the session on disk and recomputes the hash.
        let up2 = Uploads::new(store.clone());
        assert!(up2.get("other", &id).is_err());
        let h2 = up2.get("r", &id).unwrap();
        let mut s = h2.session.lock().await;
        assert_eq!(s.size, 6);
        assert!(s.hasher.is_none());
        up2.append(&mut s, Body::from("world"), None).await.unwrap();
        let d = Digest::of(b"hello world");
        up2.finish("r", &mut s, &d).await.unwrap();
        assert_eq!(std::fs::read(store.blob_path(&d)).unwrap(), b"hello world");
        assert_eq!(store.linked_blob_size("r", &d).unwrap(), Some(11));
        std::fs::remove_dir_all(store.root()).unwrap();
    }

    #[tokio::test]
    async fn short_chunk_is_rolled_back_and_bad_digest_publishes_nothing() {
        let (store, up) = uploads("rollback");
        let id = up.create("r").unwrap();
        let h = up.get("r", &id).unwrap();
        let mut s = h.session.lock().await;
        up.append(&mut s, Body::from("abc"), None).await.unwrap();
        let e = up
            .append(&mut s, Body::from("de"), Some(5))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(Code::SizeInvalid));
        assert_eq!(s.size, 3);
        assert_eq!(std::fs::read(up.data_path(&id)).unwrap(), b"abc");
        let wrong = Digest::of(b"abd");
        let e = up.finish("r", &mut s, &wrong).await.unwrap_err();
        assert_eq!(e.code(), Some(Code::DigestInvalid));
        assert!(store.all_blobs().unwrap().is_empty());
        up.remove(&mut s).unwrap();
        assert!(up.get("r", &id).is_err());
        drop(s);

        // Idle sessions leave memory, busy ones stay; both keep working.
        let idle = up.create("r").unwrap();
        let busy = up.create("r").unwrap();
        let held = up.get("r", &busy).unwrap();
        evict_idle(&mut up.live());
        assert_eq!(up.live().len(), 1);
        assert!(up.live().contains_key(&busy));
        let h = up.get("r", &idle).unwrap();
        let mut s = h.session.lock().await;
        up.append(&mut s, Body::from("x"), None).await.unwrap();
        up.finish("r", &mut s, &Digest::of(b"x")).await.unwrap();
        drop(held);
        assert!(up.get("r", "../../etc").is_err());
        std::fs::remove_dir_all(store.root()).unwrap();
    }

    #[tokio::test]
    async fn expire_spares_fresh_and_busy_sessions() {
        let (store, up) = uploads("expire");
        let old = up.create("r").unwrap();
        let fresh = up.create("r").unwrap();
        let busy = up.create("r").unwrap();
        let debris = store.uploads_dir().join("0".repeat(32));
        std::fs::create_dir(&debris).unwrap();
        let h = up.get("r", &busy).unwrap();
        let held = h.session.lock().await;
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let back = now - 2 * hour;
        for id in [&old, &busy] {
            let f = std::fs::File::options()
                .write(true)
                .open(up.data_path(id))
                .unwrap();
            f.set_modified(back).unwrap();
        }
        std::fs::File::open(&debris)
            .unwrap()
            .set_modified(back)
            .unwrap();
        assert!(idle_for(&up.dir(&old), now).is_some_and(|a| a >= 2 * hour));
        assert_eq!(up.expire(hour, now).unwrap(), 2);
        assert!(!up.dir(&old).exists() && !debris.exists());
        assert!(up.get("r", &old).is_err());
        assert!(up.dir(&fresh).exists() && up.dir(&busy).exists());
        drop(held);
        // Once its request is done, the old busy one goes too; a 0 age takes everything.
        assert_eq!(up.expire(hour, now).unwrap(), 1);
        let mut s = h.session.lock().await;
        assert!(s.closed);
        assert!(up.append(&mut s, Body::from("x"), None).await.is_err());
        drop(s);
        assert_eq!(up.expire(Duration::ZERO, SystemTime::now()).unwrap(), 1);
        assert!(store.uploads_dir().read_dir().unwrap().next().is_none());
        std::fs::remove_dir_all(store.root()).unwrap();
    }
}
