//! A read-only Docker registry inside a [`crate::Machine`]'s namespace, for tests where an
//! engine must pull an image it lacks (classic Swarm pulls on the chosen engine) while no
//! real registry is reachable.
//!
//! It serves what `docker save` wrote (the host engine's `busybox:latest`) through the
//! Registry v2 API on `127.0.0.1:5000` of the namespace, so the pullable name is
//! [`REGISTRY_IMAGE`]; dockerd treats 127.0.0.0/8 registries as insecure and falls back to
//! plain HTTP. Served: `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<tag|digest>` and
//! `GET|HEAD /v2/<name>/blobs/<digest>`; an unknown repository answers 403 `DENIED`
//! as Docker Hub does (the engine: "pull access denied for X, repository does not exist or
//! may require 'docker login'"), an unknown tag 404 `MANIFEST_UNKNOWN`, writes 405
//! `UNSUPPORTED`, each with the wording of Docker's own registry (distribution).
//!
//! Manifests are schema 2 (`application/vnd.docker.distribution.manifest.v2+json`) with
//! the layers as `docker save` keeps them, uncompressed tars
//! (`application/vnd.docker.image.rootfs.diff.tar`): dockerd 20.10 accepts any
//! `application/vnd.docker.*` layer type (`distribution/registry.go`) and sniffs the
//! compression of what it downloads, so nothing is gzipped.
//!
//! It runs on a thread of the test process that entered the namespace (`setns` affects only
//! the calling thread, and sockets stay in the namespace they were made in), not as a
//! process: other crates' tests have no path to a testkit binary. Note that a pull of an
//! image whose ID the engine already has (the preloaded `busybox:latest` is the same image)
//! stops after the manifest; remove it first to make the engine fetch the blobs.

mod content;
mod routes;
mod serve;

pub(crate) use content::Content;
pub(crate) use serve::RegistryServer;

/// The address the registry listens on, inside the machine's namespace.
pub const REGISTRY_ADDR: &str = "127.0.0.1:5000";

/// The image a machine with a registry can pull ([`crate::MachineBuilder::registry`]).
pub const REGISTRY_IMAGE: &str = "127.0.0.1:5000/busybox:latest";
