//! The API as the CLI sees it, in process: requests through `ApiApp` against a fake node.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{FakeBackend, HOSTNAME, NODE_ID, process_container};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use swarmd_engine_api::ApiApp;
use swarmd_engine_api::logs::stdcopy_frame;
use swarmd_types::models::LocalNodeState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn call(fake: &FakeBackend, method: Method, uri: &str, body: Option<Value>) -> Reply {
    call_raw(
        fake,
        method,
        uri,
        body.map(|b| serde_json::to_vec(&b).unwrap()),
    )
    .await
}

async fn call_raw(fake: &FakeBackend, method: Method, uri: &str, body: Option<Vec<u8>>) -> Reply {
    let app = ApiApp::new(
        Arc::new(fake.clone()),
        TaskTracker::new(),
        CancellationToken::new(),
    );
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(body.map(Body::from).unwrap_or_default()).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn filters(v: Value) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn create_service(fake: &FakeBackend, name: &str, replicas: i64) -> String {
    let r = call(
        fake,
        Method::POST,
        "/v1.50/services/create",
        Some(json!({
            "Name": name,
            "Labels": {"tier": name},
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Args": ["sleep", "1000"]}},
            "Mode": {"Replicated": {"Replicas": replicas}}
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.json()["ID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ping_headers() {
    let fake = FakeBackend::new();
    for method in [Method::GET, Method::HEAD] {
        let r = call(&fake, method.clone(), "/_ping", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("api-version"), "1.50");
        assert_eq!(r.header("ostype"), "linux");
        assert_eq!(r.header("docker-experimental"), "false");
        assert_eq!(r.header("builder-version"), "1");
        assert_eq!(r.header("swarm"), "inactive");
        assert_eq!(
            r.header("cache-control"),
            "no-cache, no-store, must-revalidate"
        );
        assert_eq!(r.header("pragma"), "no-cache");
        assert!(
            r.header("server").starts_with("Docker/"),
            "{}",
            r.header("server")
        );
        if method == Method::GET {
            assert_eq!(&r.body[..], b"OK");
        } else {
            assert!(r.body.is_empty());
        }
    }
    let fake = FakeBackend::manager();
    let r = call(&fake, Method::HEAD, "/v1.50/_ping", None).await;
    assert_eq!(r.header("swarm"), "active/manager");
    fake.with(|st| st.status.control_available = false);
    let r = call(&fake, Method::GET, "/_ping", None).await;
    assert_eq!(r.header("swarm"), "active/worker");
    fake.with(|st| st.status.local_node_state = LocalNodeState::LOCKED);
    let r = call(&fake, Method::GET, "/_ping", None).await;
    assert_eq!(r.header("swarm"), "locked");
}

#[tokio::test]
async fn version_prefixes() {
    let fake = FakeBackend::new();
    let r = call(&fake, Method::GET, "/v1.51/version", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.message(),
        "client version 1.51 is too new. Maximum supported API version is 1.50"
    );
    assert_eq!(r.header("api-version"), "1.50");
    let r = call(&fake, Method::GET, "/v1.23/info", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.message(),
        "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
    );
    for uri in [
        "/version",
        "/v1.24/version",
        "/v1.50/version",
        "/v1.41/version",
    ] {
        let r = call(&fake, Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        let v = r.json();
        assert_eq!(v["ApiVersion"], "1.50");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.50");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let fake = FakeBackend::manager();
    for (m, uri) in [
        (Method::GET, "/v1.50/nope"),
        (Method::GET, "/v1.50"),
        (Method::PUT, "/v1.50/services"),
        (Method::DELETE, "/v1.50/swarm"),
        // Engine routes with one method (issue 18 item 12: on the process executor these
        // were a 501 "not available", whatever the method).
        (Method::PUT, "/v1.50/networks/prune"),
        (Method::GET, "/v1.50/networks/n1/connect"),
        (Method::DELETE, "/v1.50/networks/n1/disconnect"),
        (Method::POST, "/v1.50/events"),
        (Method::DELETE, "/v1.50/system/df"),
        (Method::GET, "/v1.50/auth"),
        (Method::PATCH, "/v1.50/commit"),
    ] {
        let r = call(&fake, m, uri, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.message(), "page not found");
        assert_eq!(r.header("content-type"), "application/json");
    }
}

#[tokio::test]
async fn swarm_calls_before_init_are_503() {
    let fake = FakeBackend::new();
    for uri in [
        "/v1.50/swarm",
        "/v1.50/nodes",
        "/v1.50/services",
        "/v1.50/services/web",
        "/v1.50/tasks",
        "/v1.50/swarm/unlockkey",
    ] {
        let r = call(&fake, Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(
            r.message(),
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."
        );
    }
    let r = call(&fake, Method::POST, "/v1.50/swarm/leave", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.message(), "This node is not part of a swarm");

    // Workers and locked nodes get their own texts.
    let fake = FakeBackend::manager();
    fake.with(|st| st.status.control_available = false);
    let r = call(&fake, Method::GET, "/v1.50/nodes", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.message().contains("Worker nodes can't be used"),
        "{}",
        r.message()
    );
    fake.with(|st| st.status.local_node_state = LocalNodeState::LOCKED);
    let r = call(&fake, Method::GET, "/v1.50/services", None).await;
    assert!(
        r.message().starts_with("Swarm is encrypted"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn swarm_init_inspect_and_info() {
    let fake = FakeBackend::new();
    let body = json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "127.0.0.1",
                      "Spec": {"Orchestration": {}}, "SubnetSize": 24});
    let r = call(&fake, Method::POST, "/v1.50/swarm/init", Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!(NODE_ID));
    let r = call(&fake, Method::POST, "/v1.50/swarm/init", Some(body)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.message()
            .starts_with("This node is already part of a swarm.")
    );

    let r = call(&fake, Method::GET, "/v1.50/swarm", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["JoinTokens"]["Worker"], "SWMTKN-1-digest-worker");
    assert_eq!(v["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"], 5);
    assert_eq!(v["Version"]["Index"], 1);

    let r = call(&fake, Method::GET, "/v1.50/info", None).await;
    let v = r.json();
    assert_eq!(v["Swarm"]["LocalNodeState"], "active");
    assert_eq!(v["Swarm"]["NodeID"], NODE_ID);
    assert_eq!(v["Swarm"]["ControlAvailable"], true);
    assert_eq!(v["Swarm"]["Nodes"], 1);
    assert_eq!(v["Swarm"]["Managers"], 1);
    assert_eq!(v["Swarm"]["RemoteManagers"][0]["Addr"], "127.0.0.1:2377");
    assert_eq!(v["Swarm"]["Cluster"]["ID"], "cluster0000000000000000001");
    assert!(v["Swarm"]["Cluster"].get("JoinTokens").is_none());
    assert_eq!(v["Name"], HOSTNAME);
    assert_eq!(v["OSType"], "linux");

    // swarm update: stale version is a 409, unlock on an unlocked swarm a 409.
    let r = call(
        &fake,
        Method::POST,
        "/v1.50/swarm/update?version=99&rotateWorkerToken=false",
        Some(json!({"Name": "default"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &fake,
        Method::POST,
        "/v1.50/swarm/update?version=1&rotateWorkerToken=true",
        Some(json!({"Name": "default"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &fake,
        Method::POST,
        "/v1.50/swarm/unlock",
        Some(json!({"UnlockKey": "SWMKEY-1-x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.message(), "swarm is not locked");
    let r = call(&fake, Method::GET, "/v1.50/swarm/unlockkey", None).await;
    assert_eq!(r.json(), json!({"UnlockKey": "SWMKEY-1-fake"}));
}

#[tokio::test]
async fn nodes_list_filters_and_self() {
    let fake = FakeBackend::manager();
    let r = call(&fake, Method::GET, "/v1.50/nodes", None).await;
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Description"]["Hostname"], HOSTNAME);
    assert_eq!(v[0]["ManagerStatus"]["Leader"], true);
    assert_eq!(v[0]["Status"]["State"], "ready");

    let uri = format!(
        "/v1.50/nodes?filters={}",
        filters(json!({"role": {"manager": true}}))
    );
    assert_eq!(
        call(&fake, Method::GET, &uri, None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let uri = format!(
        "/v1.50/nodes?filters={}",
        filters(json!({"role": ["worker"]}))
    );
    assert_eq!(
        call(&fake, Method::GET, &uri, None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let uri = format!(
        "/v1.50/nodes?filters={}",
        filters(json!({"role": {"boss": true}}))
    );
    let r = call(&fake, Method::GET, &uri, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message(), "Invalid role filter: 'boss'");
    let uri = format!(
        "/v1.50/nodes?filters={}",
        filters(json!({"colour": {"red": true}}))
    );
    let r = call(&fake, Method::GET, &uri, None).await;
    assert_eq!(r.message(), "invalid filter 'colour'");
    let r = call(&fake, Method::GET, "/v1.50/nodes?filters=%7Bnope", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message(), "invalid filter");

    for id in ["self", HOSTNAME, NODE_ID, "node00"] {
        let r = call(&fake, Method::GET, &format!("/v1.50/nodes/{id}"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{id}");
        assert_eq!(r.json()["ID"], NODE_ID);
    }
    let r = call(&fake, Method::GET, "/v1.50/nodes/nosuch", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "node nosuch not found");

    let r = call(
        &fake,
        Method::POST,
        &format!("/v1.50/nodes/{HOSTNAME}/update?version=2"),
        Some(json!({"Labels": {"foo": "bar"}, "Role": "manager", "Availability": "drain"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = call(&fake, Method::GET, "/v1.50/nodes/self", None).await;
    assert_eq!(r.json()["Spec"]["Availability"], "drain");
    let r = call(
        &fake,
        Method::POST,
        "/v1.50/nodes/self/update",
        Some(json!({"Role": "manager"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().starts_with("invalid node version ''"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn services_create_inspect_update_remove() {
    let fake = FakeBackend::manager();
    let id = create_service(&fake, "web", 2).await;

    // Lowercase keys are accepted (Go's case-insensitive decoding).
    let r = call(
        &fake,
        Method::POST,
        "/v1.50/services/create",
        Some(json!({"name": "db", "taskTemplate": {"containerSpec": {"image": "busybox"}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let db = r.json();
    assert!(db["ID"].is_string());
    assert_eq!(db.get("Warnings"), Some(&Value::Null));

    let r = call(
        &fake,
        Method::GET,
        "/v1.50/services/db?insertDefaults=false",
        None,
    )
    .await;
    let v = r.json();
    assert_eq!(v["Spec"]["Name"], "db");
    // Replicated without a count becomes Replicas: 1; ForceUpdate is always there.
    assert_eq!(v["Spec"]["Mode"]["Replicated"]["Replicas"], 1);
    assert_eq!(v["Spec"]["TaskTemplate"]["ForceUpdate"], 0);
    assert_eq!(v["Endpoint"]["Spec"], json!({}));

    let r = call(
        &fake,
        Method::GET,
        "/v1.50/services/web?insertDefaults=true",
        None,
    )
    .await;
    let v = r.json();
    assert_eq!(v["ID"], id.as_str());
    assert_eq!(v["Spec"]["UpdateConfig"]["Order"], "stop-first");
    let version = v["Version"]["Index"].as_u64().unwrap();

    let r = call(&fake, Method::GET, "/v1.50/services/nosuch", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "service nosuch not found");
    let r = call(&fake, Method::DELETE, "/v1.50/services/nosuch", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Both IDs start with "svc": an ambiguous prefix.
    let r = call(&fake, Method::GET, "/v1.50/services/svc", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message(), "service svc is ambiguous (2 matches found)");

    let r = call(
        &fake,
        Method::POST,
        "/v1.50/services/create",
        Some(json!({"Name": "web"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let spec = json!({"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "busybox:1.36"}},
                      "Mode": {"Replicated": {"Replicas": 3}}});
    let r = call(
        &fake,
        Method::POST,
        &format!("/v1.50/services/web/update?version={}", version + 100),
        Some(spec.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &fake,
        Method::POST,
        &format!("/v1.50/services/web/update?version={version}&rollback=sideways"),
        Some(spec.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message(), "unrecognized rollback option sideways");
    let r = call(
        &fake,
        Method::POST,
        &format!("/v1.50/services/web/update?version={version}&registryAuthFrom=spec"),
        Some(spec),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"Warnings": []}));
    let v = call(&fake, Method::GET, "/v1.50/services/web", None)
        .await
        .json();
    assert_eq!(v["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(v["PreviousSpec"]["Mode"]["Replicated"]["Replicas"], 2);
    assert_eq!(v["UpdateStatus"]["State"], "completed");

    let r = call(&fake, Method::DELETE, "/v1.50/services/web", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    let r = call(&fake, Method::GET, "/v1.50/services/web", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let fake = FakeBackend::manager();
    let r = call_raw(
        &fake,
        Method::POST,
        "/v1.50/services/create",
        Some(b"{\"Name\": ".to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message(), "invalid JSON: unexpected EOF");
    let r = call_raw(
        &fake,
        Method::POST,
        "/v1.50/services/create",
        Some(br#"{"Mode": {"Replicated": {"Replicas": "x"}}}"#.to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().contains("ServiceSpec.Mode.Replicated.Replicas"),
        "{}",
        r.message()
    );

    let app = ApiApp::new(
        Arc::new(fake.clone()),
        TaskTracker::new(),
        CancellationToken::new(),
    );
    let req = Request::post("/v1.50/services/create")
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let huge = vec![b' '; swarmd_engine_api::decode::MAX_BODY_BYTES + 10];
    let req = Request::post("/v1.50/services/create")
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn services_list_with_status_and_filters() {
    let fake = FakeBackend::manager();
    create_service(&fake, "web", 3).await;
    create_service(&fake, "db", 1).await;
    // One of web's tasks is still starting.
    fake.with(|st| {
        let t = st
            .tasks
            .iter_mut()
            .find(|t| t.service_name == "web" && t.slot == 2)
            .unwrap();
        t.status.state = swarmd_types::models::TaskState::STARTING;
    });

    let r = call(&fake, Method::GET, "/v1.50/services?status=true", None).await;
    let v = r.json();
    let web = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Spec"]["Name"] == "web")
        .unwrap();
    assert_eq!(
        web["ServiceStatus"],
        json!({"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0})
    );
    let r = call(&fake, Method::GET, "/v1.50/services", None).await;
    assert!(r.json()[0].get("ServiceStatus").is_none());
    // API < 1.41 has no status.
    let r = call(&fake, Method::GET, "/v1.40/services?status=1", None).await;
    assert!(r.json()[0].get("ServiceStatus").is_none());

    let uri = format!(
        "/v1.50/services?filters={}&status=true",
        filters(
            json!({"label": {"tier=web": true}, "mode": {"replicated": true}, "name": {"we": true}})
        )
    );
    let v = call(&fake, Method::GET, &uri, None).await.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Spec"]["Name"], "web");
    let uri = format!(
        "/v1.50/services?filters={}",
        filters(json!({"mode": ["global"]}))
    );
    assert!(
        call(&fake, Method::GET, &uri, None)
            .await
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
    let uri = format!(
        "/v1.50/services?filters={}",
        filters(json!({"nmae": ["web"]}))
    );
    let r = call(&fake, Method::GET, &uri, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message(), "invalid filter 'nmae'");
}

#[tokio::test]
async fn tasks_filters() {
    let fake = FakeBackend::manager();
    let web = create_service(&fake, "web", 2).await;
    create_service(&fake, "db", 1).await;
    let list = |f: Value| {
        let fake = fake.clone();
        async move {
            let r = call(
                &fake,
                Method::GET,
                &format!("/v1.50/tasks?filters={}", filters(f)),
                None,
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.json().as_array().unwrap().clone()
        }
    };
    assert_eq!(list(json!({})).await.len(), 3);
    assert_eq!(list(json!({"service": {"web": true}})).await.len(), 2);
    assert_eq!(list(json!({"service": [web.clone()]})).await.len(), 2);
    assert_eq!(list(json!({"node": {"self": true}})).await.len(), 3);
    assert_eq!(list(json!({"node": {HOSTNAME: true}})).await.len(), 3);
    assert_eq!(list(json!({"label": {"tier=db": true}})).await.len(), 1);
    assert_eq!(
        list(json!({"desired-state": {"running": true}}))
            .await
            .len(),
        3
    );
    assert_eq!(
        list(json!({"desired-state": {"shutdown": true}}))
            .await
            .len(),
        0
    );
    assert_eq!(list(json!({"name": {"web.1": true}})).await.len(), 1);
    assert_eq!(
        list(json!({"_up-to-date": {"true": true}, "service": {web.as_str(): true}}))
            .await
            .len(),
        2
    );

    // After an update the old tasks are not up to date.
    let v = call(&fake, Method::GET, "/v1.50/services/web", None)
        .await
        .json();
    let version = v["Version"]["Index"].as_u64().unwrap();
    let r = call(
        &fake,
        Method::POST,
        &format!("/v1.50/services/{web}/update?version={version}"),
        Some(json!({"Name": "web", "Mode": {"Replicated": {"Replicas": 2}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let tasks = list(json!({"service": {"web": true}})).await;
    assert_eq!(tasks.len(), 4);
    let fresh = list(json!({"_up-to-date": {"true": true}, "service": {"web": true}})).await;
    assert_eq!(fresh.len(), 2);
    assert!(fresh.iter().all(|t| t["DesiredState"] == "running"));
    assert_eq!(fresh[0]["Slot"].as_u64().map(|s| s > 0), Some(true));
    assert_eq!(fresh[0]["Status"]["State"], "running");

    let r = call(
        &fake,
        Method::GET,
        &format!(
            "/v1.50/tasks?filters={}",
            filters(json!({"service": {"nosuch": true}}))
        ),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "service nosuch not found");
    let r = call(
        &fake,
        Method::GET,
        &format!(
            "/v1.50/tasks?filters={}",
            filters(json!({"desired-state": {"asleep": true}}))
        ),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.message(), "Invalid desired-state filter: 'asleep'");

    let id = fresh[0]["ID"].as_str().unwrap();
    let r = call(&fake, Method::GET, &format!("/v1.50/tasks/{id}"), None).await;
    assert_eq!(r.json()["ID"], id);
    let r = call(&fake, Method::GET, "/v1.50/tasks/nosuch", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "task nosuch not found");
}

#[tokio::test]
async fn service_logs_are_framed() {
    let fake = FakeBackend::manager();
    let id = create_service(&fake, "web", 1).await;
    let r = call(
        &fake,
        Method::GET,
        "/v1.50/services/web/logs?stdout=1&stderr=1&details=1&timestamps=1&tail=all",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        "application/vnd.docker.multiplexed-stream"
    );
    let task = fake.with(|st| st.tasks[0].id.clone());
    let details = format!(
        "com.docker.swarm.node.id={NODE_ID},com.docker.swarm.service.id={id},com.docker.swarm.task.id={task}"
    );
    let mut expected = stdcopy_frame(
        1,
        format!("2025-01-02T03:04:06.500000000Z {details} hello from 1\n").as_bytes(),
    )
    .to_vec();
    expected.extend_from_slice(&stdcopy_frame(
        2,
        format!("2025-01-02T03:04:06.500000000Z {details} oops from 1\n").as_bytes(),
    ));
    assert_eq!(r.body.to_vec(), expected);

    let r = call(
        &fake,
        Method::GET,
        "/v1.50/services/web/logs?stdout=1",
        None,
    )
    .await;
    assert_eq!(
        r.body.to_vec(),
        stdcopy_frame(1, b"hello from 1\n").to_vec()
    );
    let r = call(
        &fake,
        Method::GET,
        "/v1.41/tasks/{task}/logs?stderr=1"
            .replace("{task}", &task)
            .as_str(),
        None,
    )
    .await;
    assert_eq!(
        r.header("content-type"),
        "application/vnd.docker.raw-stream"
    );
    assert_eq!(r.body.to_vec(), stdcopy_frame(2, b"oops from 1\n").to_vec());

    let r = call(&fake, Method::GET, "/v1.50/services/web/logs", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.message(),
        "Bad parameters: you must choose at least one stream"
    );
}

#[tokio::test]
async fn process_executor_local_endpoints() {
    let fake = FakeBackend::manager();
    fake.with(|st| {
        st.containers = vec![
            process_container("aaaa1111", "web.1.t1", true),
            process_container("bbbb2222", "old.1.t0", false),
        ]
    });
    let r = call(&fake, Method::GET, "/v1.50/containers/json", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = call(&fake, Method::GET, "/v1.50/containers/json?all=1", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = call(&fake, Method::GET, "/v1.50/containers/nosuch/json", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "No such container: nosuch");
    let r = call(&fake, Method::POST, "/v1.50/containers/aaaa/kill", None).await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    let r = call(&fake, Method::GET, "/v1.50/images/json", None).await;
    assert_eq!(r.json(), json!([]));
    let r = call(&fake, Method::GET, "/v1.50/images/nosuch/json", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &fake,
        Method::GET,
        "/v1.50/distribution/busybox:latest/json",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for uri in [
        "/v1.50/volumes/nosuch",
        "/v1.50/networks/nosuch",
        "/v1.50/plugins/nosuch/json",
    ] {
        let r = call(&fake, Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
    }
}
