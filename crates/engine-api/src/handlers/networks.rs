//! `/networks*`: swarm networks on managers, the engine's local networks everywhere.
//!
//! As the daemon: `network ls` on a manager lists the engine's networks *and* the swarm's
//! (filters apply to both); `inspect`/`rm` find a swarm network by full ID or name first,
//! then ask the engine, then try swarm ID prefixes; `create -d overlay` makes a swarm
//! network (a worker gets Docker's 403), other drivers go to the engine.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use swarmd_types::Network;
use swarmd_types::models::{self, NetworkCreateRequest};

use super::{json_ok, json_response};
use crate::backend::LocalEngine;
use crate::convert::opt_time;
use crate::decode::decode_json;
use crate::engine_path::EnginePath;
use crate::error::{ApiError, ApiResult};
use crate::filters::{FilterError, Filters, match_labels, parse_filters};
use crate::query::QueryParams;
use crate::router::AppState;
use crate::version::RequestVersion;
use crate::wire::{self, moby};

/// The daemon's `acceptedNetworkFilters`.
const FILTERS: &[&str] = &["driver", "type", "name", "id", "label", "scope", "dangling"];

/// Docker's answer when a worker is asked for a swarm network.
pub const MSG_WORKER_CREATE: &str = "Cannot create a multi-host network from a worker node. Please create the network from a manager node.";

/// A swarm network as `network ls/inspect` show it.
pub fn network_to_docker(n: &Network) -> models::Network {
    let mut cfg = models::IpamConfig {
        subnet: Some(n.subnet.clone()),
        gateway: Some(n.gateway.clone()),
        ..Default::default()
    };
    if !n.ip_range.is_empty() {
        cfg.ip_range = Some(n.ip_range.clone());
    }
    models::Network {
        name: Some(n.name.clone()),
        id: Some(n.id.clone()),
        created: opt_time(&n.meta.created_at),
        scope: Some("swarm".into()),
        driver: Some(n.driver.clone()),
        enable_ipv4: Some(true),
        enable_ipv6: Some(false),
        ipam: Some(models::Ipam {
            driver: Some(if n.ipam_driver.is_empty() {
                "default".into()
            } else {
                n.ipam_driver.clone()
            }),
            config: Some(vec![cfg]),
            options: (!n.ipam_options.is_empty()).then(|| n.ipam_options.clone()),
        }),
        internal: Some(n.internal),
        attachable: Some(n.attachable),
        ingress: Some(n.ingress),
        config_from: Some(models::ConfigReference {
            network: Some(String::new()),
        }),
        config_only: Some(false),
        options: Some(n.options.clone()),
        labels: Some(n.labels.clone()),
        peers: None,
    }
}

/// Whether Docker counts the network as predefined (`type=builtin`): for swarm networks,
/// only `ingress`.
fn builtin(name: &str) -> bool {
    matches!(
        name,
        "bridge" | "host" | "none" | "default" | "ingress" | "docker_gwbridge"
    )
}

/// Go's `filters.Args.Match`: an exact match, or any value as an (unanchored) regexp.
fn go_match(f: &Filters, key: &str, source: &str) -> bool {
    let values = f.get(key);
    values.is_empty()
        || values
            .iter()
            .any(|v| *v == source || regex::Regex::new(v).is_ok_and(|re| re.is_match(source)))
}

/// Checks the keys and the `type` values (the daemon's "Invalid filter: 'type'='x'").
pub fn validate_filters(f: &Filters) -> Result<(), FilterError> {
    f.validate(FILTERS)?;
    for t in f.get("type") {
        if t != "custom" && t != "builtin" {
            return Err(FilterError::InvalidValue(format!(
                "Invalid filter: 'type'='{t}'"
            )));
        }
    }
    Ok(())
}

