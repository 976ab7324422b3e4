use super::*;
use crate::view::testutil::engine;

/// A summary as engine 20.10 lists it.
fn summary(id: &str, name: &str, created: i64, ports: &str) -> ContainerSummary {
    serde_json::from_str(&format!(
        r#"{{"Id":"{id}","Names":["/{name}"],"Image":"busybox","ImageID":"sha256:ab",
        "Command":"sleep 1d","Created":{created},"Ports":[{ports}],"Labels":{{}},
        "State":"running","Status":"Up 2 minutes","HostConfig":{{"NetworkMode":"default"}},
        "NetworkSettings":{{"Networks":{{}}}},"Mounts":[]}}"#
    ))
    .unwrap()
}

fn answer(name: &str, ip: &str, containers: Vec<ContainerSummary>) -> EngineAnswer<Listing> {
    EngineAnswer {
        engine: engine(name, ip),
        answer: Listing {
            containers,
            host_down: false,
        },
    }
}

fn pool() -> Vec<EngineAnswer<Listing>> {
    vec![
        answer(
            "node-1",
            "10.0.0.1",
            vec![
                summary(
                    "a1",
                    "web",
                    100,
                    r#"{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},
                       {"IP":"::","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},
                       {"IP":"127.0.0.1","PrivatePort":81,"PublicPort":8081,"Type":"tcp"},
                       {"PrivatePort":82,"Type":"tcp"}"#,
                ),
                summary("a2", "db", 300, ""),
            ],
        ),
        answer(
            "node-10",
            "10.0.0.10",
            vec![
                summary("b1", "web", 200, ""),
                summary("b2", "cache", 300, ""),
            ],
        ),
    ]
}

fn names(list: &[ContainerSummary]) -> Vec<&str> {
    list.iter()
        .map(|c| c.names.as_ref().unwrap()[0].as_str())
        .collect()
}

#[test]
fn names_carry_the_node_and_the_list_is_newest_first() {
    let list = merge(&ListQuery::default(), &pool());
    assert_eq!(
        names(&list),
        [
            "/node-10/cache",
            "/node-1/db",
            "/node-10/web",
            "/node-1/web"
        ],
        "newest first; same second: higher ID first"
    );
}

#[test]
fn ports_on_all_interfaces_show_the_engine_ip() {
    let list = merge(&ListQuery::default(), &pool());
    let ports = list[3].ports.as_ref().unwrap();
    let ips: Vec<Option<&str>> = ports.iter().map(|p| p.ip.as_deref()).collect();
    assert_eq!(
        ips,
        [Some("10.0.0.1"), Some("127.0.0.1"), None],
        "0.0.0.0 and :: bindings of one port are listed once"
    );
}

#[test]
fn node_filter_is_docker_match_on_the_engine_name() {
    let q = |v: &[&str]| ListQuery {
        node: v.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(
        names(&merge(&q(&["node-10"]), &pool())),
        ["/node-10/cache", "/node-10/web"]
    );
    assert_eq!(
        merge(&q(&["node-1"]), &pool()).len(),
        4,
        "unanchored, as classic: node-1 is found in node-10"
    );
    assert_eq!(merge(&q(&["^node-1$"]), &pool()).len(), 2);
    assert_eq!(merge(&q(&["other", "node-1$"]), &pool()).len(), 2);
    assert!(merge(&q(&["node-[", "x"]), &pool()).is_empty());
    assert!(!q(&["node-2"]).wants_engine(&engine("node-1", "10.0.0.1")));
    assert!(ListQuery::default().wants_engine(&engine("node-1", "10.0.0.1")));
}

#[test]
fn limit_applies_over_the_merged_list() {
    let q = ListQuery {
        limit: Some(3),
        ..Default::default()
    };
    assert_eq!(
        names(&merge(&q, &pool())),
        ["/node-10/cache", "/node-1/db", "/node-10/web"]
    );
    assert_eq!(
        q.engine_query(),
        EngineQuery {
            all: true,
            limit: Some(3)
        },
        "a limit lists stopped containers too and can go to each engine"
    );
}

#[test]
fn before_and_since_are_applied_by_the_manager() {
    let q = ListQuery {
        before: Some(Bound {
            id: "b2".into(),
            created: 300,
        }),
        since: Some(Bound {
            id: "a1".into(),
            created: 100,
        }),
        limit: Some(5),
        ..Default::default()
    };
    assert_eq!(names(&merge(&q, &pool())), ["/node-1/db", "/node-10/web"]);
    assert_eq!(
        q.engine_query(),
        EngineQuery {
            all: true,
            limit: None
        },
        "an engine's newest may all fall outside the bounds"
    );
}

#[test]
fn unreachable_engines_show_host_down_with_all_only() {
    let mut answers = pool();
    answers[1].answer.host_down = true;
    assert_eq!(
        names(&merge(&ListQuery::default(), &answers)),
        ["/node-1/db", "/node-1/web"]
    );
    let all = ListQuery {
        all: true,
        ..Default::default()
    };
    let list = merge(&all, &answers);
    assert_eq!(list.len(), 4);
    assert_eq!(list[0].status.as_deref(), Some("Host Down"));
    assert_eq!(list[1].status.as_deref(), Some("Up 2 minutes"));
    assert_eq!(
        ListQuery::default().engine_query(),
        EngineQuery {
            all: false,
            limit: None
        }
    );
}

#[test]
fn an_unreachable_engine_lists_what_the_manager_last_saw() {
    let mut n = crate::view::testutil::node("node-2", "10.0.0.2");
    n.containers = vec![
        crate::view::testutil::container("c9", "old", "exited"),
        crate::scheduler::model::Container::default(),
    ];
    n.containers[0].image = "busybox".into();
    let listing = cached_listing(&n);
    assert!(listing.host_down);
    assert_eq!(
        listing.containers.len(),
        1,
        "a pending create is not listed"
    );
    let mut answers = pool();
    answers.push(EngineAnswer {
        engine: engine("node-2", "10.0.0.2"),
        answer: listing,
    });
    let all = ListQuery {
        all: true,
        ..Default::default()
    };
    let list = merge(&all, &answers);
    let last = list.last().unwrap();
    assert_eq!(last.names.as_ref().unwrap(), &["/node-2/old"]);
    assert_eq!(last.status.as_deref(), Some("Host Down"));
    assert_eq!(last.image.as_deref(), Some("busybox"));
    assert_eq!(
        last.state,
        Some(bollard_stubs::models::ContainerSummaryStateEnum::EXITED)
    );
}
