//! `/_ping`, `/version`, `/info` of the virtual host.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use swarmd_engine_api::version::{API_VERSION, MIN_API_VERSION};

use super::json;
use super::state::ClassicState;
use crate::discovery::EngineState;

/// The version the virtual host reports, in classic's form (`swarm/<version>`).
pub fn server_version() -> String {
    format!("swarm/{}", env!("CARGO_PKG_VERSION"))
}

/// `GET`/`HEAD /_ping`. The headers are what today's CLI reads (classic lacked `OSType`,
/// so a current CLI refused `docker run --device` through it).
pub async fn ping(method: Method) -> Response {
    let mut resp = if method == Method::HEAD {
        let mut r = Response::new(Body::empty());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    } else {
        Response::new(Body::from("OK"))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("builder-version", HeaderValue::from_static("1"));
    h.insert("swarm", HeaderValue::from_static("inactive"));
    resp
}

pub async fn version(State(_st): State<ClassicState>) -> Response {
    json(
        StatusCode::OK,
        &json!({
            "Version": server_version(),
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": "",
            "BuildTime": "",
            "Platform": {"Name": "swarmd manage"},
            "Components": [{
                "Name": "Engine",
                "Version": server_version(),
                "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": go_arch()}
            }]
        }),
    )
}

/// Go's name for this machine's architecture, as Docker reports it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET /info`: the pool's totals and classic's per-engine block in `SystemStatus`.
pub async fn info(State(st): State<ClassicState>) -> Response {
    let engines = st.pool.engines();
    let mut status: Vec<[String; 2]> = vec![
        ["Role".into(), "primary".into()],
        ["Strategy".into(), st.scheduler.strategy.to_string()],
        [
            "Filters".into(),
            st.scheduler
                .filters
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ],
        ["Nodes".into(), engines.len().to_string()],
    ];
    let (mut containers, mut running, mut paused, mut stopped, mut images) = (0, 0, 0, 0, 0);
    let (mut ncpu, mut mem) = (0i64, 0i64);
    for e in &engines {
        let n = &e.node;
        let r = n.containers.iter().filter(|c| c.state == "running").count();
        let p = n.containers.iter().filter(|c| c.state == "paused").count();
        let s = n.containers.len() - r - p;
        containers += n.containers.len();
        running += r;
        paused += p;
        stopped += s;
        images += n.images.len();
        if e.state == EngineState::Healthy {
            ncpu += n.cpus;
            mem += n.memory;
        }
        status.push([format!(" {}", n.name), e.addr.to_string()]);
        status.push(["  └ ID".into(), n.id.clone()]);
        status.push(["  └ Status".into(), e.state.to_string()]);
        status.push([
            "  └ Containers".into(),
            format!(
                "{} ({r} Running, {p} Paused, {s} Stopped)",
                n.containers.len()
            ),
        ]);
        status.push([
            "  └ Reserved CPUs".into(),
            format!("{} / {}", n.used_cpus(), n.cpus),
        ]);
        status.push([
            "  └ Reserved Memory".into(),
            format!("{} / {}", n.used_memory(), n.memory),
        ]);
        let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        status.push(["  └ Labels".into(), labels.join(", ")]);
        status.push([
            "  └ Error".into(),
            e.last_error.clone().unwrap_or_else(|| "(none)".into()),
        ]);
        status.push(["  └ ServerVersion".into(), e.server_version.clone()]);
    }
    json(
        StatusCode::OK,
        &json!({
            "ID": "",
            "Containers": containers,
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": stopped,
            "Images": images,
            "Driver": "",
            "SystemStatus": status,
            "NCPU": ncpu,
            "MemTotal": mem,
            "Name": st.hostname,
            "ServerVersion": server_version(),
            "OperatingSystem": "linux",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "KernelVersion": "",
            "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": Value::Null},
            "Plugins": {"Volume": [], "Network": [], "Authorization": Value::Null, "Log": []},
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
            "SecurityOptions": [],
            "Warnings": Value::Null
        }),
    )
}
