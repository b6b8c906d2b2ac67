//! Monitoring endpoints: `GET /events` (the event bus, replayed and live) and
//! `GET /containers/{id}/stats` (resource samples, once or every second). Read only: they must not
//! change a container, and they subscribe to the event bus without emitting on it.

use super::St;
use crate::container::handle::Container;
use crate::error::{Error, Result};
use crate::events::{now_nanos, Filter};
use crate::stats::Sampler;
use crate::util::RequestVersion;
use crate::util::{json, Query};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use berth_api::event::Message;
use berth_api::version::ApiVersion;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// What an events stream still has to send.
struct Feed {
    past: VecDeque<Arc<Message>>,
    /// None once only past events are wanted.
    live: Option<broadcast::Receiver<Arc<Message>>>,
    deadline: Option<tokio::time::Instant>,
    filter: Filter,
    /// Image `create` events are new in API 1.46.
    hide_image_create: bool,
}

impl Feed {
    fn shown(&self, m: &Message) -> bool {
        !(self.hide_image_create && m.kind == "image" && m.action == "create")
    }

    async fn next(
        mut self,
    ) -> Option<(std::result::Result<Bytes, std::convert::Infallible>, Feed)> {
        loop {
            let m = match self.past.pop_front() {
                Some(m) => m,
                None => {
                    let rx = self.live.as_mut()?;
                    let got = match self.deadline {
                        Some(at) => tokio::select! {
                            r = rx.recv() => r,
                            _ = tokio::time::sleep_until(at) => return None,
                        },
                        None => rx.recv().await,
                    };
                    match got {
                        Ok(m) if self.filter.includes(&m) => m,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            };
            if !self.shown(&m) {
                continue;
            }
            let line = serde_json::to_string(&*m).unwrap_or_default() + "\n";
            return Some((Ok(Bytes::from(line)), self));
        }
    }
}

/// `GET /events`: the kept events in `since`..`until`, then (unless `until` is past) the
/// live ones until `until` or until the client goes. The headers go out at once.
pub async fn events(
    State(d): St,
    RawQuery(q): RawQuery,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let since = q.unix_time("since")?;
    let until = q.unix_time("until")?;
    if let Some(u) = until {
        if u < since.unwrap_or(0) {
            return Err(Error::bad_request(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                q.get("since").unwrap_or(""),
                q.get("until").unwrap_or("")
            )));
        }
    }
    let filter = Filter::new(q.filters()?);
    let (past, rx) = d.events.subscribe(since, until, &filter);
    let now = now_nanos();
    let only_past = until.is_some_and(|u| u < now);
    let deadline = until.map(|u| {
        tokio::time::Instant::now() + Duration::from_nanos(u.saturating_sub(now).max(0) as u64)
    });
    let feed = Feed {
        past: past.into(),
        live: (!only_past).then_some(rx),
        deadline,
        filter,
        hide_image_create: version < ApiVersion(1, 46),
    };
    let body = Body::from_stream(futures_util::stream::unfold(feed, Feed::next));
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// Go's `BoolValueOrDefault`: absent means `default`, else [`Query::bool`].
fn bool_or(q: &Query, key: &str, default: bool) -> bool {
    match q.get(key) {
        None => default,
        Some(_) => q.bool(key),
    }
}

/// One sample on a blocking thread (the reads are of kernel files, but still blocking I/O).
async fn sample(mut s: Sampler) -> Result<(Sampler, berth_api::stats::StatsResponse)> {
    tokio::task::spawn_blocking(move || {
        let v = s.next();
        (s, v)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))
}

/// Sleep a second, or less if the container is removed meanwhile; false once it is.
async fn tick(c: &Container) -> bool {
    let mut rx = c.progress.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => !c.progress.borrow().removed,
        _ = rx.wait_for(|p| p.removed) => false,
    }
}

/// `GET /containers/{id}/stats`: with `stream` (the default) a sample every second for as
/// long as the container exists (empty ones while it is stopped), else one sample; that one
/// comes a second after a first, so CPU usage has something to compare with, unless
/// `one-shot` asks for it at once.
pub async fn stats(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    Extension(RequestVersion(version)): Extension<RequestVersion>,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    let stream = bool_or(&q, "stream", true);
    let one_shot = version >= ApiVersion(1, 41) && bool_or(&q, "one-shot", false);
    if stream && one_shot {
        return Err(Error::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let sampler = Sampler::new(c.clone());
    if !stream {
        let (sampler, first) = sample(sampler).await?;
        let running = first.read != berth_api::stats::ZERO_TIME;
        let out = if running && !one_shot {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sample(sampler).await?.1
        } else {
            first
        };
        return Ok(json(200, &out));
    }
    let frames =
        futures_util::stream::unfold((sampler, c, true), |(sampler, c, first)| async move {
            if !first && !tick(&c).await {
                return None;
            }
            let (sampler, s) = sample(sampler).await.ok()?;
            let line = serde_json::to_string(&s).unwrap_or_default() + "\n";
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                (sampler, c, false),
            ))
        });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(frames),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools() {
        let q = Query::parse(Some("stream=0&one-shot=true&x=no"));
        assert!(!bool_or(&q, "stream", true));
        assert!(bool_or(&q, "one-shot", false));
        assert!(!bool_or(&q, "x", true));
        assert!(bool_or(&q, "absent", true));
    }
}
