//! Listings: tags of a repository and the catalog (both paginated with `n`, `last` and a
//! `Link` header), and Docker Hub's v1 search over repository names.

use super::{blocking, App, Req};
use crate::error::{ApiError, Code};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Most entries one page returns, whatever `n` asks.
const PAGE_MAX: usize = 1000;

/// One page of a sorted list: entries after `last`, at most `n`; plus the `last` of the next
/// page when more remain.
fn paginate(
    all: Vec<String>,
    n: Option<usize>,
    last: Option<&str>,
) -> (Vec<String>, Option<String>) {
    let after: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|x| x.as_str() > l).collect(),
        None => all,
    };
    let limit = n.unwrap_or(usize::MAX).min(PAGE_MAX);
    if n == Some(0) {
        return (Vec::new(), None);
    }
    if after.len() <= limit {
        return (after, None);
    }
    let page: Vec<String> = after.into_iter().take(limit).collect();
    let next = page.last().cloned();
    (page, next)
}

fn query_n(req: &Req) -> Result<Option<usize>, ApiError> {
    match req.query.get("n") {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::new(Code::Unsupported, "n must be a non-negative integer")
                .with_status(StatusCode::BAD_REQUEST)
        }),
    }
}

fn json_page(body: serde_json::Value, link: Option<String>) -> Response {
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, l);
    }
    resp
}

pub async fn tags(app: &App, name: &str, req: &Req) -> Result<Response, ApiError> {
    let (store, n) = (app.store.clone(), name.to_string());
    let tags = blocking(move || store.tags(&n)).await?.ok_or_else(|| {
        ApiError::new(Code::NameUnknown, "repository name not known to registry")
            .with_detail(serde_json::json!({ "name": name }))
    })?;
    let all: Vec<String> = tags.into_iter().map(|t| t.0).collect();
    let n = query_n(req)?;
    let (page, next) = paginate(all, n, req.query.get("last"));
    let link = next.map(|l| {
        format!(
            "</v2/{name}/tags/list?n={}&last={l}>; rel=\"next\"",
            n.unwrap_or(PAGE_MAX).min(PAGE_MAX)
        )
    });
    Ok(json_page(
        serde_json::json!({ "name": name, "tags": page }),
        link,
    ))
}

pub async fn catalog(app: &App, req: &Req) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let all = blocking(move || store.repositories()).await?;
    let n = query_n(req)?;
    let (page, next) = paginate(all, n, req.query.get("last"));
    let link = next.map(|l| {
        format!(
            "</v2/_catalog?n={}&last={l}>; rel=\"next\"",
            n.unwrap_or(PAGE_MAX).min(PAGE_MAX)
        )
    });
    Ok(json_page(serde_json::json!({ "repositories": page }), link))
}

/// `GET /v1/search?q=&n=&page=`, in the shape `docker search` reads: repositories whose name
/// contains the term.
pub async fn search(app: &App, req: &Req) -> Result<Response, ApiError> {
    let term = req.query.get("q").unwrap_or("").trim().to_ascii_lowercase();
    let page_size = req
        .query
        .get("n")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(25)
        .min(100);
    let page = req
        .query
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let store = app.store.clone();
    let all = blocking(move || store.repositories()).await?;
    let hits: Vec<String> = all.into_iter().filter(|r| r.contains(&term)).collect();
    let num_results = hits.len();
    let num_pages = num_results.div_ceil(page_size);
    let results: Vec<serde_json::Value> = hits
        .into_iter()
        .skip((page - 1).saturating_mul(page_size))
        .take(page_size)
        .map(|name| {
            serde_json::json!({
                "name": name,
                "description": "",
                "star_count": 0,
                "is_official": false,
                "is_automated": false,
            })
        })
        .collect();
    Ok(json_page(
        serde_json::json!({
            "num_pages": num_pages,
            "num_results": num_results,
            "page_size": page_size,
            "page": page,
            "query": term,
            "results": results,
        }),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn pages() {
        let all = v(&["a", "b", "c", "d"]);
        assert_eq!(paginate(all.clone(), None, None), (all.clone(), None));
        assert_eq!(
            paginate(all.clone(), Some(2), None),
            (v(&["a", "b"]), Some("b".into()))
        );
        assert_eq!(
            paginate(all.clone(), Some(2), Some("b")),
            (v(&["c", "d"]), None)
        );
        assert_eq!(paginate(all.clone(), None, Some("c")), (v(&["d"]), None));
        assert_eq!(paginate(all.clone(), Some(0), None), (vec![], None));
        assert_eq!(paginate(all.clone(), Some(10), Some("d")), (vec![], None));
        assert_eq!(paginate(all, Some(4), None).1, None);
        let many: Vec<String> = (0..PAGE_MAX + 5).map(|i| format!("{i:05}")).collect();
        let (page, next) = paginate(many, None, None);
        assert_eq!(page.len(), PAGE_MAX);
        assert_eq!(next.as_deref(), Some("00999"));
    }
}
