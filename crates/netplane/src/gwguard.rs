//! Keeps ARP for an overlay's gateway address on its own machine.
//!
//! Every machine's bridge of an overlay network holds the same gateway address (`.1`: the
//! containers' default gateway and DNS server, which must be the local node's). The VXLAN
//! device joins those bridges into one layer-2 segment, so without a guard:
//!
//! - a container's broadcast "who has .1?" reaches every machine, and each machine's bridge
//!   answers with its own MAC: the container keeps whichever reply came last;
//! - a machine's kernel asking for a remote container's address sends "who has X? tell .1"
//!   with its own bridge MAC, and Linux updates an existing neighbour entry from the sender
//!   of any request it receives: the remote container's entry for .1 now points to the other
//!   machine.
//!
//! Either way a container sends its DNS queries and routed traffic to another machine's
//! gateway; it works until that machine goes away (or its node serves another view of the
//! network), then the container's resolver and routes break until the entry expires.
//!
//! The guard is an nftables table of the `bridge` family per network: ARP frames whose
//! sender or target protocol address is the gateway are dropped where they would enter or
//! leave through the network's VXLAN port (the `forward` hook for container traffic, `input`
//! and `output` for the bridge's own address). Everything else, ARP between containers on
//! different machines included, crosses as before. Overlay networks are IPv4 only, so there
//! is no IPv6 neighbour discovery for the gateway to guard. Rules match the VXLAN device by
//! name, so the table can be in place before the device exists.
//!
//! One table per network (named after the network, like its devices): nodes sharing a
//! machine each converge their networks' tables without replacing each other's.

use std::net::Ipv4Addr;

use crate::NetplaneError;

/// The table guarding network `network_id`'s gateway: `swarmd_gw_<first 11 characters>`, as
/// the network's VXLAN device (nft names allow letters, digits and `_`).
pub fn table_name(network_id: &str) -> String {
    let id: String = network_id
        .chars()
        .take(11)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("swarmd_gw_{id}")
}

/// The nft script that makes `table` exactly the guard of `gateway` on VXLAN device
/// `vxlan` (one transaction: create if missing, delete, define anew).
pub fn ruleset(table: &str, vxlan: &str, gateway: Ipv4Addr) -> String {
    let drops = |dir: &str| {
        format!(
            "    {dir} \"{vxlan}\" arp saddr ip {gateway} drop\n    {dir} \"{vxlan}\" arp daddr ip {gateway} drop\n"
        )
    };
    let (inbound, outbound) = (drops("iifname"), drops("oifname"));
    format!(
        "table bridge {table}\ndelete table bridge {table}\ntable bridge {table} {{\n  \
         chain forward {{\n    type filter hook forward priority 0; policy accept;\n{inbound}{outbound}  }}\n  \
         chain input {{\n    type filter hook input priority 0; policy accept;\n{inbound}  }}\n  \
         chain output {{\n    type filter hook output priority 0; policy accept;\n{outbound}  }}\n}}\n"
    )
}

/// Applies an nft script (a [`ruleset`]) in this process's network namespace.
pub async fn apply(script: &str) -> Result<(), NetplaneError> {
    crate::nft::run(None, script).await
}

/// Deletes `table` of the bridge family; a missing table is not an error.
pub async fn remove(table: &str) -> Result<(), NetplaneError> {
    // Declaring it first makes the delete succeed whether or not it existed.
    crate::nft::run(
        None,
        &format!("table bridge {table}\ndelete table bridge {table}\n"),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script is valid for the real nft (in a namespace of its own: root, iproute2 and
    /// nftables, so ignored unless asked; scripts/test runs it), re-applying it replaces it,
    /// and removing a table twice is fine.
    #[test]
    #[ignore = "needs root, iproute2 and nftables: scripts/test runs it"]
    fn nft_takes_the_script_and_removal_is_idempotent() {
        swarmd_testkit::require(
            "root, iproute2 and nftables",
            swarmd_testkit::is_root()
                && swarmd_testkit::command_works("ip", &["netns", "list"])
                && swarmd_testkit::command_works("nft", &["--version"]),
        );
        let ns = format!("swgw{:x}", std::process::id());
        let listed = crate::netns_test::run_in_netns(&ns, || async {
            let table = table_name("net1");
            let script = ruleset(&table, "swv-net1", Ipv4Addr::new(10, 0, 1, 1));
            apply(&script).await.unwrap();
            apply(&script).await.unwrap();
            let out = std::process::Command::new("nft")
                .args(["list", "table", "bridge", &table])
                .output()
                .unwrap();
            remove(&table).await.unwrap();
            remove(&table).await.unwrap();
            let gone = std::process::Command::new("nft")
                .args(["list", "table", "bridge", &table])
                .status()
                .unwrap();
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                gone.success(),
            )
        });
        let (listed, still_there) = listed.expect("namespace thread");
        assert_eq!(
            listed.matches("arp saddr ip 10.0.1.1 drop").count(),
            4,
            "{listed}"
        );
        assert!(!still_there, "removed");
    }

    #[test]
    fn table_names_follow_the_network_and_are_nft_identifiers() {
        assert_eq!(table_name("k3x9q0v2m7a1b2c3"), "swarmd_gw_k3x9q0v2m7a");
        assert_eq!(table_name("ab-c"), "swarmd_gw_ab_c");
    }

    #[test]
    fn gateway_arp_is_dropped_both_ways_on_the_vxlan_port_only() {
        let s = ruleset("swarmd_gw_n1", "swv-n1", Ipv4Addr::new(10, 0, 1, 1));
        assert!(s.starts_with(
            "table bridge swarmd_gw_n1\ndelete table bridge swarmd_gw_n1\ntable bridge swarmd_gw_n1 {"
        ));
        for hook in ["forward", "input", "output"] {
            assert!(s.contains(&format!(
                "type filter hook {hook} priority 0; policy accept;"
            )));
        }
        // Container traffic (forward) in both directions, the bridge's own ARP in its own
        // direction; sender and target address alike.
        for dir in ["iifname", "oifname"] {
            for field in ["saddr", "daddr"] {
                let rule = format!("{dir} \"swv-n1\" arp {field} ip 10.0.1.1 drop");
                let n = s.matches(&rule).count();
                assert_eq!(n, 2, "{rule} in forward and in input/output: {s}");
            }
        }
        let input = s.split("chain input").nth(1).unwrap();
        let input = input.split("chain output").next().unwrap();
        assert!(
            !input.contains("oifname"),
            "input frames have no output port"
        );
        assert!(!s.split("chain output").nth(1).unwrap().contains("iifname"));
        assert_eq!(s.matches('{').count(), s.matches('}').count());
    }
}
