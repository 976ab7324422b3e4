use super::*;
use crate::scheduler::model::SWARM_ID_LABEL;
use crate::view::testutil::*;

/// node-1: web (0123...), db; node-2: web (fedc...), cache with a Swarm ID; a pending
/// create named "queued" on node-2.
fn pool() -> (Node, Node) {
    let mut a = node("node-1", "10.0.0.1");
    a.containers = vec![
        container("0123456789abcdef0000", "web", "running"),
        container("abcdef0123456789ffff", "db", "running"),
    ];
    let mut b = node("node-2", "10.0.0.2");
    let mut cache = container("99887766554433221100", "cache", "exited");
    cache.labels = labels(&[(SWARM_ID_LABEL, "5a5a5a5a5a5a5a5a5a5a")]);
    b.containers = vec![
        container("fedcba98765432100000", "web", "running"),
        cache,
        crate::scheduler::model::Container {
            names: vec!["/queued".into()],
            ..Default::default()
        },
    ];
    (a, b)
}

fn found<'a>(nodes: &[&'a Node], reference: &str) -> (&'a str, &'a str) {
    let r = resolve_container(nodes, reference).unwrap();
    (r.node.name.as_str(), r.container.id.as_str())
}

#[test]
fn ids_swarm_ids_and_node_qualified_names() {
    let (a, b) = pool();
    let nodes = [&a, &b];
    assert_eq!(
        found(&nodes, "0123456789abcdef0000"),
        ("node-1", "0123456789abcdef0000")
    );
    assert_eq!(
        found(&nodes, "fedcba987654"),
        ("node-2", "fedcba98765432100000")
    );
    assert_eq!(
        found(&nodes, "5a5a5a5a5a5a"),
        ("node-2", "99887766554433221100")
    );
    assert_eq!(found(&nodes, "db"), ("node-1", "abcdef0123456789ffff"));
    assert_eq!(found(&nodes, "/db"), ("node-1", "abcdef0123456789ffff"));
    assert_eq!(
        found(&nodes, "node-2/web"),
        ("node-2", "fedcba98765432100000")
    );
    assert_eq!(
        found(&nodes, "node-1/web"),
        ("node-1", "0123456789abcdef0000")
    );
    assert_eq!(
        found(&nodes, "ID-node-2|10.0.0.2:2375/web"),
        ("node-2", "fedcba98765432100000")
    );
    assert_eq!(found(&nodes, "abc"), ("node-1", "abcdef0123456789ffff"));
    assert_eq!(found(&nodes, "5a5a"), ("node-2", "99887766554433221100"));
}

#[test]
fn an_exact_id_wins_over_a_name_on_another_engine() {
    let (mut a, b) = pool();
    a.containers[1].names = vec!["/fedcba987654".into()];
    assert_eq!(
        found(&[&a, &b], "fedcba987654"),
        ("node-2", "fedcba98765432100000")
    );
}

#[test]
fn a_name_on_two_engines_names_nothing_in_classic_words() {
    let (a, b) = pool();
    let err = resolve_container(&[&a, &b], "web").unwrap_err();
    assert_eq!(err.to_string(), "No such container: web");
    assert_eq!(err.status(), 404);
    assert_eq!(
        err,
        ResolveError::Ambiguous {
            reference: "web".into(),
            candidates: vec!["/node-1/web".into(), "/node-2/web".into()],
        }
    );
}

#[test]
fn unknown_empty_and_pending_are_not_found() {
    let (a, b) = pool();
    for r in ["nope", "", "queued"] {
        assert_eq!(
            resolve_container(&[&a, &b], r),
            Err(ResolveError::NotFound(r.into())),
            "{r:?}"
        );
    }
    assert_eq!(
        resolve_container(&[&a, &b], "nope")
            .unwrap_err()
            .to_string(),
        "No such container: nope"
    );
}

#[test]
fn a_container_on_an_unhealthy_engine_is_refused() {
    let (a, mut b) = pool();
    b.health = 0;
    let err = resolve_healthy(&[&a, &b], "cache").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Container cache running on unhealthy node node-2"
    );
    assert_eq!(err.status(), 500);
    assert!(resolve_healthy(&[&a, &b], "db").is_ok());
}

#[test]
fn names_are_unique_across_the_pool_pending_creates_included() {
    let (a, b) = pool();
    let nodes = [&a, &b];
    let err = check_name_available(&nodes, "db").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Conflict: The name db is already assigned. You have to delete (or rename) that container to be able to assign db to a container again."
    );
    assert!(check_name_available(&nodes, "/cache").is_err());
    assert!(check_name_available(&nodes, "queued").is_err());
    assert_eq!(check_name_available(&nodes, "fresh"), Ok(()));
    assert_eq!(check_name_available(&nodes, ""), Ok(()));
}
