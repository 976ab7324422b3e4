//! The Docker Engine API server of a swarmd node.
//!
//! The stock docker CLI and docker-py drive swarmd unchanged, so this crate speaks the
//! Engine API as the Docker daemon does (docs/DESIGN.md §7): version prefixes, `/_ping` headers,
//! `{"message"}` errors with the daemon's codes and texts, Go-style case-insensitive JSON,
//! both forms of `filters`, name/prefix resolution, stdcopy log framing. Swarm objects go
//! through the [`Backend`] trait; container/image/exec calls go to the local engine.
//!
//! Layout: [`server`] binds and serves; [`router`] holds the route table and the version
//! handling in front of it; `handlers` are thin; [`decode`], [`filters`], [`query`],
//! [`resolve`], [`convert`], [`spec`] and [`logs`] are pure and unit-tested; [`proxy`]
//! forwards to the engine; [`engine_path`] encodes the engine URLs swarmd builds itself.

pub mod backend;
pub mod convert;
pub mod decode;
pub mod dial;
pub mod engine_path;
pub mod error;
pub mod filters;
mod handlers;
pub mod logs;
pub mod proxy;
pub mod query;
pub mod resolve;
pub mod router;
pub mod server;
pub mod spec;
pub mod swarm_request;
pub mod timestamp;
pub mod tls;
pub mod version;
pub mod wire;

pub use backend::*;
pub use decode::{DecodeError, decode_json, decode_service_spec};
pub use error::ApiError;
pub use filters::{FilterError, Filters, parse_filters};
pub use handlers::system::ping_response;
pub use router::ApiApp;
pub use server::{ListenAddr, Listener, bind_all, serve, serve_app, serve_app_tls, serve_stream};
pub use swarm_request::{InitRequest, JoinRequest};
