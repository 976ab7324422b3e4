//! The keys of every swarm answer, pinned to what Docker's daemon sends (moby v28.2's Go
//! types and its `daemon/cluster/convert`), through the router as a client sees them.
//!
//! Each kind is populated as fully as swarmd can hold it, and the set of JSON paths it
//! serves must equal the table written here from moby's types: a key spelled as the swagger
//! spells it (`HealthCheck`), a field Go always writes but we leave out, or one Go leaves
//! out but we write, each fails. Specs are also read back: every field a client sets at
//! create must come back exactly as sent.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{FakeBackend, NODE_ID};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use swarmd_engine_api::ApiApp;
use swarmd_types::VirtualIp;
use swarmd_types::models::{
    ContainerStatus, EndpointPortConfig, PortStatus, ServiceUpdateStatus,
    ServiceUpdateStatusStateEnum,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

async fn call(fake: &FakeBackend, method: Method, uri: &str, body: Option<Value>) -> Value {
    let app = ApiApp::new(
        Arc::new(fake.clone()),
        TaskTracker::new(),
        CancellationToken::new(),
    );
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(
            body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                .unwrap_or_default(),
        )
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{uri}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    if status == StatusCode::NO_CONTENT || bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&bytes).unwrap()
}

/// Every leaf of `v` as a dotted path; `[]` stands for any array element, and an empty
/// object or array is a leaf (so `"Global": {}` is pinned as present).
fn paths(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: String, out: &mut BTreeSet<String>) {
        let join = |k: &str| {
            if at.is_empty() {
                k.to_string()
            } else {
                format!("{at}.{k}")
            }
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(v, join(k), out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for v in a {
                    walk(v, format!("{at}[]"), out);
                }
            }
            _ => {
                out.insert(at);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, String::new(), &mut out);
    out
}

fn assert_paths(kind: &str, served: &Value, expected: &[&str]) {
    let got = paths(served);
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{kind}: keys differ from Docker's\n  missing (Docker sends): {missing:#?}\n  \
         extra (Docker does not send): {extra:#?}\nserved: {served:#}"
    );
}

/// Asserts `got == want`, naming the leaves that differ (exact array indexes).
fn assert_same(kind: &str, got: &Value, want: &Value) {
    fn leaves(v: &Value, at: String, out: &mut std::collections::BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    leaves(v, format!("{at}.{k}"), out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, v) in a.iter().enumerate() {
                    leaves(v, format!("{at}[{i}]"), out);
                }
            }
            _ => {
                out.insert(at, v.clone());
            }
        }
    }
    let (mut g, mut w) = Default::default();
    leaves(got, String::new(), &mut g);
    leaves(want, String::new(), &mut w);
    let keys: BTreeSet<&String> = g.keys().chain(w.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| g.get(*k) != w.get(*k))
        .map(|k| format!("{k}: served {:?}, sent {:?}", g.get(k), w.get(k)))
        .collect();
    assert!(
        diff.is_empty(),
        "{kind} read back differs:\n{}",
        diff.join("\n")
    );
}

