//! Calls outside the object families: `/build` on one scheduled engine, `/commit` on
//! the container's engine, and the engine-wide questions any engine can answer.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use swarmd_engine_api::ApiError;
use swarmd_engine_api::query::QueryParams;

use super::containers::{forward, locate};
use super::request_version;
use super::state::ClassicState;
use crate::scheduler::model::Request as SchedRequest;

/// `POST /build`: the engine the strategy ranks first for an empty request (classic
/// built on one scheduled engine; the image then lives there only).
pub async fn build(State(st): State<ClassicState>, req: Request) -> Response {
    let version = request_version(&req);
    let (addrs, nodes): (Vec<_>, Vec<_>) = st.pool.nodes().into_iter().unzip();
    let chosen = match st
        .scheduler
        .select(&nodes, &SchedRequest::default(), &mut rand::rng())
    {
        Ok(ranked) => ranked[0].addr.clone(),
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    let Some(addr) = nodes
        .iter()
        .position(|n| n.addr == chosen)
        .map(|i| &addrs[i])
    else {
        return ApiError::internal("error scheduling the build").into_response();
    };
    let pq = path_and_query(&req);
    forward(&st, addr, req, &pq, &version)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /commit?container=X`: on X's engine.
pub async fn commit(State(st): State<ClassicState>, req: Request) -> Response {
    let version = request_version(&req);
    let q = QueryParams::parse(req.uri().query().unwrap_or_default());
    let container = q.get("container").unwrap_or_default().to_owned();
    let result = async {
        let (addr, _) = locate(&st, &container, &version).await?;
        let pq = path_and_query(&req);
        forward(&st, &addr, req, &pq, &version).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `/auth`, `/distribution/...`, `/system/df`: the first healthy engine answers.
pub async fn any_engine(State(st): State<ClassicState>, req: Request) -> Response {
    let version = request_version(&req);
    let Some(engine) = st.healthy_engines().into_iter().next() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No healthy node available in the cluster",
        )
        .into_response();
    };
    let pq = path_and_query(&req);
    forward(&st, &engine.addr, req, &pq, &version)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn path_and_query(req: &Request) -> String {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}
