//! Each request's way in, between a connection and the route table: the origin check
//! (`--api-cors-header`), the `/vX.Y` prefix (its version put on the request as
//! [`RequestVersion`]), the idle timer on request bodies, and the headers Docker puts on every
//! response. It must not know the routes' handlers or the daemon's state: it gets a [`Router`].

use crate::error::Error;
use crate::util::RequestVersion;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use axum::Router;
use berth_api::version::ApiVersion;
use std::sync::Arc;
use tower::ServiceExt;

/// Check the request's origin, then route it.
pub async fn handle(api: Api, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let allowed = match cross_origin(&api.cors, req.headers()) {
        Ok(a) => a,
        Err(e) => return finish(e),
    };
    if allowed && req.method() == axum::http::Method::OPTIONS {
        return cors_headers(&api.cors, headers(Response::new(Body::empty())));
    }
    let resp = route(api.router, req).await;
    if allowed {
        cors_headers(&api.cors, resp)
    } else {
        resp
    }
}

/// What a connection serves: the routes, and the origins allowed to make cross-origin calls.
#[derive(Clone)]
pub struct Api {
    pub router: Router,
    pub cors: Arc<Vec<String>>,
}

/// Browsers send `Origin` on cross-origin requests, and a page may send "simple" ones (a
/// form post) without asking first: such a request is served only if its origin is listed
/// in `--api-cors-header`. Ok(true): an allowed cross-origin request.
fn cross_origin(allowed: &[String], h: &axum::http::HeaderMap) -> Result<bool, Error> {
    let Some(origin) = h.get(axum::http::header::ORIGIN) else {
        return Ok(false);
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let o = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(o))
    {
        return Ok(true);
    }
    Err(Error(berth_api::ApiError {
        status: 403,
        message: format!(
            "cross-origin request from {origin:?} refused: the daemon allows only the origins \
             given with --api-cors-header"
        ),
    }))
}

/// The CORS answer headers dockerd sends when `--api-cors-header` is set.
fn cors_headers(allowed: &[String], mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&allowed.join(",")) {
        h.insert("Access-Control-Allow-Origin", v);
    }
    h.insert(
        "Access-Control-Allow-Headers",
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth"),
    );
    h.insert(
        "Access-Control-Allow-Methods",
        HeaderValue::from_static("HEAD, GET, POST, DELETE, PUT, OPTIONS"),
    );
    resp
}

/// Strip the version prefix, route, and add Docker's response headers.
async fn route(router: Router, req: Request<hyper::body::Incoming>) -> Response<Body> {
    // Most requests have no body: they need no idle timer.
    let mut req = req.map(|b| {
        if http_body::Body::is_end_stream(&b) {
            Body::new(b)
        } else {
            Body::new(crate::body::Idle::new(b))
        }
    });
    let path = req.uri().path().to_string();
    let mut version = ApiVersion::max();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some((v, tail)) = rest.split_once('/') {
            if let Some(parsed) = ApiVersion::parse(v) {
                if parsed > ApiVersion::max() {
                    return finish(Error::bad_request(format!(
                        "client version {v} is too new. Maximum supported API version is {}",
                        ApiVersion::max()
                    )));
                }
                if parsed < ApiVersion::min() {
                    return finish(Error::bad_request(format!(
                        "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                        ApiVersion::min()
                    )));
                }
                version = parsed;
                let new_path = format!("/{tail}");
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                if let Ok(uri) = pq.parse() {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req.extensions_mut().insert(RequestVersion(version));
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    headers(resp)
}

fn finish(e: Error) -> Response<Body> {
    headers(axum::response::IntoResponse::into_response(e))
}

fn headers(mut resp: Response<Body>) -> Response<Body> {
    if resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
        return resp;
    }
    let h = resp.headers_mut();
    h.insert(
        "Api-Version",
        HeaderValue::from_static(berth_api::version::API_MAX),
    );
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp
}