/// The daemon's `FilterNetworks` for swarm networks.
pub fn filter_networks<'a>(nets: &'a [Network], f: &Filters) -> Vec<&'a Network> {
    let labels = f.label_map("label");
    let types = f.get("type");
    nets.iter()
        .filter(|n| {
            (!f.contains("driver") || f.exact_match("driver", &n.driver))
                && go_match(f, "name", &n.name)
                && go_match(f, "id", &n.id)
                && match_labels(&labels, &n.labels)
                && (!f.contains("scope") || f.exact_match("scope", "swarm"))
                && (types.is_empty()
                    || types.iter().any(|t| match *t {
                        "builtin" => builtin(&n.name),
                        _ => !builtin(&n.name),
                    }))
        })
        .collect()
}

fn engine_socket(st: &AppState) -> Option<String> {
    match st.backend.local_engine() {
        LocalEngine::Docker { socket_path } => Some(socket_path),
        LocalEngine::Processes => None,
    }
}

fn is_manager(st: &AppState) -> bool {
    super::manager_check(&st.backend.swarm_status()).is_ok()
}

/// An engine answer passed through as is.
fn passthrough(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn engine(
    st: &AppState,
    method: Method,
    pq: &str,
    body: Bytes,
    version: &RequestVersion,
) -> ApiResult<Option<(StatusCode, Bytes)>> {
    match engine_socket(st) {
        None => Ok(None),
        Some(sock) => Ok(Some(st.proxy.call(&sock, method, pq, body, version).await?)),
    }
}

/// The subnets of the engine's own networks, which swarm subnets avoid.
async fn local_subnets(st: &AppState, version: &RequestVersion) -> ApiResult<Vec<String>> {
    let Some((status, body)) = engine(st, Method::GET, "/networks", Bytes::new(), version).await?
    else {
        return Ok(Vec::new());
    };
    if !status.is_success() {
        return Ok(Vec::new());
    }
    let nets: Vec<models::Network> = serde_json::from_slice(&body).unwrap_or_default();
    Ok(nets
        .iter()
        .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
        .flatten()
        .filter_map(|c| c.subnet.clone())
        .collect())
}

pub async fn list(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    q: QueryParams,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let f = parse_filters(q.get("filters").unwrap_or(""))?;
    validate_filters(&f)?;
    let raw = uri.query().unwrap_or("");
    let mut out: Vec<serde_json::Value> = Vec::new();
    if let Some((status, body)) = engine(
        &st,
        Method::GET,
        &EnginePath::new(["networks"]).raw_query(raw).build(),
        Bytes::new(),
        &version,
    )
    .await?
    {
        if !status.is_success() {
            return Ok(passthrough(status, body));
        }
        out = serde_json::from_slice(&body).unwrap_or_default();
    }
    // As the daemon: the swarm's networks when the manager can answer (not while the
    // swarm has no leader), the engine's always.
    if is_manager(&st) {
        let nets = st.backend.networks().await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "network list without the swarm's networks");
            Vec::new()
        });
        for n in filter_networks(&nets, &f) {
            out.push(wire::to_wire(&moby::NETWORK, &network_to_docker(n)));
        }
    }
    Ok(json_ok(&out))
}

/// A swarm network by full ID or exact name (the daemon's first two lookups).
fn exact<'a>(nets: &'a [Network], input: &str) -> Result<Option<&'a Network>, ApiError> {
    if let Some(n) = nets.iter().find(|n| n.id == input) {
        return Ok(Some(n));
    }
    let named: Vec<&Network> = nets.iter().filter(|n| n.name == input).collect();
    match named.len() {
        0 => Ok(None),
        1 => Ok(Some(named[0])),
        k => Err(ApiError::ambiguous("network", input, k)),
    }
}

fn by_prefix<'a>(nets: &'a [Network], input: &str) -> Result<Option<&'a Network>, ApiError> {
    let found: Vec<&Network> = nets.iter().filter(|n| n.id.starts_with(input)).collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        k => Err(ApiError::ambiguous("network", input, k)),
    }
}

