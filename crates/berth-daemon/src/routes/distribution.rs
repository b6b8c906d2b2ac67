//! `GET /distribution/{name}/json`: what a registry says about an image without pulling it —
//! the descriptor of its manifest (or index) and the platforms it is built for. It only asks the
//! registry: it never pulls, writes to the image store or touches containers.

use super::St;
use crate::error::{Error, Result};
use crate::util::json;
use axum::extract::{Request, State};
use axum::response::Response;
use berth_api::ApiError;
use berth_distribution::{ParsedManifest, Platform};
use futures_util::StreamExt;

/// The largest image config read for its platform.
const CONFIG_LIMIT: usize = 8 << 20;

pub async fn inspect(State(d): St, req: Request) -> Result<Response> {
    let path = crate::util::decode(req.uri().path().trim_start_matches("/distribution/"));
    let Some(name) = path.strip_suffix("/json") else {
        return Err(Error(ApiError::new(
            404,
            format!("page not found: {}", req.uri().path()),
        )));
    };
    let r = berth_image::reference::Reference::parse(name)
        .map_err(|e| Error::bad_request(format!("invalid reference format: {e}")))?
        .with_default_tag();
    let creds = crate::registry_auth::from_headers(req.headers())?;
    let (registry, repo) = (r.domain().to_string(), r.path().to_string());
    let wanted = r.digest().or(r.tag()).unwrap_or("latest").to_string();
    let fail = |e: berth_distribution::Error| {
        if e.is_not_found() || e.is_unauthorized() || e.is_denied() {
            // dockerd's answer when the registry does not know the image or refuses it.
            Error(ApiError::new(
                401,
                format!("No such image: {} ({e})", r.familiar()),
            ))
        } else {
            Error::internal(format!("{}: {e}", r.familiar()))
        }
    };
    let m = d
        .registry
        .get_manifest(&registry, &repo, &wanted, &creds)
        .await
        .map_err(fail)?;
    let platforms: Vec<Platform> = match &m.parsed {
        ParsedManifest::Index(index) => index
            .manifests
            .iter()
            .filter_map(|m| m.platform.clone())
            .collect(),
        ParsedManifest::Image(im) => {
            let mut blob = d
                .registry
                .get_blob(
                    &registry,
                    &repo,
                    &im.config.digest,
                    Some(im.config.size),
                    &creds,
                )
                .await
                .map_err(fail)?;
            let mut config = Vec::new();
            while let Some(chunk) = blob.next().await {
                let chunk = chunk.map_err(|e| Error::internal(format!("image config: {e}")))?;
                if config.len() + chunk.len() > CONFIG_LIMIT {
                    return Err(Error::internal("image config larger than 8 MiB"));
                }
                config.extend_from_slice(&chunk);
            }
            if berth_distribution::sha256_digest(&config) != im.config.digest {
                return Err(Error::internal(format!(
                    "image config of {} does not match its digest",
                    r.familiar()
                )));
            }
            // An artifact's config need not be an image config: then no platform is known.
            serde_json::from_slice::<Platform>(&config)
                .ok()
                .filter(|p| !p.os.is_empty() || !p.architecture.is_empty())
                .into_iter()
                .collect()
        }
    };
    Ok(json(
        200,
        &serde_json::json!({
            "Descriptor": {
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.bytes.len(),
            },
            "Platforms": platforms,
        }),
    ))
}
