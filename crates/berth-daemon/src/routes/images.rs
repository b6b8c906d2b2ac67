//! Image endpoints: list, inspect, history, tag, remove, prune, import, load/save and commit. They
//! read container records only (the `Containers` counts, whether an image is in use), and never
//! touch networks or volumes.

use super::St;
use crate::error::{Error, Result};
use crate::state::Daemon;
use crate::util::{json, Query};
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use berth_api::image::{DeleteItem, HistoryItem, Inspect, RootFs, Summary};
use berth_api::progress::Message as JsonMessage;
use http_body_util::BodyExt;
use std::io::Write;
use std::sync::Arc;

fn unix(ts: Option<&str>) -> i64 {
    ts.and_then(berth_api::timefmt::parse)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub async fn list(State(d): St, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let filters = q.filters()?;
    let images = d.images.list()?;
    let records: Vec<_> = d.all().iter().map(|c| c.snapshot()).collect();
    // Untagged images that other images were built on (build steps) show only with `all`.
    let parents: std::collections::HashSet<String> =
        images.iter().filter_map(|i| i.parent.clone()).collect();
    let all = q.bool("all");
    let mut out = Vec::new();
    for mut img in images {
        if !all
            && img.repo_tags.is_empty()
            && img.repo_digests.is_empty()
            && parents.contains(&img.id)
        {
            continue;
        }
        if let Some(pats) = filters.get("reference") {
            // Docker keeps only the tags that match.
            img.repo_tags
                .retain(|t| pats.iter().any(|p| reference_matches(p, t)));
        }
        let mut keep = true;
        for (k, vals) in &filters {
            keep &= match k.as_str() {
                "dangling" => vals.iter().all(|v| {
                    let dangling = img.repo_tags.is_empty();
                    if v == "true" || v == "1" {
                        dangling
                    } else {
                        !dangling
                    }
                }),
                "reference" => !img.repo_tags.is_empty(),
                "label" => vals.iter().all(|v| {
                    let l = &img.labels;
                    match v.split_once('=') {
                        Some((k, val)) => l.get(k).is_some_and(|x| x == val),
                        None => l.contains_key(v),
                    }
                }),
                "before" | "since" => {
                    let Some(first) = vals.first() else {
                        continue;
                    };
                    let other = d.images.summary(first)?;
                    let (a, b) = (unix(img.created.as_deref()), unix(other.created.as_deref()));
                    if k == "before" {
                        a < b
                    } else {
                        a > b
                    }
                }
                other => return Err(Error::bad_request(format!("invalid filter '{other}'"))),
            };
        }
        if !keep {
            continue;
        }
        out.push(summary(&img, &records));
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.created));
    Ok(json(200, &out))
}

/// An image as `GET /images/json` lists it; `Containers` counts those of `records` using it.
pub fn summary(img: &berth_image::ImageSummary, records: &[crate::container::Record]) -> Summary {
    Summary {
        id: img.id.clone(),
        parent_id: img.parent.clone().unwrap_or_default(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        created: unix(img.created.as_deref()),
        size: img.size as i64,
        shared_size: -1,
        virtual_size: img.size as i64,
        labels: img.labels.clone(),
        containers: records.iter().filter(|r| r.image_id == img.id).count() as i64,
    }
}

/// Docker's `reference` filter: a glob on the name, optionally with a tag.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let (name, t) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let (pname, ptag) = match pattern.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (pattern, None),
    };
    glob(pname, name) && ptag.is_none_or(|p| glob(p, t))
}

fn glob(p: &str, s: &str) -> bool {
    match p.split_once('*') {
        None => p == s,
        Some((pre, rest)) => {
            if !s.starts_with(pre) {
                return false;
            }
            let s = &s[pre.len()..];
            (0..=s.len())
                .any(|i| s.is_char_boundary(i) && !s[..i].contains('/') && glob(rest, &s[i..]))
        }
    }
}