/// Finds `input` among swarm networks or the engine's. `Ok(Err(resp))` is the engine's
/// answer to pass on.
async fn locate(
    st: &AppState,
    input: &str,
    scope: &str,
    method: Method,
    raw_query: &str,
    version: &RequestVersion,
) -> ApiResult<Result<Network, Response>> {
    let nets = if is_manager(st) && scope != "local" {
        // As the daemon: without a leader, only the engine's networks are found.
        st.backend.networks().await.unwrap_or_default()
    } else {
        Vec::new()
    };
    if let Some(n) = exact(&nets, input)? {
        return Ok(Ok(n.clone()));
    }
    if scope != "swarm" {
        let pq = EnginePath::new(["networks", input])
            .raw_query(raw_query)
            .build();
        if let Some((status, body)) = engine(st, method, &pq, Bytes::new(), version).await?
            && status != StatusCode::NOT_FOUND
        {
            return Ok(Err(passthrough(status, body)));
        }
    }
    match by_prefix(&nets, input)? {
        Some(n) => Ok(Ok(n.clone())),
        None => Err(ApiError::not_found(format!("network {input} not found"))),
    }
}

pub async fn inspect(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    Path(id): Path<String>,
    q: QueryParams,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let scope = q.get("scope").unwrap_or("").to_string();
    let raw = uri.query().unwrap_or("").to_string();
    match locate(&st, &id, &scope, Method::GET, &raw, &version).await? {
        Err(resp) => Ok(resp),
        Ok(n) => {
            let mut v = wire::to_wire(&moby::NETWORK, &network_to_docker(&n));
            if let Some(o) = v.as_object_mut() {
                o.insert("Containers".into(), serde_json::json!({}));
            }
            Ok(json_ok(&v))
        }
    }
}

