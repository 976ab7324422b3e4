//! Service discovery by name (docs/DESIGN.md §6): a DNS server on every node that answers, for
//! tasks on an overlay network, the names Docker's embedded resolver answers for swarm
//! services (`<service>`, `tasks.<service>`, network aliases) and forwards everything else
//! to the host's resolvers.
//!
//! The table is computed elsewhere (from the swarm's services, networks and tasks) and handed
//! in through a `watch` channel, so the server always answers from the latest one.

mod server;
mod table;

pub use server::{DnsError, DnsServer, upstreams_from_resolv_conf};
pub use table::{Answer, DnsTable, NetworkScope, ServiceRecord, Subnet};
