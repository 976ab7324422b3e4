//! `Placement.Platforms` and generic resource reservations, as swarmkit's scheduler
//! filters them (`PlatformFilter`, the generic part of `ResourceFilter`).

use swarmd_types::models::Platform;
use swarmd_types::{Node, Task};

/// The platforms the task may run on; `None` when it names none (any node will do).
pub fn platforms(task: &Task) -> Option<&[Platform]> {
    task.spec
        .placement
        .as_ref()
        .and_then(|p| p.platforms.as_deref())
        .filter(|p| !p.is_empty())
}

/// swarmkit's `platformEqual`: `x86_64` is `amd64` and `aarch64` is `arm64`; an empty
/// architecture or OS in the task's platform matches any.
fn platform_equal(want: &Platform, node: &Node) -> bool {
    fn norm(a: &str) -> &str {
        match a {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        }
    }
    let arch = want.architecture.as_deref().unwrap_or_default();
    let os = want.os.as_deref().unwrap_or_default();
    (arch.is_empty() || norm(arch) == norm(&node.description.architecture))
        && (os.is_empty() || os == node.description.os)
}

/// Whether `node` runs one of `wanted`.
pub fn supported(wanted: &[Platform], node: &Node) -> bool {
    wanted.iter().any(|p| platform_equal(p, node))
}

/// Whether the task reserves generic resources (`--generic-resource`). swarmd nodes
/// advertise none, so such a task fits no node: swarmkit's "insufficient resources".
pub fn reserves_generic(task: &Task) -> bool {
    task.spec
        .resources
        .as_ref()
        .and_then(|r| r.reservations.as_ref())
        .and_then(|r| r.generic_resources.as_ref())
        .is_some_and(|g| !g.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(arch: &str, os: &str) -> Node {
        let mut n = Node::default();
        n.description.architecture = arch.into();
        n.description.os = os.into();
        n
    }

    fn p(arch: &str, os: &str) -> Platform {
        Platform {
            architecture: Some(arch.into()),
            os: Some(os.into()),
        }
    }

    #[test]
    fn platforms_match_as_swarmkit_matches_them() {
        let x86 = node("x86_64", "linux");
        assert!(supported(&[p("amd64", "linux")], &x86));
        assert!(supported(&[p("arm64", "linux"), p("x86_64", "")], &x86));
        assert!(supported(&[p("", "linux")], &x86));
        assert!(!supported(&[p("arm64", "linux")], &x86));
        assert!(!supported(&[p("amd64", "windows")], &x86));
        assert!(supported(&[p("arm64", "linux")], &node("aarch64", "linux")));
    }
}