pub async fn remove(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    match locate(&st, &id, "", Method::DELETE, "", &version).await? {
        Err(resp) => Ok(resp),
        Ok(n) => {
            st.backend.network_remove(&n.id).await?;
            let mut r = Response::new(axum::body::Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
    }
}

/// The request as a swarm network spec (subnet etc. from the first IPAM config).
///
/// The request is taken apart field by field, with no `..`, so a field added to the model
/// does not compile until it is either carried into the spec or refused here: a field a
/// client set is never dropped. The daemon itself drops `ConfigOnly`, `EnableIPv4: false`
/// and `AuxiliaryAddresses` for swarm networks (`BasicNetworkCreateToGRPC`); swarmd says so.
fn swarm_spec(req: &NetworkCreateRequest) -> ApiResult<Network> {
    let NetworkCreateRequest {
        name,
        driver,
        // Decides whether the network is swarm-scoped at all (see `create`).
        scope: _,
        internal,
        attachable,
        ingress,
        config_only,
        config_from,
        ipam,
        enable_ipv4,
        enable_ipv6,
        options,
        labels,
    } = req;
    let refuse = |what: &str| {
        Err(ApiError::bad_request(format!(
            "{what} is not supported on swarm networks by swarmd"
        )))
    };
    if *config_only == Some(true) {
        return refuse("a config-only network (--config-only)");
    }
    if config_from
        .as_ref()
        .and_then(|c| c.network.as_deref())
        .is_some_and(|n| !n.is_empty())
    {
        return refuse("a network built from a config-only network (--config-from)");
    }
    if *enable_ipv4 == Some(false) {
        return refuse("disabling IPv4 (--ipv4=false)");
    }
    if *enable_ipv6 == Some(true) {
        return refuse("IPv6");
    }
    let models::Ipam {
        driver: ipam_driver,
        config: ipam_config,
        options: ipam_options,
    } = ipam.clone().unwrap_or_default();
    let configs = ipam_config.unwrap_or_default();
    if configs.len() > 1 {
        return Err(ApiError::bad_request(
            "swarmd supports one IPAM configuration (one --subnet) per swarm network",
        ));
    }
    let models::IpamConfig {
        subnet,
        ip_range,
        gateway,
        auxiliary_addresses,
    } = configs.into_iter().next().unwrap_or_default();
    if auxiliary_addresses.is_some_and(|a| !a.is_empty()) {
        return refuse("an auxiliary address (--aux-address)");
    }
    Ok(Network {
        name: name.clone(),
        driver: driver.clone().unwrap_or_else(|| "overlay".into()),
        labels: labels.clone().unwrap_or_default(),
        attachable: attachable.unwrap_or(false),
        ingress: ingress.unwrap_or(false),
        internal: internal.unwrap_or(false),
        subnet: subnet.unwrap_or_default(),
        gateway: gateway.unwrap_or_default(),
        ip_range: ip_range.unwrap_or_default(),
        options: options.clone().unwrap_or_default(),
        ipam_driver: ipam_driver.unwrap_or_default(),
        ipam_options: ipam_options.unwrap_or_default(),
        ..Default::default()
    })
}

pub async fn create(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NetworkCreateRequest = decode_json(&body)?;
    let swarm_scoped = req.driver.as_deref() == Some("overlay")
        || req.scope.as_deref() == Some("swarm")
        || req.ingress == Some(true);
    let status = st.backend.swarm_status();
    if !swarm_scoped {
        if status.control_available
            && st
                .backend
                .networks()
                .await?
                .iter()
                .any(|n| n.name == req.name)
        {
            return Err(ApiError::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        return match engine(&st, Method::POST, "/networks/create", body, &version).await? {
            Some((s, b)) => Ok(passthrough(s, b)),
            None => Err(ApiError::not_implemented(
                "local networks need a Docker Engine: this node runs tasks as host processes",
            )),
        };
    }
    if status.local_node_state == models::LocalNodeState::ACTIVE && !status.control_available {
        return Err(ApiError::new(StatusCode::FORBIDDEN, MSG_WORKER_CREATE));
    }
    super::manager_check(&status)?;
    let spec = swarm_spec(&req)?;
    let local = local_subnets(&st, &version).await?;
    let id = st.backend.network_create(spec, local).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id, "Warning": "" }),
    ))
}

