//! What each control operation refuses, by code: the code picks the HTTP status and the
//! `code = X` the Docker CLI prints, so a refusal with the right words but the wrong code
//! is still a wrong answer.

use swarmd_types::error::Code;
use swarmd_types::models::{
    NodeSpec, NodeSpecRoleEnum, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec,
};
use swarmd_types::{Network, ObjectSpec};

use super::{Control, ControlError, initialised_for_test};

fn web(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.into()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some("busybox".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret(name: &str) -> ObjectSpec {
    ObjectSpec {
        name: name.into(),
        data: b"pw".to_vec(),
        ..Default::default()
    }
}

fn version(c: &Control, id: &str) -> u64 {
    c.store()
        .view(|t| t.services.get(id).map(|s| s.meta.version))
        .unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, ControlError>) -> Code {
    r.expect_err("refused").code()
}

#[tokio::test]
async fn service_refusals_carry_swarmkits_codes() {
    let c = initialised_for_test().await;
    let (id, _) = c.create_service(web("web")).await.unwrap();
    let v = version(&c, &id);

    let dup = c.create_service(web("web")).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup}");
    assert_eq!(dup.http_status(), 409);

    let stale = c.update_service(&id, v + 100, web("web"), false).await;
    let stale = stale.unwrap_err();
    assert_eq!(stale.code(), Code::Unknown, "{stale}");
    assert_eq!(stale.http_status(), 409, "stale versions stay a 409");

    // swarmkit answers renames and mode changes Unimplemented (HTTP 501).
    let renamed = c.update_service(&id, v, web("other"), false).await;
    assert_eq!(code(renamed), Code::Unimplemented);
    let mut global = web("web");
    global.mode = Some(ServiceSpecMode {
        global: Some(Default::default()),
        ..Default::default()
    });
    assert_eq!(
        code(c.update_service(&id, v, global, false).await),
        Code::Unimplemented
    );
    let mut replicated = web("web");
    replicated.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated { replicas: Some(2) }),
        ..Default::default()
    });
    c.update_service(&id, v, replicated, false).await.unwrap();

    // Never updated: nothing to roll back to.
    let (fresh, _) = c.create_service(web("fresh")).await.unwrap();
    let v = version(&c, &fresh);
    assert_eq!(
        code(c.update_service(&fresh, v, web("fresh"), true).await),
        Code::FailedPrecondition
    );

    assert_eq!(code(c.remove_service("nosuch").await), Code::NotFound);
    assert_eq!(
        code(c.create_service(web("bad name!")).await),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn node_refusals_carry_swarmkits_codes() {
    let c = initialised_for_test().await;
    let v = c
        .store()
        .view(|t| t.nodes.get("manager1").map(|n| n.meta.version))
        .unwrap();
    let demote = NodeSpec {
        role: Some(NodeSpecRoleEnum::WORKER),
        ..Default::default()
    };
    assert_eq!(
        code(c.update_node("manager1", v, demote.clone()).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(c.update_node("manager1", v + 1, demote).await),
        Code::Unknown
    );
    assert_eq!(
        code(c.remove_node("manager1", false).await),
        Code::FailedPrecondition
    );
    assert_eq!(code(c.remove_node("nosuch", true).await), Code::NotFound);
}

#[tokio::test]
async fn secret_and_network_refusals_carry_their_codes() {
    let c = initialised_for_test().await;
    c.create_secret(secret("pw")).await.unwrap();
    assert_eq!(
        code(c.create_secret(secret("pw")).await),
        Code::AlreadyExists
    );
    assert_eq!(code(c.remove_config("nosuch").await), Code::NotFound);

    let net = |name: &str| Network {
        name: name.into(),
        ..Default::default()
    };
    c.create_network(net("front"), vec![]).await.unwrap();
    // The daemon's own name check: a plain 409, no rpc framing.
    let dup = c.create_network(net("front"), vec![]).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert_eq!(dup.to_string(), "network with name front already exists");
    assert_eq!(
        code(c.create_network(net("bridge"), vec![]).await),
        Code::PermissionDenied
    );
    let ingress = c
        .store()
        .view(|t| {
            t.networks
                .values()
                .find(|n| n.ingress)
                .map(|n| n.id.clone())
        })
        .unwrap();
    let mut published = web("pub");
    published.endpoint_spec = Some(swarmd_types::models::EndpointSpec {
        ports: Some(vec![swarmd_types::models::EndpointPortConfig {
            target_port: Some(80),
            published_port: Some(8080),
            ..Default::default()
        }]),
        ..Default::default()
    });
    c.create_service(published).await.unwrap();
    assert_eq!(
        code(c.remove_network(&ingress).await),
        Code::FailedPrecondition
    );
}
