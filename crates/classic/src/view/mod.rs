//! What the virtual Docker host answers (issue 16 item 4), as pure functions: the router
//! (crate::api) does the I/O, forwarding a call to the engines of the pool, and hands the
//! engines' answers here to be merged the way classic Swarm's `api/handlers.go` did.
//! Nothing here dials, reads the clock or the environment; the caller passes all of it in.
//!
//! How the router is meant to call them:
//! - `GET /info`: build one [`EngineSnapshot`] per engine known to the pool (pending ones
//!   too) from [`crate::pool::Engine`], and call [`info::info`] with the manager's own
//!   [`ManagerHost`] and [`ManagerRole`].
//! - `GET /version`: [`version::version`] with the same [`ManagerHost`].
//! - `GET /containers/json`: parse the query into [`containers::ListQuery`] (taking the
//!   [`containers::MANAGER_FILTERS`] out of `filters`), call each healthy engine with
//!   [`containers::ListQuery::engine_query`] (an unhealthy engine: not called, its
//!   [`containers::cached_listing`] instead), then [`containers::merge`] the answers.
//! - `GET /containers/{id}/json`: [`resolve::resolve_healthy`] (classic refused a
//!   container on an unhealthy engine), forward the inspect to that engine with the full
//!   ID, and pass the answer to [`inspect::container_inspect`]. Every other container
//!   endpoint resolves the same way before it is forwarded.
//! - `GET /images/json`, `GET /networks`, `GET /volumes`: forward to every healthy
//!   engine with the `node` filter taken out; merge with [`images::merge`],
//!   [`networks::merge`], [`volumes::merge`].
//! - `GET /events`: for each event an engine streams, send [`events::pool_event`]; for
//!   the manager's own engine transitions, [`events::engine_event`]. (Classic ignored
//!   `filters` and `since` here; forwarding them to the engines' streams does better.)
//! - `POST /containers/create` and rename: [`resolve::check_name_available`] first, over
//!   the nodes with the creates in flight added ([`Node::add_pending`]).
//!
//! Errors carry classic's texts; [`resolve::ResolveError::status`] gives the HTTP status.

pub mod cached;
pub mod containers;
pub mod events;
pub mod images;
pub mod info;
pub mod inspect;
pub mod networks;
pub mod resolve;
mod sort;
pub mod state_text;
pub mod status;
mod units;
pub mod version;
pub mod volumes;

pub use status::{EngineSnapshot, ManagerRole};

use crate::scheduler::model::Node;

/// Which engine an answer came from: what classic's `Node` object and its event `node`
/// field show of an engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineRef {
    /// Classic's engine ID, `<engine ID>|<addr>` ([`crate::engine::info::node_id`]).
    pub id: String,
    /// The engine's name (its `/info` Name, the host name).
    pub name: String,
    /// The address the manager dials, `host:port`.
    pub addr: String,
    /// The IP of `addr`'s host, resolved by the caller; shown in place of `0.0.0.0` in
    /// published ports, so a client can reach them.
    pub ip: String,
}

impl EngineRef {
    /// The reference to `node`, whose address resolved to `ip`.
    pub fn new(node: &Node, ip: impl Into<String>) -> Self {
        EngineRef {
            id: node.id.clone(),
            name: node.name.clone(),
            addr: node.addr.clone(),
            ip: ip.into(),
        }
    }
}

/// The manager itself, for `/info` and `/version`: values the caller reads from the
/// host and the build, so these functions stay pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagerHost {
    /// The manager's host name (`<unknown>` if it cannot be read, as classic).
    pub hostname: String,
    /// The manager host's kernel (`<unknown>` if it cannot be read, as classic).
    pub kernel_version: String,
    /// `linux`, `amd64`... (classic showed Go's GOOS and GOARCH).
    pub os: String,
    pub arch: String,
    /// swarmd's version; shown as `swarm/<version>` like classic's.
    pub version: String,
    pub git_commit: String,
    /// The API versions swarmd speaks (swarmd_engine_api::version's constants).
    pub api_version: String,
    pub min_api_version: String,
    pub debug: bool,
    /// The manager's `http_proxy`, `https_proxy`, `no_proxy`.
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
}

/// Each engine's answer to one list call, with the engine it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineAnswer<T> {
    pub engine: EngineRef,
    pub answer: T,
}

#[cfg(test)]
mod testutil;
