//! What an engine answers, turned into the scheduler's view of it (issue 16 item 2, the
//! I/O-free part). The manager fetches `/info`, `/containers/json?all=1` plus inspects,
//! and `/events`; these functions decide what that means for the node, as classic
//! Swarm's `cluster/engine.go` does.

pub mod container;
pub mod event;
pub mod images;
pub mod info;
pub mod names;