fn inspect(img: &berth_image::Image) -> Inspect {
    let cfg = img.config.config().clone().unwrap_or_default();
    let config = berth_api::container::Config {
        user: cfg.user().clone().unwrap_or_default(),
        env: cfg.env().clone(),
        cmd: cfg.cmd().clone(),
        entrypoint: cfg.entrypoint().clone(),
        working_dir: cfg.working_dir().clone().unwrap_or_default(),
        labels: cfg.labels().clone().map(|l| l.into_iter().collect()),
        stop_signal: cfg.stop_signal().clone(),
        exposed_ports: cfg.exposed_ports().clone().map(|p| {
            p.into_iter()
                .map(|k| (k, berth_api::container::Empty {}))
                .collect()
        }),
        volumes: cfg.volumes().clone().map(|v| {
            v.into_iter()
                .map(|k| (k, berth_api::container::Empty {}))
                .collect()
        }),
        healthcheck: img
            .healthcheck
            .clone()
            .and_then(|h| serde_json::from_value(h).ok()),
        on_build: img.on_build.clone(),
        shell: img.shell.clone(),
        ..Default::default()
    };
    let comment = img
        .config
        .history()
        .as_ref()
        .and_then(|h| h.last())
        .and_then(|h| h.comment().clone())
        .unwrap_or_default();
    Inspect {
        id: img.id.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        parent: img.parent.clone().unwrap_or_default(),
        comment,
        created: img.created.clone().unwrap_or_default(),
        docker_version: String::new(),
        author: img.config.author().clone().unwrap_or_default(),
        config,
        architecture: img.config.architecture().to_string(),
        os: img.config.os().to_string(),
        size: img.size as i64,
        virtual_size: img.size as i64,
        graph_driver: serde_json::json!({"Name": "overlay2", "Data": null}),
        root_fs: RootFs {
            kind: "layers".into(),
            layers: img.layers.clone(),
        },
        metadata: serde_json::json!({"LastTagTime": "0001-01-01T00:00:00Z"}),
    }
}

