//! Placement constraints (`node.labels.zone==east`), parsed once and matched per node.
//! Syntax and messages follow swarmkit's `manager/constraint`.

use swarmd_types::{Node, Role};

/// One parsed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Lower-cased key, e.g. `node.labels.zone`.
    pub key: String,
    pub equal: bool,
    pub value: String,
}

/// Why a constraint string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("constraint expected one operator from ==, !=")]
    MissingOperator,
    #[error("invalid constraint: key syntax is invalid: {0}")]
    InvalidKey(String),
    #[error("invalid constraint: value syntax is invalid: {0}")]
    InvalidValue(String),
}

const KNOWN_KEYS: &[&str] = &[
    "node.id",
    "node.hostname",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
];

/// Parses every constraint of a service; the first bad one is the error.
pub fn parse_all(exprs: &[String]) -> Result<Vec<Constraint>, ConstraintError> {
    exprs.iter().map(|e| parse(e)).collect()
}

/// Parses `key==value` or `key!=value`.
pub fn parse(expr: &str) -> Result<Constraint, ConstraintError> {
    let (key, value, equal) = if let Some((k, v)) = expr.split_once("==") {
        (k, v, true)
    } else if let Some((k, v)) = expr.split_once("!=") {
        (k, v, false)
    } else {
        return Err(ConstraintError::MissingOperator);
    };
    let key = key.trim();
    let value = value.trim();
    if value.contains("==") || value.contains("!=") {
        return Err(ConstraintError::MissingOperator);
    }
    let key_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && (KNOWN_KEYS.contains(&key.to_ascii_lowercase().as_str())
            || label_key(key, "node.labels.").is_some()
            || label_key(key, "engine.labels.").is_some());
    if !key_ok {
        return Err(ConstraintError::InvalidKey(key.to_string()));
    }
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:*@ ".contains(c))
    {
        return Err(ConstraintError::InvalidValue(value.to_string()));
    }
    Ok(Constraint {
        key: key.to_string(),
        equal,
        value: value.to_string(),
    })
}

fn label_key<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    // `get` rather than slicing: a hand-built key may split a multi-byte character.
    match (key.get(..prefix.len()), key.get(prefix.len()..)) {
        (Some(p), Some(rest)) if !rest.is_empty() && p.eq_ignore_ascii_case(prefix) => Some(rest),
        _ => None,
    }
}

/// The value of a `node.labels.X` or `engine.labels.X` label on a node (placement
/// preferences spread over these).
pub fn label_value(node: &Node, key: &str) -> Option<String> {
    label_ref(node, key).map(str::to_string)
}

/// [`label_value`] without the copy.
fn label_ref<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    if let Some(label) = label_key(key, "node.labels.") {
        node.spec
            .labels
            .as_ref()
            .and_then(|l| l.get(label))
            .map(String::as_str)
    } else if let Some(label) = label_key(key, "engine.labels.") {
        node.description
            .engine_labels
            .get(label)
            .map(String::as_str)
    } else {
        None
    }
}

impl Constraint {
    /// Whether a node satisfies the constraint. A missing label never equals anything.
    /// Allocation-free: the scheduler asks this for every node of every distinct placement.
    pub fn matches(&self, node: &Node) -> bool {
        let key = self.key.as_str();
        let is = |k: &str| key.eq_ignore_ascii_case(k);
        // IDs, hostnames and roles compare case-insensitively, as swarmkit does; labels
        // exactly.
        let eq = if is("node.id") {
            node.id.eq_ignore_ascii_case(&self.value)
        } else if is("node.hostname") {
            node.spec
                .name
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(&node.description.hostname)
                .eq_ignore_ascii_case(&self.value)
        } else if is("node.role") {
            match node.role {
                Role::Manager => "manager",
                Role::Worker => "worker",
            }
            .eq_ignore_ascii_case(&self.value)
        } else if is("node.platform.os") {
            node.description.os.eq_ignore_ascii_case(&self.value)
        } else if is("node.platform.arch") {
            node.description
                .architecture
                .eq_ignore_ascii_case(&self.value)
        } else {
            label_ref(node, key) == Some(self.value.as_str())
        };
        if self.equal { eq } else { !eq }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn node() -> Node {
        let mut n = Node {
            id: "abc".into(),
            ..Default::default()
        };
        n.description.hostname = "host1".into();
        n.spec.labels = Some(HashMap::from([("zone".to_string(), "east".to_string())]));
        n.description
            .engine_labels
            .insert("disk".into(), "ssd".into());
        n
    }

    #[test]
    fn parses_and_matches() {
        let n = node();
        for (expr, want) in [
            ("node.labels.zone==east", true),
            ("node.labels.zone!=east", false),
            ("node.labels.zone == west", false),
            ("node.labels.missing!=x", true),
            ("node.labels.missing==x", false),
            ("node.hostname==HOST1", true),
            ("node.role==worker", true),
            ("node.role!=manager", true),
            ("node.id==abc", true),
            ("engine.labels.disk==ssd", true),
        ] {
            assert_eq!(parse(expr).unwrap().matches(&n), want, "{expr}");
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        assert_eq!(
            parse("node.role=manager"),
            Err(ConstraintError::MissingOperator)
        );
        assert!(matches!(
            parse("foo.bar==x"),
            Err(ConstraintError::InvalidKey(_))
        ));
        assert!(matches!(
            parse("node.role=="),
            Err(ConstraintError::InvalidValue(_))
        ));
        assert!(parse("node.labels.a==b==c").is_err());
    }

    #[test]
    fn hand_built_non_ascii_keys_do_not_panic() {
        let c = Constraint {
            key: "nodé.labels.x".into(),
            equal: true,
            value: "y".into(),
        };
        assert!(!c.matches(&node()));
    }
}