/// A service spec with every field moby's `swarm.ServiceSpec` has that swarmd keeps, each
/// set, spelled as the daemon spells it.
fn full_service_spec() -> Value {
    json!({
        "Name": "full",
        "Labels": {"k": "v"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "busybox:latest",
                "Labels": {"k": "v"},
                "Command": ["sleep"],
                "Args": ["1d"],
                "Hostname": "h",
                "Env": ["A=1"],
                "Dir": "/tmp",
                "User": "nobody",
                "Groups": ["wheel"],
                "Privileges": {
                    "CredentialSpec": {"Config": "c", "File": "f", "Registry": "r"},
                    "SELinuxContext": {"Disable": true, "User": "u", "Role": "r",
                                       "Type": "t", "Level": "l"},
                    "Seccomp": {"Mode": "custom", "Profile": "e30="},
                    "AppArmor": {"Mode": "default"},
                    "NoNewPrivileges": true
                },
                "Init": true,
                "StopSignal": "SIGTERM",
                "TTY": true,
                "OpenStdin": true,
                "ReadOnly": true,
                "Mounts": [
                    {"Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": true,
                     "Consistency": "cached",
                     "BindOptions": {"Propagation": "rprivate", "NonRecursive": true,
                                     "CreateMountpoint": true, "ReadOnlyNonRecursive": true,
                                     "ReadOnlyForceRecursive": true}},
                    {"Type": "volume", "Source": "vol", "Target": "/vol",
                     "VolumeOptions": {"NoCopy": true, "Labels": {"k": "v"}, "Subpath": "sub",
                                       "DriverConfig": {"Name": "local",
                                                        "Options": {"o": "p"}}}},
                    {"Type": "tmpfs", "Target": "/tmpfs",
                     "TmpfsOptions": {"SizeBytes": 1024, "Mode": 448,
                                      "Options": [["exec"]]}},
                    {"Type": "image", "Source": "img", "Target": "/img",
                     "ImageOptions": {"Subpath": "sub"}}
                ],
                "StopGracePeriod": 1_000_000_000,
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000,
                                "Timeout": 2_000_000_000, "StartPeriod": 3_000_000_000u64,
                                "StartInterval": 4_000_000_000u64, "Retries": 3},
                "Hosts": ["10.0.0.1 db"],
                "DNSConfig": {"Nameservers": ["10.0.0.2"], "Search": ["example.com"],
                              "Options": ["ndots:2"]},
                "Secrets": [{"File": {"Name": "s", "UID": "0", "GID": "0", "Mode": 292},
                             "SecretID": "sid", "SecretName": "sname"}],
                "Configs": [{"File": {"Name": "c", "UID": "0", "GID": "0", "Mode": 292},
                             "ConfigID": "cid", "ConfigName": "cname"},
                            {"Runtime": {}, "ConfigID": "cid2", "ConfigName": "cname2"}],
                "Isolation": "default",
                "Sysctls": {"net.core.somaxconn": "1024"},
                "CapabilityAdd": ["CAP_NET_ADMIN"],
                "CapabilityDrop": ["CAP_MKNOD"],
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                "OomScoreAdj": 100
            },
            "Resources": {
                "Limits": {"NanoCPUs": 1_000_000_000, "MemoryBytes": 1_048_576, "Pids": 100},
                "Reservations": {"NanoCPUs": 500_000_000, "MemoryBytes": 524_288,
                                 "GenericResources": [
                                     {"NamedResourceSpec": {"Kind": "gpu", "Value": "g0"}},
                                     {"DiscreteResourceSpec": {"Kind": "ssd", "Value": 2}}
                                 ]}
            },
            "RestartPolicy": {"Condition": "on-failure", "Delay": 1_000_000_000,
                              "MaxAttempts": 3, "Window": 2_000_000_000},
            "Placement": {"Constraints": ["node.role==manager"],
                          "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.az"}}],
                          "MaxReplicas": 2,
                          "Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
            "Networks": [{"Target": "net", "Aliases": ["alias"], "DriverOpts": {"o": "p"}}],
            "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}},
            "ForceUpdate": 2,
            "Runtime": "container"
        },
        "Mode": {"Replicated": {"Replicas": 2}},
        "UpdateConfig": {"Parallelism": 2, "Delay": 1_000_000_000, "FailureAction": "rollback",
                         "Monitor": 2_000_000_000, "MaxFailureRatio": 0.5,
                         "Order": "start-first"},
        "RollbackConfig": {"Parallelism": 3, "Delay": 1_000_000_000,
                           "FailureAction": "continue", "Monitor": 2_000_000_000,
                           "MaxFailureRatio": 0.25, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "vip",
                         "Ports": [{"Name": "web", "Protocol": "tcp", "TargetPort": 80,
                                    "PublishedPort": 8080, "PublishMode": "ingress"}]}
    })
}