/// `/images/{name}/...`: names contain slashes, so the action is taken from the path's end.
pub async fn by_name(
    State(d): St,
    method: Method,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let path = req.uri().path().to_string();
    let rest = path.trim_start_matches("/images/");
    let rest = crate::util::decode(rest);
    let (name, action) = match rest.rsplit_once('/') {
        Some((n, a)) if matches!(a, "json" | "history" | "tag" | "get" | "push") => {
            (n.to_string(), a)
        }
        _ => (rest.clone(), ""),
    };
    match (method, action) {
        (Method::GET, "json") => Ok(json(200, &inspect(&d.images.get(&name)?))),
        (Method::GET, "history") => {
            let h: Vec<HistoryItem> = d
                .images
                .history(&name)?
                .into_iter()
                .map(|h| HistoryItem {
                    id: h.id,
                    created: h.created,
                    created_by: h.created_by,
                    tags: Some(h.tags),
                    size: h.size,
                    comment: h.comment,
                })
                .collect();
            Ok(json(200, &h))
        }
        (Method::POST, "tag") => {
            let repo = q.get("repo").unwrap_or("");
            if repo.is_empty() {
                return Err(Error::bad_request(
                    "repository name must have at least one component",
                ));
            }
            let target = match q.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_string(),
            };
            d.images.tag(&name, &target)?;
            if let Ok(tagged) = d.images.resolve_id(&target) {
                d.events
                    .image_event(&d.images, &tagged, &familiar(&target, true), "tag");
            }
            Ok((axum::http::StatusCode::CREATED, "").into_response())
        }
        (Method::GET, "get") => save(d, vec![name]).await,
        (Method::POST, "push") => {
            let creds = crate::registry_auth::from_headers(req.headers())?;
            let tag = q.get("tag").filter(|t| !t.is_empty()).map(String::from);
            berth_image::reference::Reference::parse(&name)
                .map_err(|e| Error::bad_request(format!("invalid reference format: {e}")))?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<JsonMessage>(64);
            let dd = d.clone();
            tokio::spawn(async move {
                match crate::push::push(&dd, &dd.registry, &name, tag.as_deref(), &creds, &tx).await
                {
                    Ok(()) => {
                        let pushed = match &tag {
                            Some(t) => format!("{name}:{t}"),
                            None => name.clone(),
                        };
                        registry_event(&dd, &pushed, "push");
                    }
                    Err(e) => {
                        let _ = tx.send(JsonMessage::error(e.0.message)).await;
                    }
                }
            });
            let stream = async_stream_lines(move || rx.blocking_recv().map(|m| m.line()));
            Ok((
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                stream,
            )
                .into_response())
        }
        (Method::DELETE, "") => {
            let force = q.bool("force");
            let prune_parents = !q.bool("noprune");
            let dd = d.clone();
            let (before, items) = tokio::task::spawn_blocking(move || {
                let in_use = |id: &str| {
                    dd.image_in_use(id)
                        .is_some_and(|(_, running)| running || !force)
                };
                let before = dd.images.list()?;
                let items = dd
                    .images
                    .delete_with(&name, force, prune_parents, &in_use)?;
                Ok::<_, Error>((before, items))
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
            delete_events(&d, &before, &items);
            let out: Vec<DeleteItem> = items.into_iter().map(delete_item).collect();
            Ok(json(200, &out))
        }
        _ => Err(Error::not_found(format!("page not found: {path}"))),
    }
}

/// `busybox:latest` for `busybox` (with `default_tag`), `127.0.0.1:5000/x@sha256:..`: a
/// reference as Docker names it in events; the input itself if it does not parse.
fn familiar(reference: &str, default_tag: bool) -> String {
    match berth_image::reference::Reference::parse(reference) {
        Ok(r) if default_tag => r.with_default_tag().familiar(),
        Ok(r) => r.familiar(),
        Err(_) => reference.to_string(),
    }
}

/// Docker's `pull`/`push` event: the reference as asked for, named by its repository.
fn registry_event(d: &Daemon, reference: &str, action: &str) {
    let name = berth_image::reference::Reference::parse(reference)
        .map(|r| r.familiar_name())
        .unwrap_or_else(|_| reference.to_string());
    d.events
        .image_event(&d.images, &familiar(reference, false), &name, action);
}

/// `untag` and `delete` events for what a removal did, in its order; `before` is the image
/// list from before it, which tells whose tags went and which ids were images (not layers).
fn delete_events(
    d: &Daemon,
    before: &[berth_image::ImageSummary],
    items: &[berth_image::DeleteItem],
) {
    for item in items {
        match item {
            berth_image::DeleteItem::Untagged(r) => {
                if let Some(img) = before
                    .iter()
                    .find(|i| i.repo_tags.contains(r) || i.repo_digests.contains(r))
                {
                    d.events
                        .image_event_labelled(&img.id, &img.id, "untag", img.labels.clone());
                }
            }
            berth_image::DeleteItem::Deleted(id) => {
                if before.iter().any(|i| &i.id == id) {
                    d.events
                        .image_event_labelled(id, id, "delete", Default::default());
                }
            }
        }
    }
}

fn delete_item(i: berth_image::DeleteItem) -> DeleteItem {
    match i {
        berth_image::DeleteItem::Untagged(s) => DeleteItem {
            untagged: Some(s),
            deleted: None,
        },
        berth_image::DeleteItem::Deleted(s) => DeleteItem {
            untagged: None,
            deleted: Some(s),
        },
    }
}

pub async fn prune(State(d): St, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let filters = q.filters()?;
    let all = filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
    let filter = crate::prune::PruneFilter::new(&filters, &["dangling"])?;
    let dd = d.clone();
    let (before, (items, reclaimed)) = tokio::task::spawn_blocking(move || {
        // Kept: images a container uses, and those the until/label filters leave out.
        let keep = |id: &str| {
            dd.image_in_use(id).is_some()
                || dd
                    .images
                    .summary(id)
                    .is_ok_and(|i| !filter.matches(i.created.as_deref().unwrap_or(""), &i.labels))
        };
        let before = dd.images.list()?;
        Ok::<_, Error>((before, dd.images.prune(all, &keep)?))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    delete_events(&d, &before, &items);
    d.events.emit(
        "image",
        "prune",
        "",
        std::collections::BTreeMap::from([("reclaimed".to_string(), reclaimed.to_string())]),
    );
    let out: Vec<DeleteItem> = items.into_iter().map(delete_item).collect();
    Ok(json(
        200,
        &serde_json::json!({"ImagesDeleted": out, "SpaceReclaimed": reclaimed}),
    ))
}

/// Spool a request body into a temp file under the data root.
async fn spool(d: &Daemon, body: Body) -> Result<std::fs::File> {
    let dir = d.cfg.data_root.join("tmp");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "upload-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::bad_request(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            f.write_all(&data)?;
        }
    }
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
    Ok(f)
}

/// A body streaming the lines `next` yields until it returns None (it may block).
fn async_stream_lines(
    mut next: impl FnMut() -> Option<String> + Send + 'static,
) -> axum::body::Body {
    crate::util::stream_body(move |w| {
        while let Some(line) = next() {
            w.write_all(line.as_bytes())?;
            w.flush()?;
        }
        Ok(())
    })
}

fn message_stream(lines: Vec<JsonMessage>) -> Response {
    let body: String = lines
        .iter()
        .map(|m| serde_json::to_string(m).unwrap_or_default() + "\n")
        .collect();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `POST /images/create`: import from the request body (`fromSrc=-`); pulling is not here yet.
pub async fn create(State(d): St, RawQuery(q): RawQuery, req: Request) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    if let Some(img) = q.get("fromImage").filter(|s| !s.is_empty()) {
        let mut name = img.to_string();
        let tag = q.get("tag").filter(|t| !t.is_empty());
        if let Some(t) = tag {
            if t.starts_with("sha256:") {
                name = format!("{name}@{t}");
            } else {
                name = format!("{name}:{t}");
            }
        }
        // No tag in the name or the query: every tag (`docker pull -a`).
        let all_tags = tag.is_none() && {
            let last = img.rsplit('/').next().unwrap_or(img);
            !last.contains(':') && !img.contains('@')
        };
        let creds = crate::registry_auth::from_headers(req.headers())?;
        let platform = crate::registry_auth::platform(q.get("platform"))?;
        // Checked before the 200 goes out, so a bad name is a plain 400.
        berth_image::reference::Reference::parse(&name)
            .map_err(|e| Error::bad_request(format!("invalid reference format: {e}")))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<JsonMessage>(64);
        let dd = d.clone();
        tokio::spawn(async move {
            let p = (
                platform.0.as_str(),
                platform.1.as_str(),
                platform.2.as_deref(),
            );
            let res = if all_tags {
                crate::pull::pull_all_tags(&dd, &name, p, &creds, &tx).await
            } else {
                crate::pull::pull(&dd, &dd.registry, &name, p, &creds, &tx).await
            };
            match res {
                Ok(()) => registry_event(&dd, &name, "pull"),
                Err(e) => {
                    let _ = tx.send(JsonMessage::error(e.0.message)).await;
                }
            }
        });
        let stream = async_stream_lines(move || rx.blocking_recv().map(|m| m.line()));
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            stream,
        )
            .into_response());
    }
    let Some(src) = q.get("fromSrc") else {
        return Err(Error::bad_request("fromImage or fromSrc is required"));
    };
    if src != "-" {
        return Err(Error::bad_request(format!(
            "importing from a URL ({src}) is not supported; send the tarball in the body with fromSrc=-"
        )));
    }
    let reference = q.get("repo").filter(|s| !s.is_empty()).map(|r| {
        match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{r}:{t}"),
            None => r.to_string(),
        }
    });
    let tagged = reference.as_deref().map(|r| familiar(r, true));
    let changes: Vec<String> = crate::util::query_all(req.uri().query(), "changes");
    let opts = berth_image::ImportOptions {
        reference,
        changes,
        message: q.get("message").filter(|s| !s.is_empty()).map(String::from),
    };
    let mut file = spool(&d, req.into_body()).await?;
    let dd = d.clone();
    let img = tokio::task::spawn_blocking(move || dd.images.import(&mut file, &opts))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    match img {
        Ok(img) => {
            if let Some(t) = &tagged {
                d.events.image_event(&d.images, &img.id, t, "tag");
            }
            d.events.image_event(&d.images, &img.id, &img.id, "import");
            Ok(message_stream(vec![JsonMessage::status("", img.id)]))
        }
        Err(e) => Ok(message_stream(vec![JsonMessage::error(e.to_string())])),
    }
}

