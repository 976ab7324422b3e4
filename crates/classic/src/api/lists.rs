//! Listings merged over the pool: every healthy engine asked at once, the answers merged
//! by [`crate::view`] the way classic showed them.

use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use bollard_stubs::models::{ContainerSummary, ImageSummary};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;
use swarmd_engine_api::filters::{Filters, parse_filters};
use swarmd_engine_api::query::QueryParams;
use swarmd_engine_api::version::RequestVersion;
use time::OffsetDateTime;

use super::json;
use super::state::{ClassicState, engine_ref};
use crate::discovery::EngineState;
use crate::scheduler::model::Node;
use crate::view::cached::view_listing;
use crate::view::containers::{Bound, ListQuery, Listing, cached_listing, merge};
use crate::view::resolve::resolve_container;
use crate::view::{EngineAnswer, images, networks, volumes};

/// The query's `filters`, decoded (none: empty).
fn filters_of(q: &QueryParams) -> Result<Filters, ApiError> {
    match q.get("filters") {
        Some(f) if !f.is_empty() => {
            parse_filters(f).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        _ => Ok(Filters::default()),
    }
}

/// `path?query` with `filters` replaced by `filters` (left out when empty).
fn engine_target(path: &str, q: &QueryParams, filters: &Filters) -> String {
    let mut p = EnginePath::new(path.trim_start_matches('/').split('/'));
    for (k, v) in &q.0 {
        if k != "filters" {
            p = p.query(k, v);
        }
    }
    if !filters.is_empty() {
        p = p.query(
            "filters",
            &serde_json::to_string(filters).unwrap_or_default(),
        );
    }
    p.build()
}

/// Each healthy engine's 200 answer to `target`, decoded.
async fn answers<T: DeserializeOwned>(
    st: &ClassicState,
    target: &str,
    version: &RequestVersion,
) -> Vec<EngineAnswer<T>> {
    st.fan_out(Method::GET, target, Bytes::new(), version)
        .await
        .into_iter()
        .filter_map(|a| match a.result {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice::<T>(&body) {
                Ok(answer) => Some(EngineAnswer {
                    engine: engine_ref(&a.engine),
                    answer,
                }),
                Err(e) => {
                    tracing::warn!(engine = %a.engine.addr, error = %e, "unreadable engine answer");
                    None
                }
            },
            _ => None,
        })
        .collect()
}

/// `GET /containers/json`.
pub async fn containers(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(uri.query().unwrap_or_default());
    let mut filters = filters_of(&q)?;
    let node = filters.take("node");
    let before = filters.take("before");
    let since = filters.take("since");
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .and_then(|l| usize::try_from(l).ok());
    let mut query = ListQuery {
        all: q.bool("all"),
        limit,
        node,
        before: None,
        since: None,
    };
    query.before = bound(st, before.first(), version).await?;
    query.since = bound(st, since.first(), version).await?;
    if filters.is_empty() && !q.bool("size") {
        return Ok(json(
            StatusCode::OK,
            &merge(&query, &from_view(st, &query).await),
        ));
    }
    let eq = query.engine_query();
    let mut target = EnginePath::new(["containers", "json"]);
    if eq.all {
        target = target.query("all", "1");
    }
    if let Some(l) = eq.limit {
        target = target.query("limit", &l.to_string());
    }
    if q.bool("size") {
        target = target.query("size", "1");
    }
    if !filters.is_empty() {
        target = target.query(
            "filters",
            &serde_json::to_string(&filters).unwrap_or_default(),
        );
    }
    let mut listings: Vec<EngineAnswer<Listing>> =
        answers::<Vec<ContainerSummary>>(st, &target.build(), version)
            .await
            .into_iter()
            .map(|a| EngineAnswer {
                engine: a.engine,
                answer: Listing {
                    containers: a.answer,
                    host_down: false,
                },
            })
            .collect();
    // Classic kept listing an unreachable engine's containers, as "Host Down".
    for e in st.pool.engines() {
        if e.state == EngineState::Unhealthy {
            listings.push(EngineAnswer {
                engine: engine_ref(&e),
                answer: cached_listing(&e.node),
            });
        }
    }
    Ok(json(StatusCode::OK, &merge(&query, &listings)))
}

/// Every engine's containers from the pool's view, once the re-reads asked for by calls
/// through the manager are done (so a client reads its own writes).
async fn from_view(st: &ClassicState, query: &ListQuery) -> Vec<EngineAnswer<Listing>> {
    st.pool.settled().await;
    let now = OffsetDateTime::now_utc();
    st.pool
        .engines()
        .into_iter()
        .filter_map(|e| {
            let answer = match e.state {
                EngineState::Healthy => view_listing(&e.node, query.includes_stopped(), now),
                EngineState::Unhealthy => cached_listing(&e.node),
                _ => return None,
            };
            Some(EngineAnswer {
                engine: engine_ref(&e),
                answer,
            })
        })
        .collect()
}

/// A `before`/`since` filter's container with its `Created`, asked of its engine.
async fn bound(
    st: &ClassicState,
    reference: Option<&String>,
    version: &RequestVersion,
) -> Result<Option<Bound>, ApiError> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    let nodes = st.pool.nodes();
    let refs: Vec<&Node> = nodes.iter().map(|(_, n)| n).collect();
    let found = resolve_container(&refs, reference).map_err(|e| {
        ApiError::new(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND),
            e.to_string(),
        )
    })?;
    let id = found.id().to_owned();
    let Some((addr, _)) = nodes.iter().find(|(_, n)| n.addr == found.node.addr) else {
        return Err(ApiError::not_found(format!(
            "No such container: {reference}"
        )));
    };
    let target = EnginePath::new(["containers", "json"])
        .query("all", "1")
        .query("filters", &serde_json::json!({"id": [id]}).to_string())
        .build();
    let (status, body) = st
        .call(addr, Method::GET, &target, Bytes::new(), version)
        .await?;
    let created = if status == StatusCode::OK {
        serde_json::from_slice::<Vec<ContainerSummary>>(&body)
            .ok()
            .and_then(|l| l.into_iter().find(|c| c.id.as_deref() == Some(&id)))
            .and_then(|c| c.created)
            .unwrap_or(0)
    } else {
        0
    };
    Ok(Some(Bound { id, created }))
}

