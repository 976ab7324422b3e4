//! Classic Swarm's scheduler core (issue 16 item 3), free of I/O: the manager hands it a
//! snapshot of the engines ([`model::Node`]) and a container request ([`model::Request`]),
//! and gets back the nodes ranked best first, or classic's error text.
//!
//! Semantics follow docker/swarm `scheduler/` (filters, strategies, expressions).

pub mod cpu;
pub mod expr;
pub mod extract;
pub mod filter;
pub mod model;
pub mod pending;
pub mod select;
pub mod strategy;

#[cfg(test)]
mod testutil;
