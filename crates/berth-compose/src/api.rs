//! The Engine API calls compose makes, over the CLI's client: typed just enough for
//! convergence (containers, networks, volumes, images, events), everything else as JSON.

use berth_cli::client::{enc, Client, Error};
use hyper::Method;
use serde_json::{json, Value};

pub use berth_cli::client::Error as ApiError;

/// Compose's label keys.
pub mod label {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const NUMBER: &str = "com.docker.compose.container-number";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const HASH: &str = "com.docker.compose.config-hash";
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const ENV_FILE: &str = "com.docker.compose.project.environment_file";
    pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
    pub const IMAGE: &str = "com.docker.compose.image";
    pub const VERSION: &str = "com.docker.compose.version";
    pub const NETWORK: &str = "com.docker.compose.network";
    pub const VOLUME: &str = "com.docker.compose.volume";
    pub const SLUG: &str = "com.docker.compose.slug";
}

/// The compose version berth reports in `com.docker.compose.version` and `version`.
pub const VERSION: &str = "2.40.0";

/// A container as `GET /containers/json` lists it, with the fields compose uses.
#[derive(Clone, Debug)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub state: String,
    pub raw: Value,
}

impl Ctr {
    fn from_list(v: Value) -> Ctr {
        let name = v["Names"][0]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        Ctr {
            id: v["Id"].as_str().unwrap_or("").to_string(),
            state: v["State"].as_str().unwrap_or("").to_string(),
            name,
            raw: v,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.raw["Labels"][key].as_str()
    }

    pub fn service(&self) -> &str {
        self.label(label::SERVICE).unwrap_or("")
    }

    pub fn number(&self) -> u64 {
        self.label(label::NUMBER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    pub fn oneoff(&self) -> bool {
        self.label(label::ONEOFF) == Some("True")
    }

    pub fn running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused")
    }
}

/// The engine, as compose sees it. With `dry` (`--dry-run`) every call that would change
/// something answers as if it had, and only reads reach the engine.
#[derive(Clone)]
pub struct Engine {
    pub c: Client,
    pub dry: bool,
    /// `--parallel`: at most this many containers acted on at once (`None`: no bound).
    pub parallel: Option<usize>,
}

fn is_404(e: &Error) -> bool {
    matches!(e, Error::Daemon { status: 404, .. })
}

fn filters(labels: &[String]) -> String {
    enc(&json!({ "label": labels }).to_string())
}

impl Engine {
    /// The project's containers (every state with `all`), oldest number first.
    pub async fn containers(&self, project: &str, all: bool) -> Result<Vec<Ctr>, Error> {
        self.containers_labelled(&[format!("{}={project}", label::PROJECT)], all)
            .await
    }

    pub async fn containers_labelled(
        &self,
        labels: &[String],
        all: bool,
    ) -> Result<Vec<Ctr>, Error> {
        let v = self
            .c
            .get(&format!(
                "/containers/json?all={}&filters={}",
                all as u8,
                filters(labels)
            ))
            .await?;
        let mut out: Vec<Ctr> = match v {
            Value::Array(a) => a.into_iter().map(Ctr::from_list).collect(),
            _ => Vec::new(),
        };
        out.sort_by(|a, b| {
            (a.service(), a.number(), &a.name).cmp(&(b.service(), b.number(), &b.name))
        });
        Ok(out)
    }

    /// The engine's stream of the project's container events (`GET /events`), open until the
    /// engine closes it.
    pub async fn project_events(
        &self,
        project: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        self.project_events_with(project, "").await
    }

    /// [`Engine::project_events`] with more query parameters (`&since=…&until=…`).
    pub async fn project_events_with(
        &self,
        project: &str,
        query: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let f = json!({"type": ["container"], "label": [format!("{}={project}", label::PROJECT)]});
        self.c
            .send(
                Method::GET,
                &format!("/events?filters={}{query}", enc(&f.to_string())),
                berth_cli::client::empty(),
                "application/json",
            )
            .await
    }

    pub async fn inspect(&self, id: &str) -> Result<Value, Error> {
        self.c.get(&format!("/containers/{}/json", enc(id))).await
    }

    pub async fn create(&self, name: &str, body: &Value) -> Result<String, Error> {
        if self.dry {
            return Ok(format!("dryrun-{name}"));
        }
        let v = self
            .c
            .post(
                &format!("/containers/create?name={}", enc(name)),
                Some(body.clone()),
            )
            .await?;
        Ok(v["Id"].as_str().unwrap_or("").to_string())
    }

    pub async fn start(&self, id: &str) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        match self
            .c
            .post(&format!("/containers/{}/start", enc(id)), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Daemon { status: 304, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn stop(&self, id: &str, timeout: Option<i64>) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        let q = timeout.map(|t| format!("?t={t}")).unwrap_or_default();
        match self
            .c
            .post(&format!("/containers/{}/stop{q}", enc(id)), None)
            .await
        {
            Ok(_) | Err(Error::Daemon { status: 304, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn restart(&self, id: &str, timeout: Option<i64>) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        let q = timeout.map(|t| format!("?t={t}")).unwrap_or_default();
        self.c
            .post(&format!("/containers/{}/restart{q}", enc(id)), None)
            .await
            .map(drop)
    }

    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        self.c
            .post(
                &format!("/containers/{}/kill?signal={}", enc(id), enc(signal)),
                None,
            )
            .await
            .map(drop)
    }

    pub async fn pause(&self, id: &str, pause: bool) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        let verb = if pause { "pause" } else { "unpause" };
        self.c
            .post(&format!("/containers/{}/{verb}", enc(id)), None)
            .await
            .map(drop)
    }

    pub async fn remove(&self, id: &str, force: bool, volumes: bool) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        match self
            .c
            .json(
                Method::DELETE,
                &format!(
                    "/containers/{}?force={}&v={}",
                    enc(id),
                    force as u8,
                    volumes as u8
                ),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn rename(&self, id: &str, name: &str) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        self.c
            .post(
                &format!("/containers/{}/rename?name={}", enc(id), enc(name)),
                None,
            )
            .await
            .map(drop)
    }

    /// Blocks until the container is no longer running; its exit code.
    pub async fn wait(&self, id: &str) -> Result<i64, Error> {
        let v = self
            .c
            .post(
                &format!("/containers/{}/wait?condition=not-running", enc(id)),
                None,
            )
            .await?;
        Ok(v["StatusCode"].as_i64().unwrap_or(0))
    }

    pub async fn network(&self, name: &str) -> Result<Option<Value>, Error> {
        match self.c.get(&format!("/networks/{}", enc(name))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_404(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn networks_labelled(&self, labels: &[String]) -> Result<Vec<Value>, Error> {
        let v = self
            .c
            .get(&format!("/networks?filters={}", filters(labels)))
            .await?;
        Ok(match v {
            Value::Array(a) => a,
            _ => Vec::new(),
        })
    }

    pub async fn create_network(&self, body: &Value) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        self.c
            .post("/networks/create", Some(body.clone()))
            .await
            .map(drop)
    }

    pub async fn remove_network(&self, id: &str) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        match self
            .c
            .json(Method::DELETE, &format!("/networks/{}", enc(id)), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn connect(&self, network: &str, body: &Value) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        self.c
            .post(
                &format!("/networks/{}/connect", enc(network)),
                Some(body.clone()),
            )
            .await
            .map(drop)
    }

    pub async fn volume(&self, name: &str) -> Result<Option<Value>, Error> {
        match self.c.get(&format!("/volumes/{}", enc(name))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_404(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn volumes_labelled(&self, labels: &[String]) -> Result<Vec<Value>, Error> {
        let v = self
            .c
            .get(&format!("/volumes?filters={}", filters(labels)))
            .await?;
        Ok(match v["Volumes"].clone() {
            Value::Array(a) => a,
            _ => Vec::new(),
        })
    }

    pub async fn create_volume(&self, body: &Value) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        self.c
            .post("/volumes/create", Some(body.clone()))
            .await
            .map(drop)
    }

    pub async fn remove_volume(&self, name: &str) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        match self
            .c
            .json(Method::DELETE, &format!("/volumes/{}", enc(name)), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn image(&self, name: &str) -> Result<Option<Value>, Error> {
        match self.c.get(&format!("/images/{}/json", enc(name))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_404(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn remove_image(&self, name: &str) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        match self
            .c
            .json(Method::DELETE, &format!("/images/{}", enc(name)), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /images/create`; the stream's first error message fails the pull.
    pub async fn pull(&self, image: &str) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        let (name, tag) = split_tag(image);
        let path = format!("/images/create?fromImage={}&tag={}", enc(name), enc(tag));
        let resp = self
            .c
            .send(
                Method::POST,
                &path,
                berth_cli::client::empty(),
                "application/json",
            )
            .await?;
        stream_error(resp).await
    }

    /// `POST /images/{name}/push` with the `X-Registry-Auth` header `berth push` sends (the
    /// credentials stored for the image's registry); the stream's first error fails it.
    pub async fn push(&self, image: &str) -> Result<(), Error> {
        let (name, tag) = split_tag(image);
        let headers: Vec<(&str, String)> = berth_cli::header_for_image(name)
            .map(|h| vec![("X-Registry-Auth", h)])
            .unwrap_or_default();
        let resp = self
            .c
            .send_with(
                Method::POST,
                &format!("/images/{}/push?tag={}", enc(name), enc(tag)),
                berth_cli::client::empty(),
                "application/json",
                &headers,
            )
            .await?;
        stream_error(resp).await
    }

    /// `POST /build` with a context tar; the builder's first error fails it.
    pub async fn build(&self, query: &str, context: Vec<u8>) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
            http_body_util::Full::new(bytes::Bytes::from(context)),
            |never| match never {},
        ));
        let resp = self
            .c
            .send(
                Method::POST,
                &format!("/build?{query}"),
                body,
                "application/x-tar",
            )
            .await?;
        stream_error(resp).await
    }

    /// `PUT /containers/{id}/archive`: a tar extracted at `path`.
    pub async fn put_archive(
        &self,
        id: &str,
        path: &str,
        tar: impl Into<bytes::Bytes>,
    ) -> Result<(), Error> {
        if self.dry {
            return Ok(());
        }
        let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
            http_body_util::Full::new(tar.into()),
            |never| match never {},
        ));
        self.c
            .send(
                Method::PUT,
                &format!("/containers/{}/archive?path={}", enc(id), enc(path)),
                body,
                "application/x-tar",
            )
            .await
            .map(drop)
    }
}

/// Reads a JSON-lines progress stream to its end; its first `error` fails it.
async fn stream_error(resp: hyper::Response<hyper::body::Incoming>) -> Result<(), Error> {
    let mut err = None;
    berth_cli::client::for_each_line(resp, |line| {
        if let Ok(v) = serde_json::from_slice::<Value>(line) {
            if let Some(m) = v["error"].as_str().or(v["errorDetail"]["message"].as_str()) {
                err.get_or_insert_with(|| m.to_string());
            }
        }
        true
    })
    .await?;
    match err {
        Some(m) => Err(Error::Other(m)),
        None => Ok(()),
    }
}

/// `name:tag` (a digest or no tag gives `latest`/the digest as Docker splits them).
pub fn split_tag(image: &str) -> (&str, &str) {
    if let Some((n, d)) = image.split_once('@') {
        return (n, d);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_references_split_as_docker_does() {
        assert_eq!(super::split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(super::split_tag("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            super::split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            super::split_tag("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app", "v2")
        );
        assert_eq!(super::split_tag("a@sha256:00"), ("a", "sha256:00"));
    }
}
