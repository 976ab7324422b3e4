//! `docker ps` answered from the pool's view rather than by asking every engine: each
//! engine's last listing (kept current by its event stream, and re-read at once after a
//! change made through the manager), with the Status text made now from the inspect's
//! State ([`super::state_text`]). Classic answered `docker ps` from its cache the same way.

use bollard_stubs::models::ContainerSummary;
use time::OffsetDateTime;

use super::containers::Listing;
use super::state_text::state_text;
use crate::scheduler::model::Node;

/// Docker lists these without `-a` (`IsRunning`: running, paused or restarting).
fn is_running(state: &str) -> bool {
    matches!(state, "running" | "paused" | "restarting")
}

/// One healthy engine's containers from its view; stopped ones only with `all`.
pub fn view_listing(node: &Node, all: bool, now: OffsetDateTime) -> Listing {
    let containers: Vec<ContainerSummary> = node
        .containers
        .iter()
        .filter(|c| !c.id.is_empty() && (all || is_running(&c.state)))
        .filter_map(|c| {
            let mut s = ContainerSummary::clone(c.summary.as_deref()?);
            if let Some(state) = &c.state_detail {
                s.status = Some(state_text(state, now));
            }
            Some(s)
        })
        .collect();
    Listing {
        containers,
        host_down: false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bollard_stubs::models::ContainerState;
    use time::format_description::well_known::Rfc3339;

    use super::*;
    use crate::scheduler::model::Container;

    fn c(id: &str, state: &str, started: &str) -> Container {
        Container {
            id: id.into(),
            state: state.into(),
            summary: Some(Arc::new(ContainerSummary {
                id: Some(id.into()),
                names: Some(vec![format!("/{id}")]),
                status: Some("Up Less than a second".into()),
                ..Default::default()
            })),
            state_detail: Some(Arc::new(ContainerState {
                running: Some(state == "running"),
                started_at: Some(started.into()),
                finished_at: Some("2026-12-07T11:00:00Z".into()),
                exit_code: Some(0),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn status_is_made_now_and_stopped_ones_need_all() {
        let node = Node {
            containers: vec![
                c("a", "running", "2026-12-07T11:58:00Z"),
                c("b", "exited", "2026-12-07T10:00:00Z"),
                Container::default(), // pending: no ID yet
            ],
            ..Default::default()
        };
        let now = OffsetDateTime::parse("2026-12-07T12:00:00Z", &Rfc3339).unwrap();
        let running = view_listing(&node, false, now);
        assert_eq!(running.containers.len(), 1);
        assert_eq!(
            running.containers[0].status.as_deref(),
            Some("Up 2 minutes")
        );
        let all = view_listing(&node, true, now);
        assert_eq!(all.containers.len(), 2);
        assert_eq!(
            all.containers[1].status.as_deref(),
            Some("Exited (0) About an hour ago")
        );
    }
}
