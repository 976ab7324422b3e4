//! How a [`Machine`] is made: the engine's hostname, labels and listeners, its bridge, and
//! whether it takes the host-wide turn. [`Machine::start`] keeps the overlay tests' machine
//! (no TCP, `--bridge none`, the host-wide lock); classic Swarm's engine pools want the
//! other settings.

use anyhow::bail;

use super::Machine;

/// The port of the engine's TCP listener (Docker's plain-HTTP port, classic's default).
pub const ENGINE_TCP_PORT: u16 = 2375;

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

    /// Makes the machine: see [`Machine::start`].
    pub fn start(self) -> anyhow::Result<Machine> {
        if let Some(h) = &self.hostname {
            check_hostname(h)?;
        }
        Machine::start_with(self)
    }

    /// `dockerd` arguments this builder adds (the machine's own paths aside).
    pub(super) fn dockerd_args(&self, addr: std::net::Ipv4Addr) -> Vec<String> {
        let mut args = Vec::new();
        if self.tcp {
            args.push(format!("-H=tcp://{addr}:{ENGINE_TCP_PORT}"));
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
            b.dockerd_args([10, 77, 1, 2].into()),
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
            b.dockerd_args([10, 77, 3, 6].into()),
            [
                "-H=tcp://10.77.3.6:2375",
                "--tls=false",
                "--label=zone=a",
                "--label=disk=ssd with space",
            ]
        );
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
