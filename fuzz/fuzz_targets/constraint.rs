//! Placement constraints (`node.labels.zone==east`): parsing one or a list, and matching the
//! parsed ones against a node.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use swarmd_manager::scheduler::constraint;
use swarmd_types::{Node, Role};

static NODE: LazyLock<Node> = LazyLock::new(|| {
    let mut n = Node {
        id: "x1y2z3node".into(),
        role: Role::Manager,
        ..Default::default()
    };
    n.description.hostname = "host-1".into();
    n.description.os = "linux".into();
    n.description.architecture = "x86_64".into();
    n.description
        .engine_labels
        .insert("disk".into(), "ssd".into());
    n.spec.labels = Some(HashMap::from([
        ("zone".to_string(), "east".to_string()),
        ("Rack".to_string(), "r-12".to_string()),
        ("émoji".to_string(), "✓".to_string()),
    ]));
    n
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The whole input as one constraint.
    if let Ok(c) = constraint::parse(text) {
        let _ = c.matches(&NODE);
    }
    // Lines as a service's constraint list.
    let exprs: Vec<String> = text.lines().map(str::to_string).collect();
    if let Ok(parsed) = constraint::parse_all(&exprs) {
        assert_eq!(parsed.len(), exprs.len());
        for c in &parsed {
            let m = c.matches(&NODE);
            // `!=` is exactly the negation of `==` for the same key and value.
            let flipped = constraint::Constraint {
                equal: !c.equal,
                ..c.clone()
            };
            assert_eq!(flipped.matches(&NODE), !m, "{c:?}");
        }
    }
});
