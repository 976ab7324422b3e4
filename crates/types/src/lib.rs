//! Domain objects of a swarm, shared by every crate.
//!
//! Specs reuse Docker's own models from `bollard-stubs` (re-exported as [`models`]) so the
//! API layer converts without hand-written mirrors. Each object carries a [`Meta`] whose
//! version is the Raft log index that last wrote it; the store sets it on apply.

pub mod dispatcher;
pub mod error;
pub mod ids;
pub mod object_spec;
pub mod objects;
pub mod timefmt;
pub mod urlenc;

pub use bollard_stubs::models;
pub use object_spec::ObjectSpec;
pub use objects::*;
