//! `/exec/{id}/...`: exec instances live on the engine of their container; the engine
//! that knows the ID is asked (no state kept here, so a restarted manager still finds it).

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;

use super::containers::forward;
use super::state::ClassicState;
use super::{path_after, request_version};

pub async fn exec(State(st): State<ClassicState>, req: Request) -> Response {
    let version = request_version(&req);
    let rest = path_after(&req, "/exec/");
    let id = rest.split('/').next().unwrap_or_default().to_owned();
    let probe = EnginePath::new(["exec", id.as_str(), "json"]).build();
    let answers = st
        .fan_out(Method::GET, &probe, Bytes::new(), &version)
        .await;
    let Some(owner) = answers
        .into_iter()
        .find(|a| matches!(a.result, Ok((StatusCode::OK, _))))
        .map(|a| a.engine)
    else {
        return ApiError::not_found(format!("No such exec instance: {id}")).into_response();
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    forward(&st, &owner.addr, req, &pq, &version)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