/// A listing merged by `merge` from every engine's answer to `path`, the `node` filter
/// kept by the manager and the other filters forwarded.
async fn merged_listing<T, M, F>(
    st: &ClassicState,
    path: &str,
    uri: &Uri,
    version: &RequestVersion,
    merge: F,
) -> Result<Response, ApiError>
where
    T: DeserializeOwned,
    M: serde::Serialize,
    F: FnOnce(&[String], &[EngineAnswer<T>]) -> M,
{
    let q = QueryParams::parse(uri.query().unwrap_or_default());
    let mut filters = filters_of(&q)?;
    let node = filters.take("node");
    let target = engine_target(path, &q, &filters);
    let got = answers::<T>(st, &target, version).await;
    Ok(json(StatusCode::OK, &merge(&node, &got)))
}

/// `GET /images/json`.
pub async fn images(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    merged_listing::<Vec<ImageSummary>, _, _>(st, "/images/json", uri, version, images::merge).await
}

/// `GET /networks`.
pub async fn networks(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    // The primary locks of `swarmd manage --replication` are the managers' own business.
    merged_listing::<Vec<Value>, _, _>(st, "/networks", uri, version, |node, got| {
        let all = networks::merge(node, got).into_iter();
        all.filter(|n| !crate::replication::lock::is_listed_lock(n))
            .collect::<Vec<_>>()
    })
    .await
}

/// `GET /volumes`.
pub async fn volumes(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    merged_listing::<Value, _, _>(st, "/volumes", uri, version, volumes::merge).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_filter_is_taken_out_and_the_rest_forwarded() {
        let q = QueryParams::parse(
            "all=1&filters=%7B%22node%22%3A%7B%22node-1%22%3Atrue%7D%2C%22status%22%3A%7B%22running%22%3Atrue%7D%7D",
        );
        let mut f = filters_of(&q).unwrap();
        assert_eq!(f.take("node"), ["node-1"]);
        let target = engine_target("/images/json", &q, &f);
        assert!(
            target.starts_with("/images/json?all=1&filters="),
            "{target}"
        );
        let fq = QueryParams::parse(target.split_once('?').unwrap().1);
        let forwarded = parse_filters(fq.get("filters").unwrap()).unwrap();
        assert!(!forwarded.contains("node"));
        assert_eq!(forwarded.get("status"), ["running"]);
    }

    #[test]
    fn only_node_filter_leaves_no_filters() {
        let q = QueryParams::parse("filters=%7B%22node%22%3A%5B%22n%22%5D%7D");
        let mut f = filters_of(&q).unwrap();
        assert_eq!(f.take("node"), ["n"]);
        assert_eq!(engine_target("/networks", &q, &f), "/networks");
    }
}
