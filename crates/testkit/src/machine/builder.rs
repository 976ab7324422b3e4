//! How a [`Machine`] is made: the engine's hostname, labels and listeners, its bridge, and
//! whether it takes the host-wide turn. [`Machine::start`] keeps the overlay tests' machine
//! (no TCP, `--bridge none`, the host-wide lock); classic Swarm's engine pools want the
//! other settings.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::Machine;
use crate::tls::{CertFiles, TestCa};

/// The port of the engine's TCP listener (Docker's plain-HTTP port, classic's default).
pub const ENGINE_TCP_PORT: u16 = 2375;

/// The port of the engine's TLS listener (Docker's, with [`MachineBuilder::tls`]).
pub const ENGINE_TLS_PORT: u16 = 2376;

/// Where in the machine's directory the engine's TLS files go.
const TLS_DIR: &str = "tls";

/// Settings of a [`Machine`]; make one with [`Machine::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .start()"]
pub struct MachineBuilder {
    pub(super) prefix: String,
    pub(super) hostname: Option<String>,
    pub(super) labels: Vec<(String, String)>,
    pub(super) tcp: bool,
    pub(super) host_lock: bool,
    pub(super) default_bridge: bool,
    pub(super) registry: bool,
    pub(super) tls: Option<TestCa>,
}

impl MachineBuilder {
    pub(super) fn new(prefix: &str) -> MachineBuilder {
        MachineBuilder {
            prefix: prefix.to_string(),
            hostname: None,
            labels: Vec::new(),
            tcp: false,
            host_lock: true,
            default_bridge: false,
            registry: false,
            tls: None,
        }
    }

    /// The namespace's hostname, which is the engine's `Name` in `/info` (classic Swarm's
    /// node name). Default: the network namespace's (random) name.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// A daemon label (`dockerd --label key=value`), shown in `/info` `Labels`: what classic's
    /// `constraint:key==value` filters match. Repeatable.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Whether the engine also listens on `tcp://<machine addr>:2375` (plain HTTP,
    /// `--tls=false`), the way classic Swarm reaches its engines. Default: unix socket only.
    pub fn tcp(mut self, on: bool) -> Self {
        self.tcp = on;
        self
    }

    /// Whether the machine holds the host-wide lock while it lives (default: yes). Only the
    /// swarm-mode VXLAN tests need it (see the module doc); several engine pools may live at
    /// once without it.
    pub fn host_lock(mut self, on: bool) -> Self {
        self.host_lock = on;
        self
    }

    /// Whether the engine makes its default bridge (`docker0`, inside the namespace, so it
    /// cannot clash with the host's) instead of running with `--bridge none` (the default:
    /// swarm-mode tasks only join the overlay bridges). Plain `docker run` and `-p` need it.
    pub fn default_bridge(mut self, on: bool) -> Self {
        self.default_bridge = on;
        self
    }

    /// Whether a read-only registry inside the namespace serves the test image as
    /// [`crate::REGISTRY_IMAGE`] (see `registry.rs`), so the engine can pull an image it
    /// lacks. Default: no.
    pub fn registry(mut self, on: bool) -> Self {
        self.registry = on;
        self
    }

    /// Whether the TCP listener is TLS on port 2376 (`dockerd --tlsverify`): the engine
    /// presents a certificate `ca` signs for its address and requires clients to present
    /// one `ca` signs. Implies [`MachineBuilder::tcp`]. Default: plain HTTP.
    pub fn tls(mut self, ca: TestCa) -> Self {
        self.tcp = true;
        self.tls = Some(ca);
        self
    }

    /// The TCP listener's port: [`ENGINE_TLS_PORT`] with TLS, else [`ENGINE_TCP_PORT`].
    pub(super) fn tcp_port(&self) -> u16 {
        if self.tls.is_some() {
            ENGINE_TLS_PORT
        } else {
            ENGINE_TCP_PORT
        }
    }

    /// The engine's TLS files under the machine's directory `dir`.
    fn tls_files(dir: &Path) -> CertFiles {
        let d: PathBuf = dir.join(TLS_DIR);
        CertFiles {
            ca: d.join("ca.pem"),
            cert: d.join("engine-cert.pem"),
            key: d.join("engine-key.pem"),
        }
    }

