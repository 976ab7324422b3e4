//! A replica's API (classic's `api/replica.go`): `/_ping` and `/info` answered locally
//! (`docker info` shows `Role: replica` and `Primary:`), everything else forwarded to the
//! primary's advertise address, streams and connection upgrades included. A request that
//! arrives while no primary is known waits for the election, as classic's did.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use swarmd_engine_api::ApiError;
use swarmd_engine_api::version::RequestVersion;

use crate::api::ClassicState;
use crate::view::ManagerRole;

/// Paths a replica answers itself (classic's `localRoutes`, after the version prefix).
const LOCAL: &[&str] = &["/_ping", "/info"];

/// How long a request waits for a primary to be elected before failing.
pub const PRIMARY_WAIT: Duration = Duration::from_secs(30);

/// The middleware around `swarmd manage`'s routes: a no-op on the primary.
pub async fn to_primary(State(st): State<ClassicState>, req: Request, next: Next) -> Response {
    if LOCAL.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let primary = match primary(&st).await {
        Ok(None) => return next.run(req).await,
        Ok(Some(p)) => p,
        Err(e) => return e.into_response(),
    };
    let version = req
        .extensions()
        .get::<RequestVersion>()
        .cloned()
        .unwrap_or(RequestVersion { prefix: None });
    tracing::debug!(primary = %primary, path = %req.uri().path(), "forwarding to the primary");
    match st
        .proxy
        .try_forward(&primary_upstream(&primary), req, &version)
        .await
    {
        Ok(resp) => resp,
        // Classic's words (its arguments in this order: the error, then the primary).
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Unable to reach primary cluster manager ({}): {primary}",
                e.message
            ),
        )
        .into_response(),
    }
}

/// The proxy's upstream for the primary: an advertise address (`host:port`) over TCP, an
/// upstream with a scheme (`pool://leader`, through the proxy's dialer) as it is.
fn primary_upstream(primary: &str) -> String {
    if primary.contains("://") {
        primary.to_owned()
    } else {
        format!("tcp://{primary}")
    }
}

/// `None` when this manager is the primary, else the primary's address once one is known.
async fn primary(st: &ClassicState) -> Result<Option<String>, ApiError> {
    let mut role = st.role.clone();
    let known = role.wait_for(|r| match r {
        ManagerRole::Primary => true,
        ManagerRole::Replica { primary } => !primary.is_empty(),
    });
    let reason = match tokio::time::timeout(PRIMARY_WAIT, known).await {
        Ok(Ok(r)) => {
            return Ok(match &*r {
                ManagerRole::Primary => None,
                ManagerRole::Replica { primary } => Some(primary.clone()),
            });
        }
        Ok(Err(_)) => "the election stopped".to_owned(),
        Err(_) => format!("none within {PRIMARY_WAIT:?}"),
    };
    // Classic: fmt.Errorf("No elected primary cluster manager: %v", ctx.Err()), a 500.
    Err(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("No elected primary cluster manager: {reason}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::primary_upstream;

    #[test]
    fn advertise_addresses_go_over_tcp_schemes_as_they_are() {
        assert_eq!(primary_upstream("10.0.0.1:4000"), "tcp://10.0.0.1:4000");
        assert_eq!(primary_upstream("[::1]:4000"), "tcp://[::1]:4000");
        assert_eq!(primary_upstream("pool://leader"), "pool://leader");
        assert_eq!(primary_upstream("tcp://m:4000"), "tcp://m:4000");
    }
}