/// moby's `swarm.TaskSpec` paths of [`full_service_spec`]'s task template, under `at`.
fn task_spec_paths(at: &str) -> Vec<String> {
    let cs = [
        "Image",
        "Labels.k",
        "Command[]",
        "Args[]",
        "Hostname",
        "Env[]",
        "Dir",
        "User",
        "Groups[]",
        "Privileges.CredentialSpec.Config",
        "Privileges.CredentialSpec.File",
        "Privileges.CredentialSpec.Registry",
        "Privileges.SELinuxContext.Disable",
        "Privileges.SELinuxContext.User",
        "Privileges.SELinuxContext.Role",
        "Privileges.SELinuxContext.Type",
        "Privileges.SELinuxContext.Level",
        "Privileges.Seccomp.Mode",
        "Privileges.Seccomp.Profile",
        "Privileges.AppArmor.Mode",
        "Privileges.NoNewPrivileges",
        "Init",
        "StopSignal",
        "TTY",
        "OpenStdin",
        "ReadOnly",
        "Mounts[].Type",
        "Mounts[].Source",
        "Mounts[].Target",
        "Mounts[].ReadOnly",
        "Mounts[].Consistency",
        "Mounts[].BindOptions.Propagation",
        "Mounts[].BindOptions.NonRecursive",
        "Mounts[].BindOptions.CreateMountpoint",
        "Mounts[].BindOptions.ReadOnlyNonRecursive",
        "Mounts[].BindOptions.ReadOnlyForceRecursive",
        "Mounts[].VolumeOptions.NoCopy",
        "Mounts[].VolumeOptions.Labels.k",
        "Mounts[].VolumeOptions.Subpath",
        "Mounts[].VolumeOptions.DriverConfig.Name",
        "Mounts[].VolumeOptions.DriverConfig.Options.o",
        "Mounts[].TmpfsOptions.SizeBytes",
        "Mounts[].TmpfsOptions.Mode",
        "Mounts[].TmpfsOptions.Options[][]",
        "Mounts[].ImageOptions.Subpath",
        "StopGracePeriod",
        "Healthcheck.Test[]",
        "Healthcheck.Interval",
        "Healthcheck.Timeout",
        "Healthcheck.StartPeriod",
        "Healthcheck.StartInterval",
        "Healthcheck.Retries",
        "Hosts[]",
        "DNSConfig.Nameservers[]",
        "DNSConfig.Search[]",
        "DNSConfig.Options[]",
        "Secrets[].File.Name",
        "Secrets[].File.UID",
        "Secrets[].File.GID",
        "Secrets[].File.Mode",
        "Secrets[].SecretID",
        "Secrets[].SecretName",
        "Configs[].File.Name",
        "Configs[].File.UID",
        "Configs[].File.GID",
        "Configs[].File.Mode",
        "Configs[].Runtime",
        "Configs[].ConfigID",
        "Configs[].ConfigName",
        "Isolation",
        "Sysctls.net.core.somaxconn",
        "CapabilityAdd[]",
        "CapabilityDrop[]",
        "Ulimits[].Name",
        "Ulimits[].Soft",
        "Ulimits[].Hard",
        "OomScoreAdj",
    ]
    .iter()
    .map(|p| format!("ContainerSpec.{p}"));
    let rest = [
        "Resources.Limits.NanoCPUs",
        "Resources.Limits.MemoryBytes",
        "Resources.Limits.Pids",
        "Resources.Reservations.NanoCPUs",
        "Resources.Reservations.MemoryBytes",
        "Resources.Reservations.GenericResources[].NamedResourceSpec.Kind",
        "Resources.Reservations.GenericResources[].NamedResourceSpec.Value",
        "Resources.Reservations.GenericResources[].DiscreteResourceSpec.Kind",
        "Resources.Reservations.GenericResources[].DiscreteResourceSpec.Value",
        "RestartPolicy.Condition",
        "RestartPolicy.Delay",
        "RestartPolicy.MaxAttempts",
        "RestartPolicy.Window",
        "Placement.Constraints[]",
        "Placement.Preferences[].Spread.SpreadDescriptor",
        "Placement.MaxReplicas",
        "Placement.Platforms[].Architecture",
        "Placement.Platforms[].OS",
        "Networks[].Target",
        "Networks[].Aliases[]",
        "Networks[].DriverOpts.o",
        "LogDriver.Name",
        "LogDriver.Options.max-size",
        "ForceUpdate",
        "Runtime",
    ]
    .iter()
    .map(|p| p.to_string());
    cs.chain(rest).map(|p| format!("{at}.{p}")).collect()
}