pub async fn load(State(d): St, RawQuery(q): RawQuery, req: Request) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let quiet = q.bool("quiet");
    let mut file = spool(&d, req.into_body()).await?;
    let dd = d.clone();
    let res = tokio::task::spawn_blocking(move || dd.images.load(&mut file))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    let lines = match res {
        Ok(lines) => {
            load_events(&d, &lines);
            lines
        }
        Err(e) => {
            if quiet {
                return Err(e.into());
            }
            return Ok(message_stream(vec![JsonMessage::error(e.to_string())]));
        }
    };
    let lines = lines
        .into_iter()
        .map(|l| JsonMessage {
            stream: format!("{l}\n"),
            ..Default::default()
        })
        .collect();
    Ok(message_stream(lines))
}

/// One `load` event per image a load brought (its lines name them by tag or by id).
fn load_events(d: &Daemon, lines: &[String]) {
    let mut seen = std::collections::BTreeSet::new();
    for l in lines {
        let Some(name) = l
            .strip_prefix("Loaded image ID: ")
            .or_else(|| l.strip_prefix("Loaded image: "))
        else {
            continue;
        };
        if let Ok(id) = d.images.resolve_id(name.trim()) {
            if seen.insert(id.clone()) {
                d.events.image_event(&d.images, &id, &id, "load");
            }
        }
    }
}

pub async fn save_many(State(d): St, req: Request) -> Result<Response> {
    let names = crate::util::query_all(req.uri().query(), "names");
    save(d, names).await
}