/// The daemon's answer when a service names a network that exists only on the engine.
pub async fn non_swarm_network_error(
    st: &AppState,
    target: &str,
    version: &RequestVersion,
) -> Option<ApiError> {
    let pq = EnginePath::new(["networks", target]).build();
    let (status, body) = engine(st, Method::GET, &pq, Bytes::new(), version)
        .await
        .ok()??;
    if !status.is_success() {
        return None;
    }
    let n: models::Network = serde_json::from_slice(&body).ok()?;
    Some(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "The network {} cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.",
            n.name.unwrap_or_else(|| target.to_string())
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, name: &str, labels: &[(&str, &str)]) -> Network {
        Network {
            id: id.into(),
            name: name.into(),
            driver: "overlay".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            subnet: "10.0.1.0/24".into(),
            gateway: "10.0.1.1".into(),
            ..Default::default()
        }
    }

    fn names(nets: &[Network], f: &str) -> Vec<String> {
        let f = parse_filters(f).unwrap();
        validate_filters(&f).unwrap();
        filter_networks(nets, &f)
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    #[test]
    fn filters_match_like_the_daemon() {
        let nets = vec![
            net("aaa111", "ingress", &[]),
            net(
                "bbb222",
                "st_front",
                &[("com.docker.stack.namespace", "st")],
            ),
            net("ccc333", "other", &[("env", "prod")]),
        ];
        assert_eq!(names(&nets, ""), ["ingress", "st_front", "other"]);
        assert_eq!(
            names(&nets, r#"{"label":{"com.docker.stack.namespace=st":true}}"#),
            ["st_front"]
        );
        assert_eq!(names(&nets, r#"{"label":{"env":true}}"#), ["other"]);
        assert_eq!(names(&nets, r#"{"name":{"front":true}}"#), ["st_front"]);
        assert_eq!(names(&nets, r#"{"name":{"^o":true}}"#), ["other"]);
        assert_eq!(names(&nets, r#"{"id":{"bbb":true}}"#), ["st_front"]);
        assert_eq!(names(&nets, r#"{"driver":{"bridge":true}}"#).len(), 0);
        assert_eq!(names(&nets, r#"{"driver":{"overlay":true}}"#).len(), 3);
        assert_eq!(names(&nets, r#"{"scope":{"local":true}}"#).len(), 0);
        assert_eq!(names(&nets, r#"{"scope":{"swarm":true}}"#).len(), 3);
        assert_eq!(names(&nets, r#"{"type":{"builtin":true}}"#), ["ingress"]);
        assert_eq!(names(&nets, r#"{"type":{"custom":true}}"#).len(), 2);
        let bad = parse_filters(r#"{"type":{"x":true}}"#).unwrap();
        assert_eq!(
            validate_filters(&bad).unwrap_err().to_string(),
            "Invalid filter: 'type'='x'"
        );
        let bad = parse_filters(r#"{"nmae":{"x":true}}"#).unwrap();
        assert!(validate_filters(&bad).is_err());
    }

    #[test]
    fn shown_as_docker_shows_a_swarm_network() {
        let mut n = net("abc", "front", &[]);
        n.attachable = true;
        let v = serde_json::to_value(network_to_docker(&n)).unwrap();
        assert_eq!(v["Scope"], "swarm");
        assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24");
        assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.0.1.1");
        assert_eq!(v["Attachable"], true);
        assert_eq!(v["IPAM"]["Driver"], "default");
    }

    #[test]
    fn create_request_becomes_a_spec() {
        let req: NetworkCreateRequest = decode_json(
            br#"{"Name":"n","Driver":"overlay","Attachable":true,"IPAM":{"Driver":"default","Config":[{"Subnet":"10.10.0.0/24"}]},"Labels":{"l":"1"}}"#,
        )
        .unwrap();
        let s = swarm_spec(&req).unwrap();
        assert_eq!((s.name.as_str(), s.subnet.as_str()), ("n", "10.10.0.0/24"));
        assert!(s.attachable);
        let req: NetworkCreateRequest =
            decode_json(br#"{"Name":"n","Driver":"overlay","IPAM":null,"Options":null}"#).unwrap();
        assert!(swarm_spec(&req).unwrap().subnet.is_empty());
    }

    /// What swarmd cannot honour on a swarm network is refused with a 400, not dropped.
    #[test]
    fn fields_swarmd_cannot_honour_are_refused() {
        for (body, word) in [
            (r#""ConfigOnly":true"#, "--config-only"),
            (r#""ConfigFrom":{"Network":"cfg"}"#, "--config-from"),
            (r#""EnableIPv4":false"#, "--ipv4=false"),
            (r#""EnableIPv6":true"#, "IPv6"),
            (
                r#""IPAM":{"Config":[{"Subnet":"10.9.0.0/24","AuxiliaryAddresses":{"a":"10.9.0.9"}}]}"#,
                "--aux-address",
            ),
        ] {
            let req: NetworkCreateRequest =
                decode_json(format!(r#"{{"Name":"n","Driver":"overlay",{body}}}"#).as_bytes())
                    .unwrap();
            let e = swarm_spec(&req).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{body}");
            assert!(e.to_string().contains(word), "{body}: {e}");
        }
        // Their unset or default spellings are fine.
        let req: NetworkCreateRequest = decode_json(
            br#"{"Name":"n","Driver":"overlay","ConfigOnly":false,"ConfigFrom":{"Network":""},"EnableIPv4":true,"EnableIPv6":false}"#,
        )
        .unwrap();
        swarm_spec(&req).unwrap();
    }
}