fn with_prefix(at: &str, ps: &[&str]) -> Vec<String> {
    ps.iter().map(|p| format!("{at}.{p}")).collect()
}

const META: &[&str] = &["ID", "Version.Index", "CreatedAt", "UpdatedAt"];

fn service_spec_paths(at: &str) -> Vec<String> {
    let mut v = with_prefix(
        at,
        &[
            "Name",
            "Labels.k",
            "Mode.Replicated.Replicas",
            "UpdateConfig.Parallelism",
            "UpdateConfig.Delay",
            "UpdateConfig.FailureAction",
            "UpdateConfig.Monitor",
            "UpdateConfig.MaxFailureRatio",
            "UpdateConfig.Order",
            "RollbackConfig.Parallelism",
            "RollbackConfig.Delay",
            "RollbackConfig.FailureAction",
            "RollbackConfig.Monitor",
            "RollbackConfig.MaxFailureRatio",
            "RollbackConfig.Order",
            "EndpointSpec.Mode",
            "EndpointSpec.Ports[].Name",
            "EndpointSpec.Ports[].Protocol",
            "EndpointSpec.Ports[].TargetPort",
            "EndpointSpec.Ports[].PublishedPort",
            "EndpointSpec.Ports[].PublishMode",
        ],
    );
    v.extend(task_spec_paths(&format!("{at}.TaskTemplate")));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn create_full_service(fake: &FakeBackend) -> String {
    let created = call(
        fake,
        Method::POST,
        "/v1.50/services/create",
        Some(full_service_spec()),
    )
    .await;
    created["ID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_service_spec_reads_back_as_sent() {
    let fake = FakeBackend::manager();
    let id = create_full_service(&fake).await;
    let svc = call(&fake, Method::GET, &format!("/v1.50/services/{id}"), None).await;
    assert_same("service spec", &svc["Spec"], &full_service_spec());
    // Clients that spell the key as the swagger does are understood on the way in.
    let mut swaggerish = full_service_spec();
    let cs = &mut swaggerish["TaskTemplate"]["ContainerSpec"];
    let hc = cs.as_object_mut().unwrap().remove("Healthcheck").unwrap();
    cs["HealthCheck"] = hc;
    swaggerish["Name"] = json!("swaggerish");
    let created = call(&fake, Method::POST, "/services/create", Some(swaggerish)).await;
    let id = created["ID"].as_str().unwrap();
    let svc = call(&fake, Method::GET, &format!("/services/{id}"), None).await;
    assert_eq!(
        svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"],
        full_service_spec()["TaskTemplate"]["ContainerSpec"]["Healthcheck"]
    );
}

#[tokio::test]
async fn service_keys_are_dockers() {
    let fake = FakeBackend::manager();
    let id = create_full_service(&fake).await;
    fake.with(|st| {
        let s = st.services.iter_mut().find(|s| s.id == id).unwrap();
        s.previous_spec = Some(s.spec.clone());
        s.endpoint.spec = s.spec.endpoint_spec.clone();
        s.endpoint.ports = vec![EndpointPortConfig {
            name: Some("web".into()),
            protocol: Some(swarmd_types::models::EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(80),
            published_port: Some(8080),
            publish_mode: Some(swarmd_types::models::EndpointPortConfigPublishModeEnum::INGRESS),
        }];
        s.endpoint.virtual_ips = vec![VirtualIp {
            network_id: "net1".into(),
            addr: "10.0.0.2/24".into(),
        }];
        s.update_status = Some(ServiceUpdateStatus {
            state: Some(ServiceUpdateStatusStateEnum::UPDATING),
            started_at: Some("2025-01-02T03:04:05Z".into()),
            completed_at: Some("2025-01-02T03:04:06Z".into()),
            message: Some("update in progress".into()),
        });
    });
    let svc = call(&fake, Method::GET, &format!("/services/{id}"), None).await;
    let mut want: Vec<String> = META.iter().map(|s| s.to_string()).collect();
    want.extend(service_spec_paths("Spec"));
    want.extend(service_spec_paths("PreviousSpec"));
    want.extend(with_prefix(
        "Endpoint",
        &[
            "Spec.Mode",
            "Spec.Ports[].Name",
            "Spec.Ports[].Protocol",
            "Spec.Ports[].TargetPort",
            "Spec.Ports[].PublishedPort",
            "Spec.Ports[].PublishMode",
            "Ports[].Name",
            "Ports[].Protocol",
            "Ports[].TargetPort",
            "Ports[].PublishedPort",
            "Ports[].PublishMode",
            "VirtualIPs[].NetworkID",
            "VirtualIPs[].Addr",
        ],
    ));
    want.extend(with_prefix(
        "UpdateStatus",
        &["State", "StartedAt", "CompletedAt", "Message"],
    ));
    assert_paths("service", &svc, &strs(&want));

    // `status=true` adds ServiceStatus, all three counts always written.
    let list = call(&fake, Method::GET, "/services?status=true", None).await;
    let got = paths(&list[0]);
    for k in ["RunningTasks", "DesiredTasks", "CompletedTasks"] {
        assert!(got.contains(&format!("ServiceStatus.{k}")), "{k}");
    }
}

#[tokio::test]
async fn a_minimal_service_has_what_go_always_writes() {
    let fake = FakeBackend::manager();
    let created = call(
        &fake,
        Method::POST,
        "/services/create",
        Some(json!({"Name": "min", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}})),
    )
    .await;
    let id = created["ID"].as_str().unwrap();
    let svc = call(&fake, Method::GET, &format!("/services/{id}"), None).await;
    assert_paths(
        "minimal service",
        &svc,
        &[
            "ID",
            "Version.Index",
            "CreatedAt",
            "UpdatedAt",
            "Spec.Name",
            "Spec.Labels",
            "Spec.TaskTemplate.ContainerSpec.Image",
            "Spec.TaskTemplate.ForceUpdate",
            "Spec.Mode.Replicated.Replicas",
            "Endpoint.Spec",
        ],
    );
}

#[tokio::test]
async fn task_keys_are_dockers() {
    let fake = FakeBackend::manager();
    let id = create_full_service(&fake).await;
    let task_id = fake.with(|st| {
        let t = st.tasks.iter_mut().find(|t| t.service_id == id).unwrap();
        t.status.err = "boom".into();
        t.status.container = Some(ContainerStatus {
            container_id: Some("c1".into()),
            pid: Some(42),
            exit_code: Some(1),
        });
        t.status.ports = Some(PortStatus {
            ports: Some(vec![EndpointPortConfig {
                target_port: Some(80),
                published_port: Some(30000),
                ..Default::default()
            }]),
        });
        t.job_iteration = Some(3);
        t.id.clone()
    });
    let task = &call(&fake, Method::GET, &format!("/tasks/{task_id}"), None).await;
    let tasks = call(&fake, Method::GET, "/tasks", None).await;
    let listed = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["ID"] == task_id);
    assert_eq!(listed, Some(task), "list and inspect show a task alike");
    let mut want: Vec<String> = META.iter().map(|s| s.to_string()).collect();
    want.extend(
        [
            "Labels",
            "ServiceID",
            "Slot",
            "NodeID",
            "Status.Timestamp",
            "Status.State",
            "Status.Message",
            "Status.Err",
            "Status.ContainerStatus.ContainerID",
            "Status.ContainerStatus.PID",
            "Status.ContainerStatus.ExitCode",
            "Status.PortStatus.Ports[].TargetPort",
            "Status.PortStatus.Ports[].PublishedPort",
            "DesiredState",
            "JobIteration.Index",
            "Volumes",
        ]
        .map(String::from),
    );
    want.extend(task_spec_paths("Spec"));
    assert_paths("task", task, &strs(&want));
    assert_eq!(
        task["Volumes"],
        Value::Null,
        "Go writes a nil slice as null"
    );
    assert_eq!(task["NodeID"], NODE_ID);
}

#[tokio::test]
async fn node_keys_are_dockers() {
    let fake = FakeBackend::manager();
    fake.with(|st| {
        let n = &mut st.nodes[0];
        n.spec.name = Some("n".into());
        n.spec.labels = Some([("k".to_string(), "v".to_string())].into());
        n.status.message = "ok".into();
        n.description
            .engine_labels
            .insert("k".to_string(), "v".to_string());
        st.status.cluster.as_mut().unwrap().root_ca.cert_pem = "PEM".into();
    });
    let node = call(&fake, Method::GET, &format!("/nodes/{NODE_ID}"), None).await;
    let mut want: Vec<&str> = META.to_vec();
    want.extend([
        "Spec.Name",
        "Spec.Labels.k",
        "Spec.Role",
        "Spec.Availability",
        "Description.Hostname",
        "Description.Platform.Architecture",
        "Description.Platform.OS",
        "Description.Resources.NanoCPUs",
        "Description.Resources.MemoryBytes",
        "Description.Engine.EngineVersion",
        "Description.Engine.Labels.k",
        "Description.TLSInfo.TrustRoot",
        "Status.State",
        "Status.Message",
        "Status.Addr",
        "ManagerStatus.Leader",
        "ManagerStatus.Reachability",
        "ManagerStatus.Addr",
    ]);
    assert_paths("node", &node, &want);
}

/// What `GET /swarm` sends for a swarm spec with every field set: everything but the
/// signing CA certificate and key, which the daemon never returns.
const SWARM_PATHS: &[&str] = &[
    "ID",
    "Version.Index",
    "CreatedAt",
    "UpdatedAt",
    "Spec.Name",
    "Spec.Labels.k",
    "Spec.Orchestration.TaskHistoryRetentionLimit",
    "Spec.Raft.SnapshotInterval",
    "Spec.Raft.KeepOldSnapshots",
    "Spec.Raft.LogEntriesForSlowFollowers",
    "Spec.Raft.ElectionTick",
    "Spec.Raft.HeartbeatTick",
    "Spec.Dispatcher.HeartbeatPeriod",
    "Spec.CAConfig.NodeCertExpiry",
    "Spec.CAConfig.ExternalCAs[].Protocol",
    "Spec.CAConfig.ExternalCAs[].URL",
    "Spec.CAConfig.ExternalCAs[].Options.o",
    "Spec.CAConfig.ExternalCAs[].CACert",
    "Spec.CAConfig.ForceRotate",
    "Spec.TaskDefaults.LogDriver.Name",
    "Spec.TaskDefaults.LogDriver.Options.o",
    "Spec.EncryptionConfig.AutoLockManagers",
    "TLSInfo.TrustRoot",
    "RootRotationInProgress",
    "DefaultAddrPool[]",
    "SubnetSize",
    "DataPathPort",
    "JoinTokens.Worker",
    "JoinTokens.Manager",
];

fn full_swarm_spec() -> Value {
    json!({
        "Name": "default",
        "Labels": {"k": "v"},
        "Orchestration": {"TaskHistoryRetentionLimit": 7},
        "Raft": {"SnapshotInterval": 5000, "KeepOldSnapshots": 2,
                 "LogEntriesForSlowFollowers": 600, "ElectionTick": 20, "HeartbeatTick": 2},
        "Dispatcher": {"HeartbeatPeriod": 7_000_000_000u64},
        "CAConfig": {"NodeCertExpiry": 7_200_000_000_000u64,
                     "ExternalCAs": [{"Protocol": "cfssl", "URL": "https://ca.example",
                                      "Options": {"o": "p"}, "CACert": "PEM"}],
                     "ForceRotate": 3},
        "TaskDefaults": {"LogDriver": {"Name": "json-file", "Options": {"o": "p"}}},
        "EncryptionConfig": {"AutoLockManagers": true}
    })
}

#[tokio::test]
async fn swarm_keys_are_dockers_and_the_spec_reads_back() {
    let fake = FakeBackend::manager();
    let mut sent = full_swarm_spec();
    // Sent, but never shown: the daemon withholds the signing CA pair.
    sent["CAConfig"]["SigningCACert"] = json!("CERT");
    sent["CAConfig"]["SigningCAKey"] = json!("KEY");
    fake.with(|st| {
        let c = st.cluster.as_mut().unwrap();
        c.spec = serde_json::from_value(sent).unwrap();
        c.root_ca.cert_pem = "PEM".into();
    });
    let swarm = call(&fake, Method::GET, "/swarm", None).await;
    assert_paths("swarm", &swarm, SWARM_PATHS);
    assert_same("swarm spec", &swarm["Spec"], &full_swarm_spec());

    // Zero values as Go writes them: omitempty fields go, the rest stay.
    fake.with(|st| {
        st.cluster.as_mut().unwrap().spec = serde_json::from_value(json!({
            "Raft": {"SnapshotInterval": 0, "ElectionTick": 10, "HeartbeatTick": 1},
            "CAConfig": {"ForceRotate": 0}
        }))
        .unwrap()
    });
    let swarm = call(&fake, Method::GET, "/swarm", None).await;
    assert_eq!(
        swarm["Spec"],
        json!({
            "Labels": {},
            "Orchestration": {},
            "Raft": {"ElectionTick": 10, "HeartbeatTick": 1},
            "Dispatcher": {},
            "CAConfig": {},
            "TaskDefaults": {},
            "EncryptionConfig": {"AutoLockManagers": false}
        })
    );
}

#[tokio::test]
async fn info_swarm_keys_are_dockers() {
    let fake = FakeBackend::manager();
    fake.with(|st| {
        let mut c = st.cluster.clone().unwrap();
        c.spec = serde_json::from_value(full_swarm_spec()).unwrap();
        c.root_ca.cert_pem = "PEM".into();
        st.status.cluster = Some(c);
    });
    let info = call(&fake, Method::GET, "/info", None).await;
    let mut want = vec![
        "NodeID",
        "NodeAddr",
        "LocalNodeState",
        "ControlAvailable",
        "Error",
        "RemoteManagers[].NodeID",
        "RemoteManagers[].Addr",
        "Nodes",
        "Managers",
    ];
    let cluster: Vec<String> = SWARM_PATHS
        .iter()
        .filter(|p| !p.starts_with("JoinTokens"))
        .map(|p| format!("Cluster.{p}"))
        .collect();
    want.extend(strs(&cluster));
    assert_paths("info.Swarm", &info["Swarm"], &want);
}

/// `GET /version` as moby's `types.Version` writes it (v28.2): the engine component with
/// its details, and the deprecated top-level copy, `ApiVersion` spelled as the daemon
/// spells it.
#[tokio::test]
async fn version_keys_are_dockers() {
    let fake = FakeBackend::manager();
    let v = call(&fake, Method::GET, "/version", None).await;
    let mut got: Vec<String> = paths(&v)
        .into_iter()
        .filter(|p| !p.starts_with("Components[].Details."))
        .collect();
    got.sort();
    let mut want = vec![
        "Platform.Name",
        "Components[].Name",
        "Components[].Version",
        "Version",
        "ApiVersion",
        "MinAPIVersion",
        "GitCommit",
        "GoVersion",
        "Os",
        "Arch",
        "KernelVersion",
    ];
    want.sort();
    // BuildTime is empty, so Go leaves it out (omitempty).
    assert_eq!(got, want, "version: {v:#}");
    // Go's architecture name, not the kernel's.
    assert_eq!(v["Arch"], "amd64", "{v:#}");
    assert!(
        paths(&v)
            .iter()
            .any(|p| p.starts_with("Components[].Details.")),
        "the engine component carries its details: {v:#}"
    );
}