async fn save(d: Arc<Daemon>, names: Vec<String>) -> Result<Response> {
    let mut ids = Vec::new();
    for n in &names {
        let id = d.images.resolve_id(n)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let body = crate::util::stream_body(move |out| {
        d.images.save(&names, out)?;
        for id in &ids {
            d.events.image_event(&d.images, id, id, "save");
        }
        Ok(())
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-tar")],
        body,
    )
        .into_response())
}

/// `GET /images/search?term=`: the term's registry (Docker Hub unless it starts with a host)
/// searched through its v1 API, answered in the Engine API's shape.
pub async fn search(
    State(d): St,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let term = q.get("term").unwrap_or("").to_string();
    if term.is_empty() {
        return Err(Error::bad_request("a search term is required"));
    }
    let limit = q.int("limit")?.filter(|l| *l > 0).unwrap_or(25).min(100) as u32;
    let filter = SearchFilter::new(&q.filters()?)?;
    let first = term.split('/').next().unwrap_or("");
    let (registry, query) = if term.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        (first.to_string(), term[first.len() + 1..].to_string())
    } else {
        ("docker.io".to_string(), term.clone())
    };
    let creds = crate::registry_auth::from_headers(&headers)?;
    let v = d
        .registry
        .search(&registry, &query, limit, &creds)
        .await
        .map_err(|e| Error::internal(format!("searching {registry}: {e}")))?;
    let prefix = if registry == "docker.io" {
        String::new()
    } else {
        format!("{registry}/")
    };
    let results: Vec<serde_json::Value> = v["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            serde_json::json!({
                "name": format!("{prefix}{}", r["name"].as_str().unwrap_or_default()),
                "description": r["description"].as_str().unwrap_or_default(),
                "star_count": r["star_count"].as_i64().unwrap_or(0),
                "is_official": r["is_official"].as_bool().unwrap_or(false),
                "is_automated": r["is_automated"].as_bool().unwrap_or(false),
            })
        })
        .filter(|r| filter.matches(r))
        .collect();
    Ok(json(200, &results))
}

/// The `filters` of an image search, as dockerd takes them: `is-official`, `is-automated`
/// (true/false) and `stars` (at least that many).
struct SearchFilter {
    official: Option<bool>,
    automated: Option<bool>,
    stars: i64,
}

impl SearchFilter {
    fn new(f: &std::collections::HashMap<String, Vec<String>>) -> Result<SearchFilter> {
        let flag = |key: &str| -> Result<Option<bool>> {
            match f.get(key).and_then(|v| v.last()) {
                None => Ok(None),
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(Some(true)),
                    "false" | "0" => Ok(Some(false)),
                    _ => Err(Error::bad_request(format!("invalid filter '{key}={v}'"))),
                },
            }
        };
        let mut stars = 0;
        for v in f.get("stars").into_iter().flatten() {
            let n: i64 = v
                .parse()
                .map_err(|_| Error::bad_request(format!("invalid filter 'stars={v}'")))?;
            stars = stars.max(n);
        }
        if let Some(k) = f
            .keys()
            .find(|k| !matches!(k.as_str(), "is-official" | "is-automated" | "stars"))
        {
            return Err(Error::bad_request(format!("invalid filter '{k}'")));
        }
        Ok(SearchFilter {
            official: flag("is-official")?,
            automated: flag("is-automated")?,
            stars,
        })
    }

    fn matches(&self, r: &serde_json::Value) -> bool {
        self.official
            .is_none_or(|o| r["is_official"].as_bool() == Some(o))
            && self
                .automated
                .is_none_or(|a| r["is_automated"].as_bool() == Some(a))
            && r["star_count"].as_i64().unwrap_or(0) >= self.stars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_filters() {
        let f = |pairs: &[(&str, &str)]| {
            let mut m: std::collections::HashMap<String, Vec<String>> = Default::default();
            for (k, v) in pairs {
                m.entry(k.to_string()).or_default().push(v.to_string());
            }
            SearchFilter::new(&m)
        };
        let r = serde_json::json!({"is_official": true, "is_automated": false, "star_count": 7});
        assert!(f(&[("is-official", "true"), ("stars", "7")])
            .unwrap()
            .matches(&r));
        assert!(!f(&[("stars", "8")]).unwrap().matches(&r));
        assert!(!f(&[("is-automated", "true")]).unwrap().matches(&r));
        assert!(f(&[("stars", "x")]).is_err());
        assert!(f(&[("is-official", "maybe")]).is_err());
        assert!(f(&[("name", "x")]).is_err());
    }

    #[test]
    fn reference_filter() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:latest"));
        assert!(reference_matches("busybox:l*", "busybox:latest"));
        assert!(!reference_matches("busybox:1", "busybox:latest"));
        assert!(!reference_matches("*", "a/b:latest"));
        assert_eq!(
            crate::util::query_all(Some("names=a&x=1&names=b%2Fc"), "names"),
            vec!["a", "b/c"]
        );
    }
}
