//! Engine discovery for `swarmd manage`, I/O-free (issue 16 item 1).
//!
//! Classic Swarm took its pool of engines from a discovery URL: a static `nodes://` list (or a
//! bare `host:port,host:port` list, which classic treated as `nodes://`), or a `file://` path it
//! re-read every heartbeat. This module turns that text into engine addresses and diffs two
//! readings; reading the file and dialling engines belong to the caller. A swarm's managers
//! give the pool its members directly instead ([`PoolMember`], issue 17).
//!
//! Deliberate differences from classic: unix sockets (`unix:///var/run/docker.sock`) are
//! accepted as engine entries so a manager can front its local engine, duplicates are dropped,
//! ports must be numeric, and a range may expand to at most [`MAX_RANGE_ENTRIES`] entries.

mod addr;
mod diff;
mod file;
mod health;
mod members;
mod range;
mod source;

pub use addr::{AddrError, EngineAddr};
pub use diff::{EngineDiff, diff};
pub use file::parse_file_content;
pub use health::{EngineHealth, EngineState, RefreshIntervals, Transition};
pub use members::{MemberDiff, PoolMember, diff_members};
pub use range::{MAX_RANGE_ENTRIES, expand_range};
pub use source::{Discovery, DiscoveryError, parse_discovery, parse_node_list};
