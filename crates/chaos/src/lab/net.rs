//! The lab's network: one namespace per node, all on one bridge in a "switch" namespace,
//! and the nftables rules that cut links between them.
//!
//! ```text
//!  switch ns  swc-ID: br0 ── p1 ── eth0 (ns swn1-ID, 10.79.S.11/24)
//!                         ├── p2 ── eth0 (ns swn2-ID, 10.79.S.12/24)
//!                         └── ...
//! ```
//!
//! Nothing is routed anywhere else: the /24 is the only network the nodes have. The
//! harness talks to each node through its API's unix socket, which the namespaces do not
//! cut, so a partitioned node is still asked (as a client on that node would).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// How long one setup command (`ip`, `nft`, `mount`) may take.
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cmd` (testkit's runner: bounded, output captured), failing with its stderr.
pub fn run(cmd: Command) -> anyhow::Result<String> {
    run_with_stdin(cmd, None)
}

fn run_with_stdin(cmd: Command, stdin: Option<&[u8]>) -> anyhow::Result<String> {
    let out = swarmd_testkit::run_with(cmd, stdin, CMD_TIMEOUT);
    if !out.success() {
        bail!("{} failed: {}", out.command(), out.stderr.trim());
    }
    Ok(out.stdout)
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(cmd)
}

/// The namespaces and links of one lab; removed on drop.
pub struct Net {
    id: String,
    subnet: u8,
    nodes: usize,
}

impl Net {
    /// Makes the switch and `nodes` node namespaces. `id` names them (unique per run).
    pub fn create(id: &str, nodes: usize) -> anyhow::Result<Net> {
        let subnet = free_subnet()?;
        let net = Net {
            id: id.to_string(),
            subnet,
            nodes: 0,
        };
        let sw = net.switch();
        ip(&["netns", "add", &sw])?;
        let mut net = net;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 1..=nodes {
            let ns = net.ns(i);
            ip(&["netns", "add", &ns])?;
            net.nodes = i;
            let port = format!("p{i}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{}/24", net.addr(i));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn switch(&self) -> String {
        format!("swc-{}", self.id)
    }

    /// Node `i`'s namespace (1-based).
    pub fn ns(&self, i: usize) -> String {
        format!("swn{i}-{}", self.id)
    }

    /// Node `i`'s address (1-based).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 79, self.subnet, 10 + i as u8)
    }

    /// Drops node `i`'s traffic from (`inbound`) and/or to (`outbound`) the given peers.
    /// Replaces whatever cut node `i` had.
    pub fn cut(
        &self,
        i: usize,
        peers: &[usize],
        inbound: bool,
        outbound: bool,
    ) -> anyhow::Result<()> {
        self.heal(i)?;
        if peers.is_empty() || !(inbound || outbound) {
            return Ok(());
        }
        let set = peers
            .iter()
            .map(|p| self.addr(*p).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut script = String::from("table inet swarmd_chaos {\n");
        if inbound {
            script += &format!(
                "  chain input {{ type filter hook input priority -10; ip saddr {{ {set} }} drop; }}\n"
            );
        }
        if outbound {
            script += &format!(
                "  chain output {{ type filter hook output priority -10; ip daddr {{ {set} }} drop; }}\n"
            );
        }
        script += "}\n";
        nft(&self.ns(i), &script)
    }

    /// Removes node `i`'s cut, if any.
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        let ns = self.ns(i);
        // Deleting a table that is not there fails; adding it first makes the pair idempotent.
        nft(
            &ns,
            "table inet swarmd_chaos {}\ndelete table inet swarmd_chaos\n",
        )
    }
}

fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "nft", "-f", "-"]);
    run_with_stdin(cmd, Some(script.as_bytes()))
        .map(drop)
        .with_context(|| format!("nft in {ns}:\n{script}"))
}

/// A /24 in 10.79.0.0/16 no address of the host is in.
fn free_subnet() -> anyhow::Result<u8> {
    let used = ip(&["-4", "-o", "addr", "show"])?;
    let start = (std::process::id() % 250) as u8;
    (0..250u8)
        .map(|k| start.wrapping_add(k) % 250 + 1)
        .find(|s| !used.contains(&format!("10.79.{s}.")))
        .context("no free 10.79.x.0/24")
}

/// Kills every process left in namespace `ns` (a node's tasks outlive their swarmd: the
/// process executor's are reparented to init when it is killed).
pub fn kill_all_in(ns: &str) {
    for pid in ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
    {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            kill_all_in(&self.ns(i));
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
