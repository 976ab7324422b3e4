//! The routing mesh's kernel fast path: published ports DNATed by nftables.
//!
//! The user-space mesh (crates/mesh) costs a second TCP connection per client connection,
//! which doubles the CPU per byte; Docker's answer, IPVS, is missing on many kernels. A DNAT
//! rule costs one conntrack lookup per packet instead. So for each published port whose
//! running tasks the kernel can reach directly, the node puts a rule in a table of its own:
//!
//! - `output` hook: connections from this machine to `node_addr:published` go to one of
//!   the tasks (`numgen inc`: round robin per connection; conntrack keeps the choice for
//!   the connection's life, and reverses it on the replies). Rerouting after an output DNAT
//!   is the kernel's business, so tasks on other machines are fine here.
//! - `prerouting` hook: connections arriving from other machines, only when every task is
//!   on this machine. A task elsewhere would need forwarding and masquerading, which a
//!   host firewall (Docker sets its FORWARD policy to drop) may refuse; those ports stay
//!   with the user-space mesh for remote clients.
//!
//! Ports with no running task get no rule: the mesh's own listener, which stays bound as
//! the port's owner and the fallback, resets them at once. The chains run at priority -110,
//! before the usual `dstnat` (-100), so a rule here wins over the engine's port mappings.
//!
//! Each mesh owns one table, named after its process and address so several nodes on one
//! machine (and test processes) never touch each other's rules, and a table whose process
//! is gone can be recognised and removed ([`owner_pid`]).

use std::net::{Ipv4Addr, SocketAddrV4};

/// The prefix of every mesh table's name.
pub const TABLE_PREFIX: &str = "swarmd_ingress_";

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// One published port on this node and where the kernel sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub protocol: L4,
    /// The node's address and the published port: what clients connect to.
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Running tasks (never empty: a port without tasks gets no rule).
    pub backends: Vec<SocketAddrV4>,
    /// Also for clients on other machines (every backend is on this machine).
    pub from_other_machines: bool,
}

/// The table of the mesh of process `pid` on `addr`: `swarmd_ingress_<pid>_<a>_<b>_<c>_<d>`.
pub fn table_name(pid: u32, addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("{TABLE_PREFIX}{pid}_{a}_{b}_{c}_{d}")
}

/// The process that owns a mesh table, from its name; `None` for other tables.
pub fn owner_pid(table: &str) -> Option<u32> {
    table
        .strip_prefix(TABLE_PREFIX)?
        .split('_')
        .next()?
        .parse()
        .ok()
}

fn dnat(r: &IngressRule) -> String {
    let target = match r.backends.as_slice() {
        [one] => format!("dnat ip to {one}"),
        many => {
            let map: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, b)| format!("{i} : {} . {}", b.ip(), b.port()))
                .collect();
            format!(
                "dnat ip to numgen inc mod {} map {{ {} }}",
                many.len(),
                map.join(", ")
            )
        }
    };
    format!(
        "    ip daddr {} {} dport {} {target}\n",
        r.addr,
        r.protocol.as_str(),
        r.port
    )
}

/// The nft script that makes `table` hold exactly `rules` (one transaction: the table is
/// declared, deleted and defined anew). Rules without backends are left out.
pub fn ruleset(table: &str, rules: &[IngressRule]) -> String {
    let mut output = String::new();
    let mut prerouting = String::new();
    for r in rules.iter().filter(|r| !r.backends.is_empty()) {
        let line = dnat(r);
        if r.from_other_machines {
            prerouting.push_str(&line);
        }
        output.push_str(&line);
    }
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n  chain output {{\n    type nat hook output priority -110; policy accept;\n{output}  }}\n  chain prerouting {{\n    type nat hook prerouting priority -110; policy accept;\n{prerouting}  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn rule(protocol: L4, port: u16, backends: &[&str], remote: bool) -> IngressRule {
        IngressRule {
            protocol,
            addr: "127.0.0.2".parse().unwrap(),
            port,
            backends: backends.iter().map(|b| sa(b)).collect(),
            from_other_machines: remote,
        }
    }

    #[test]
    fn round_robin_single_backend_and_remote_clients() {
        let s = ruleset(
            "swarmd_ingress_7_127_0_0_2",
            &[
                rule(L4::Tcp, 8080, &["127.0.0.2:32768", "127.0.0.3:32769"], true),
                rule(L4::Udp, 5353, &["10.1.0.5:40000"], false),
                rule(L4::Tcp, 9090, &[], true),
            ],
        );
        assert!(s.starts_with(
            "table ip swarmd_ingress_7_127_0_0_2\ndelete table ip swarmd_ingress_7_127_0_0_2\n"
        ));
        let rr = "ip daddr 127.0.0.2 tcp dport 8080 dnat ip to numgen inc mod 2 map { 0 : 127.0.0.2 . 32768, 1 : 127.0.0.3 . 32769 }";
        let udp = "ip daddr 127.0.0.2 udp dport 5353 dnat ip to 10.1.0.5:40000";
        let (output, prerouting) = s.split_once("chain prerouting").unwrap();
        // Local clients: every port with tasks.
        assert!(output.contains(rr) && output.contains(udp));
        // Remote clients: only ports whose tasks are all on this machine.
        assert!(prerouting.contains(rr) && !prerouting.contains(udp));
        // No task: no rule, the mesh's listener resets.
        assert!(!s.contains("9090"));
        assert_eq!(s.matches('{').count(), s.matches('}').count());
    }

    #[test]
    fn table_names_say_their_owner() {
        let t = table_name(4242, "127.0.0.3".parse().unwrap());
        assert_eq!(t, "swarmd_ingress_4242_127_0_0_3");
        assert_eq!(owner_pid(&t), Some(4242));
        assert_eq!(owner_pid("nat"), None);
        assert_eq!(owner_pid("swarmd_vips"), None);
    }
}