    /// With [`MachineBuilder::tls`], issues the engine's certificate for `addr` into `dir`.
    pub(super) fn write_tls_files(
        &self,
        addr: std::net::Ipv4Addr,
        dir: &Path,
    ) -> anyhow::Result<()> {
        if let Some(ca) = &self.tls {
            let d = dir.join(TLS_DIR);
            std::fs::create_dir_all(&d)?;
            let files = ca.issue(&d, "engine", &[&addr.to_string(), "127.0.0.1"])?;
            debug_assert_eq!(files, Self::tls_files(dir));
        }
        Ok(())
    }

    /// Makes the machine: see [`Machine::start`].
    pub fn start(self) -> anyhow::Result<Machine> {
        if let Some(h) = &self.hostname {
            check_hostname(h)?;
        }
        Machine::start_with(self)
    }

    /// `dockerd` arguments this builder adds (the machine's own paths aside).
    /// `dir` is the machine's directory (for the TLS files).
    pub(super) fn dockerd_args(&self, addr: std::net::Ipv4Addr, dir: &Path) -> Vec<String> {
        let mut args = Vec::new();
        if self.tcp {
            args.push(format!("-H=tcp://{addr}:{}", self.tcp_port()));
        }
        if self.tcp && self.tls.is_some() {
            let f = Self::tls_files(dir);
            args.push("--tlsverify".to_string());
            args.push(format!("--tlscacert={}", f.ca.display()));
            args.push(format!("--tlscert={}", f.cert.display()));
            args.push(format!("--tlskey={}", f.key.display()));
        } else if self.tcp {
            // Without it, dockerd 20.10 waits 15 s before serving an unauthenticated TCP
            // socket (cmd/dockerd/daemon.go).
            args.push("--tls=false".to_string());
        }
        if !self.default_bridge {
            args.push("--bridge=none".to_string());
        }
        args.extend(self.labels.iter().map(|(k, v)| format!("--label={k}={v}")));
        args
    }
}

/// A hostname `hostname(1)` takes and Docker shows unchanged: a DNS name of letters, digits,
/// dashes and dots, at most 64 bytes.
fn check_hostname(h: &str) -> anyhow::Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-');
    if !ok {
        bail!("invalid machine hostname {h:?}: letters, digits, '-' and '.', at most 64");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_overlay_machine() {
        let b = MachineBuilder::new("swm");
        assert!(b.host_lock);
        assert_eq!(
            b.dockerd_args([10, 77, 1, 2].into(), Path::new("/m")),
            ["--bridge=none"],
            "no TCP listener, no labels, no bridge"
        );
    }

    #[test]
    fn classic_settings_become_dockerd_flags() {
        let b = MachineBuilder::new("swc")
            .tcp(true)
            .default_bridge(true)
            .label("zone", "a")
            .label("disk", "ssd with space");
        assert_eq!(
            b.dockerd_args([10, 77, 3, 6].into(), Path::new("/m")),
            [
                "-H=tcp://10.77.3.6:2375",
                "--tls=false",
                "--label=zone=a",
                "--label=disk=ssd with space",
            ]
        );
    }

    #[test]
    fn a_tls_engine_listens_on_2376_with_tlsverify() {
        let b = MachineBuilder::new("swc").tls(TestCa::new().unwrap());
        assert_eq!(
            b.dockerd_args([10, 77, 3, 6].into(), Path::new("/m")),
            [
                "-H=tcp://10.77.3.6:2376",
                "--tlsverify",
                "--tlscacert=/m/tls/ca.pem",
                "--tlscert=/m/tls/engine-cert.pem",
                "--tlskey=/m/tls/engine-key.pem",
                "--bridge=none",
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        b.write_tls_files([10, 77, 3, 6].into(), dir.path())
            .unwrap();
        let f = MachineBuilder::tls_files(dir.path());
        for p in [f.ca, f.cert, f.key] {
            assert!(p.is_file(), "{}", p.display());
        }
    }

    #[test]
    fn bad_hostnames_are_refused_before_anything_is_made() {
        for h in ["", "a b", "-x", "x;reboot", &"a".repeat(65)] {
            assert!(check_hostname(h).is_err(), "{h:?}");
        }
        for h in ["node-0", "n1.example", "A9"] {
            check_hostname(h).unwrap();
        }
    }
}
