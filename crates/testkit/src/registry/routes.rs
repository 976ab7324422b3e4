//! The Registry v2 API, read-only: the answers and error bodies of Docker's registry
//! (distribution), which dockerd turns into its pull messages.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;

use super::Content;
use super::content::MANIFEST_TYPE;

/// The router over `content`.
pub(super) fn router(content: Arc<Content>) -> Router {
    Router::new()
        .route("/v2/", get(version_check))
        .route("/v2/{*rest}", any(object))
        .with_state(content)
}

/// `GET /v2/`: "this is a v2 registry, no login needed".
async fn version_check() -> Response {
    with_api_version(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
    )
}

/// `/v2/<name>/manifests/<reference>` and `/v2/<name>/blobs/<digest>`; the name may have
/// slashes, so the path is split from the right.
async fn object(
    State(content): State<Arc<Content>>,
    method: Method,
    Path(rest): Path<String>,
) -> Response {
    let mut parts = rest.rsplitn(3, '/');
    let (reference, kind, name) = (parts.next(), parts.next(), parts.next());
    let (Some(reference), Some(kind), Some(name)) = (reference, kind, name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            json!({ "name": rest }),
        );
    };
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "The operation is unsupported.",
            json!({}),
        );
    }
    let Some(repo) = content.repos.get(name) else {
        // Docker Hub's answer for a repository that does not exist (it cannot tell it
        // from one the client may not read): the engine then says "pull access denied
        // for X, repository does not exist or may require 'docker login'".
        return error(
            StatusCode::FORBIDDEN,
            "DENIED",
            "requested access to the resource is denied",
            json!({ "name": name }),
        );
    };
    match kind {
        "manifests" => {
            let digest = repo
                .tags
                .get(reference)
                .map(String::as_str)
                .unwrap_or(reference);
            match repo.manifests.get(digest) {
                Some(m) => found(MANIFEST_TYPE, digest, m.clone()),
                None => error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    json!({ "Tag": reference }),
                ),
            }
        }
        "blobs" => match content.blobs.get(reference) {
            Some(b) => found("application/octet-stream", reference, b.clone()),
            None => error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                json!(reference),
            ),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            json!({ "name": rest }),
        ),
    }
}

/// 200 with the content address dockerd checks (hyper leaves the body out for HEAD).
fn found(content_type: &'static str, digest: &str, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body.clone()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Ok(d) = HeaderValue::from_str(digest) {
        h.insert("Docker-Content-Digest", d);
    }
    with_api_version(r)
}

/// `{"errors":[{"code":..,"message":..,"detail":..}]}`, distribution's error body.
fn error(status: StatusCode, code: &str, message: &str, detail: serde_json::Value) -> Response {
    tracing::debug!(%status, code, "registry refuses");
    let body = json!({ "errors": [{ "code": code, "message": message, "detail": detail }] });
    with_api_version(
        (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body.to_string(),
        )
            .into_response(),
    )
}

fn with_api_version(mut r: Response) -> Response {
    r.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::content::digest_of;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn call(
        c: &Arc<Content>,
        method: &str,
        uri: &str,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let r = router(c.clone()).oneshot(req).await.unwrap();
        let (parts, body) = r.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    #[tokio::test]
    async fn manifests_and_blobs_are_served_by_tag_and_digest() {
        let (_d, c) = crate::registry::content::tests::sample();
        let c = Arc::new(c);
        let (s, h, _) = call(&c, "GET", "/v2/").await;
        assert_eq!(s, 200);
        assert_eq!(h["Docker-Distribution-API-Version"], "registry/2.0");

        let (s, h, m) = call(&c, "GET", "/v2/busybox/manifests/latest").await;
        assert_eq!(s, 200);
        assert_eq!(h[header::CONTENT_TYPE], MANIFEST_TYPE);
        let digest = digest_of(&m);
        assert_eq!(h["Docker-Content-Digest"], digest.as_str());
        let (s, _, by_digest) = call(&c, "GET", &format!("/v2/busybox/manifests/{digest}")).await;
        assert_eq!((s, by_digest), (StatusCode::OK, m.clone()));
        let (s, _, nested) = call(&c, "GET", "/v2/tools/bb/manifests/1").await;
        assert_eq!((s, nested), (StatusCode::OK, m.clone()));

        let layer = digest_of(b"layer bytes");
        let (s, h, b) = call(&c, "GET", &format!("/v2/busybox/blobs/{layer}")).await;
        assert_eq!((s, b.as_slice()), (StatusCode::OK, &b"layer bytes"[..]));
        assert_eq!(h["Docker-Content-Digest"], layer.as_str());
        assert_eq!(h[header::CONTENT_LENGTH], "11");
    }

    #[tokio::test]
    async fn unknown_names_tags_and_blobs_and_writes_get_distributions_errors() {
        let (_d, c) = crate::registry::content::tests::sample();
        let c = Arc::new(c);
        let code = |b: &[u8]| {
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            v["errors"][0]["code"].as_str().unwrap().to_string()
        };
        let (s, _, b) = call(&c, "GET", "/v2/nope/manifests/latest").await;
        assert_eq!((s, code(&b).as_str()), (StatusCode::FORBIDDEN, "DENIED"));
        let (s, _, b) = call(&c, "GET", "/v2/busybox/manifests/1.0").await;
        assert_eq!(
            (s, code(&b).as_str()),
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
        );
        let (s, _, b) = call(&c, "HEAD", "/v2/busybox/blobs/sha256:00").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b:?}");
        let (s, _, b) = call(&c, "POST", "/v2/busybox/blobs/uploads/").await;
        assert_eq!(
            (s, code(&b).as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
        );
    }
}
