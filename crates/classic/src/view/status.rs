//! `docker info`'s `SystemStatus` for the pool (classic's `statusHandler` and
//! `Cluster.Info`): the manager's role, strategy and filters, then a block per engine in
//! natural order of names, each line as classic wrote it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::sort::natural_cmp;
use super::units::bytes_size;
use crate::discovery::EngineState;
use crate::scheduler::model::Node;
use crate::scheduler::select::Scheduler;

/// What the manager knows of one engine of the pool, for `docker info`.
#[derive(Debug, Clone, Copy)]
pub struct EngineSnapshot<'a> {
    /// The scheduler's view (identity, capacity, labels, containers, images).
    pub node: &'a Node,
    pub state: EngineState,
    /// The last connection error, trimmed, or empty.
    pub last_error: &'a str,
    /// When the engine was last refreshed or failed; `None` if never.
    pub updated_at: Option<SystemTime>,
    /// The engine's `/version` Version (e.g. `20.10.24+dfsg1`).
    pub server_version: &'a str,
}

/// This manager's place among replicated managers (`--replication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerRole {
    Primary,
    /// A replica forwarding to the primary at this address.
    Replica {
        primary: String,
    },
}

/// Classic's `SystemStatus` pairs: role, then the cluster's (`Cluster.Info`).
pub fn system_status(
    role: &ManagerRole,
    scheduler: &Scheduler,
    engines: &[EngineSnapshot<'_>],
) -> Vec<[String; 2]> {
    let pair = |k: &str, v: String| [k.to_string(), v];
    let mut out = match role {
        ManagerRole::Primary => vec![pair("Role", "primary".into())],
        ManagerRole::Replica { primary } => vec![
            pair("Role", "replica".into()),
            pair("Primary", primary.clone()),
        ],
    };
    let filters: Vec<&str> = scheduler.filters.iter().map(|f| f.name()).collect();
    out.push(pair("Strategy", scheduler.strategy.name().into()));
    out.push(pair("Filters", filters.join(", ")));
    let mut listed: Vec<&EngineSnapshot<'_>> = engines.iter().filter(|e| listed(e)).collect();
    out.push(pair("Nodes", listed.len().to_string()));
    listed.sort_by(|a, b| natural_cmp(&a.node.name, &b.node.name));
    for e in listed {
        engine_block(e, scheduler.overcommit_percent, &mut out);
    }
    out
}

/// Engines `docker info` lists: classic's validated and pending engines; a disconnected
/// one has left the pool.
fn listed(e: &EngineSnapshot<'_>) -> bool {
    e.state != EngineState::Disconnected
}

/// Engines the totals count: classic's validated engines (healthy or not).
pub(super) fn validated(e: &EngineSnapshot<'_>) -> bool {
    matches!(e.state, EngineState::Healthy | EngineState::Unhealthy)
}

fn engine_block(e: &EngineSnapshot<'_>, pct: i64, out: &mut Vec<[String; 2]>) {
    let n = e.node;
    let mut push = |k: &str, v: String| out.push([k.to_string(), v]);
    let name = if n.name.is_empty() {
        "(unknown)"
    } else {
        &n.name
    };
    push(&format!(" {name}"), n.addr.clone());
    push("  └ ID", n.id.clone());
    push("  └ Status", e.state.to_string());
    let mut c = StateCounts::default();
    c.add(n);
    push(
        "  └ Containers",
        if e.state == EngineState::Healthy {
            format!(
                "{} ({} Running, {} Paused, {} Stopped)",
                c.total, c.running, c.paused, c.stopped
            )
        } else {
            c.total.to_string()
        },
    );
    push(
        "  └ Reserved CPUs",
        format!("{} / {}", n.used_cpus(), n.total_cpus(pct)),
    );
    push(
        "  └ Reserved Memory",
        format!(
            "{} / {}",
            bytes_size(n.used_memory()),
            bytes_size(n.total_memory(pct))
        ),
    );
    let labels: Vec<String> = engine_labels(n)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    push("  └ Labels", labels.join(", "));
    if !e.last_error.is_empty() {
        push("  └ Error", e.last_error.to_string());
    }
    push("  └ UpdatedAt", rfc3339(e.updated_at));
    push("  └ ServerVersion", e.server_version.to_string());
}

/// Classic's engine labels: the engine's own plus the constraint keys it reports
/// (storagedriver, kernelversion, operatingsystem, ostype), sorted by key.
pub fn engine_labels(n: &Node) -> BTreeMap<String, String> {
    let special = [
        "storagedriver",
        "kernelversion",
        "operatingsystem",
        "ostype",
    ];
    n.labels
        .keys()
        .map(String::as_str)
        .chain(special)
        .filter_map(|k| n.label(k).map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// Go's `time.RFC3339` in UTC, whole seconds; Go's zero time when never updated.
fn rfc3339(t: Option<SystemTime>) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let secs = t
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(i64::try_from(s).ok()?).ok())
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())
}

/// Classic's split of containers: paused, else running (restarting counts: the engine
/// reports it running), else stopped. Pending containers (no ID yet) are not listed.
#[derive(Debug, Default)]
pub(super) struct StateCounts {
    pub total: usize,
    pub running: usize,
    pub paused: usize,
    pub stopped: usize,
}

impl StateCounts {
    pub fn add(&mut self, n: &Node) {
        for c in n.containers.iter().filter(|c| !c.id.is_empty()) {
            self.total += 1;
            match c.state.as_str() {
                "paused" => self.paused += 1,
                "running" | "restarting" => self.running += 1,
                _ => self.stopped += 1,
            }
        }
    }
}
