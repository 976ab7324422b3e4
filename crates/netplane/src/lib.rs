//! The overlay data plane of one node (docs/DESIGN.md §6), over netlink.
//!
//! Each overlay network has, on each machine, a bridge holding the network's gateway address
//! (the engine's bridge network, `swarmd_agent::exec::overlay`). This crate joins those
//! bridges into one layer-2 segment across machines and puts the service VIPs where the
//! node's proxy can answer them:
//!
//! - a VXLAN device per network (`swv-<id>`, the network's VNI, the swarm's data path port
//!   (UDP 4789 by default), from the node's data-plane address), enslaved to the bridge.
//!   Broadcasts (ARP) are replicated to every peer machine through all-zero FDB entries
//!   (head-end replication, as flannel and `bridge fdb append` do); unicast destinations
//!   are learned. Only machines that run a task of the network are peers.
//! - a `bridge`-family nftables table per network ([`gwguard`]) that keeps ARP for the
//!   gateway address (the same on every machine's bridge) off the VXLAN port.
//! - VIPs as /32 addresses on the bridge: a container's connection to a VIP reaches the
//!   host, where the mesh proxy listens.
//!
//! Everything is idempotent and converges from what the kernel has (level-triggered): the
//! caller states what it wants, this crate adds and removes the difference.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan};

pub mod gwguard;
pub mod ingress;
pub mod nft;
pub mod vip;

/// The IANA VXLAN port, as Docker's overlay uses.
pub const VXLAN_PORT: u16 = 4789;

/// The VXLAN device of an overlay network: at most 15 bytes (IFNAMSIZ - 1).
pub fn vxlan_ifname(network_id: &str) -> String {
    format!("swv-{}", network_id.get(..11).unwrap_or(network_id))
}

/// Errors of the data plane. Netlink refusals carry the kernel's reason.
#[derive(Debug, thiserror::Error)]
pub enum NetplaneError {
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("no network interface named {0}")]
    NoSuchLink(String),
    #[error("{0} exists but is not a vxlan device")]
    NotVxlan(String),
    /// The kernel allows one VXLAN device per VNI and UDP port in a network namespace.
    #[error(
        "VNI {vni} is taken on this machine by device {holder} (a leftover of an earlier \
         swarm, or a node of another swarm on this machine): remove it or leave that swarm"
    )]
    VniInUse { vni: u32, holder: String },
    #[error("nftables: {0}")]
    Nft(String),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetplaneError {
    let what = what.into();
    move |source| NetplaneError::Netlink { what, source }
}

/// What one overlay network's VXLAN device must look like on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// The device's name ([`vxlan_ifname`]).
    pub name: String,
    pub vni: u32,
    /// This node's data-plane address: VXLAN packets leave from it.
    pub local: Ipv4Addr,
    /// The bridge the device joins.
    pub bridge: String,
    /// UDP port of the VXLAN traffic, sent and received (the swarm's data path port).
    pub port: u16,
}

/// The difference between what is and what is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan<T: Ord> {
    pub add: BTreeSet<T>,
    pub remove: BTreeSet<T>,
}

/// What to add and remove to go from `current` to `wanted`.
pub fn plan<T: Ord + Clone>(current: &BTreeSet<T>, wanted: &BTreeSet<T>) -> Plan<T> {
    Plan {
        add: wanted.difference(current).cloned().collect(),
        remove: current.difference(wanted).cloned().collect(),
    }
}

/// A netlink handle in the network namespace of the thread that connected.
#[derive(Clone)]
pub struct Netplane {
    handle: Handle,
}

impl Netplane {
    /// Opens a netlink socket (in the calling thread's network namespace) and spawns its
    /// connection task on the current tokio runtime.
    pub fn connect() -> Result<Netplane, NetplaneError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netplane { handle })
    }

    /// The index of the interface `name`, if it exists.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetplaneError> {
        Ok(self.link(name).await?.map(|l| l.header.index))
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetplaneError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(l) => Ok(l),
            // ENODEV: no such interface.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
            Err(e) => Err(nl(format!("looking up {name}"))(e)),
        }
    }

    /// Creates the VXLAN device of `spec` if missing, enslaved to its bridge and up. An
    /// existing device is kept (and re-enslaved and brought up), unless it uses another UDP
    /// port (left by a swarm with another data path port): that one is replaced. One that is
    /// not VXLAN is an error rather than something to delete.
    pub async fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<u32, NetplaneError> {
        let bridge = self
            .link_index(&spec.bridge)
            .await?
            .ok_or_else(|| NetplaneError::NoSuchLink(spec.bridge.clone()))?;
        let mut existing = self.link(&spec.name).await?;
        if let Some(link) = &existing {
            if !is_vxlan(link) {
                return Err(NetplaneError::NotVxlan(spec.name.clone()));
            }
            if port_of(link).is_some_and(|p| p != spec.port) {
                tracing::info!(
                    link = %spec.name,
                    port = ?port_of(link),
                    wanted = spec.port,
                    "vxlan device on another port; replacing it"
                );
                self.remove_link(&spec.name).await?;
                existing = None;
            }
        }
        if let Some(link) = existing {
            let index = link.header.index;
            self.handle
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .controller(bridge)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("bringing {} up", spec.name)))?;
            return Ok(index);
        }
        match self
            .handle
            .link()
            .add(
                LinkVxlan::new(&spec.name, spec.vni)
                    .local(spec.local)
                    .port(spec.port)
                    .learning(true)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
        {
            Ok(()) => {}
            // EEXIST: not the name (looked up above) but the VNI.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => {
                let holder = self.vxlan_with_vni(spec.vni).await?;
                return Err(match holder {
                    Some(holder) => NetplaneError::VniInUse {
                        vni: spec.vni,
                        holder,
                    },
                    None => {
                        nl(format!("creating {}", spec.name))(rtnetlink::Error::NetlinkError(e))
                    }
                });
            }
            Err(e) => return Err(nl(format!("creating {}", spec.name))(e)),
        }
        tracing::info!(link = %spec.name, vni = spec.vni, local = %spec.local, bridge = %spec.bridge, "vxlan device created");
        self.link_index(&spec.name)
            .await?
            .ok_or_else(|| NetplaneError::NoSuchLink(spec.name.clone()))
    }

    /// The name of the VXLAN device with VNI `vni`, if there is one.
    async fn vxlan_with_vni(&self, vni: u32) -> Result<Option<String>, NetplaneError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing links"))?;
        Ok(links
            .iter()
            .find(|l| vni_of(l) == Some(vni))
            .and_then(link_name))
    }

    /// Deletes the interface `name` if it exists.
    pub async fn remove_link(&self, name: &str) -> Result<(), NetplaneError> {
        if let Some(index) = self.link_index(name).await? {
            self.handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(nl(format!("deleting {name}")))?;
        }
        Ok(())
    }

    /// The peers broadcasts are replicated to: the all-zero FDB entries of device `index`.
    pub async fn flood_peers(&self, index: u32) -> Result<BTreeSet<Ipv4Addr>, NetplaneError> {
        let entries: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing forwarding entries"))?;
        Ok(entries
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l == &[0u8; 6]))
            })
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                    // Bridge-family entries come back with the address unparsed.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                        <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Makes broadcasts on device `index` reach exactly `wanted`.
    pub async fn set_flood_peers(
        &self,
        index: u32,
        wanted: &BTreeSet<Ipv4Addr>,
    ) -> Result<(), NetplaneError> {
        let current = self.flood_peers(index).await?;
        let p = plan(&current, wanted);
        for peer in &p.add {
            self.request(
                RouteNetlinkMessage::NewNeighbour(flood_entry(index, *peer)),
                NLM_F_CREATE | NLM_F_APPEND,
            )
            .await
            .map_err(nl(format!("adding flood peer {peer}")))?;
        }
        for peer in &p.remove {
            self.handle
                .neighbours()
                .del(flood_entry(index, *peer))
                .execute()
                .await
                .map_err(nl(format!("removing flood peer {peer}")))?;
        }
        if !p.add.is_empty() || !p.remove.is_empty() {
            tracing::debug!(ifindex = index, added = ?p.add, removed = ?p.remove, "vxlan peers updated");
        }
        Ok(())
    }

    /// The /32 addresses on interface `name` (the VIPs this crate put there).
    pub async fn host_addrs(&self, name: &str) -> Result<BTreeSet<Ipv4Addr>, NetplaneError> {
        let index = self
            .link_index(name)
            .await?
            .ok_or_else(|| NetplaneError::NoSuchLink(name.to_string()))?;
        Ok(self
            .addr_messages(index)
            .await?
            .iter()
            .filter(|m| m.header.prefix_len == 32)
            .filter_map(ipv4_of)
            .collect())
    }

    async fn addr_messages(&self, index: u32) -> Result<Vec<AddressMessage>, NetplaneError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing addresses"))
    }

    /// Makes the /32 addresses of interface `name` exactly `wanted`. Addresses with another
    /// prefix length (the bridge's gateway) are never touched.
    pub async fn set_host_addrs(
        &self,
        name: &str,
        wanted: &BTreeSet<Ipv4Addr>,
    ) -> Result<(), NetplaneError> {
        let index = self
            .link_index(name)
            .await?
            .ok_or_else(|| NetplaneError::NoSuchLink(name.to_string()))?;
        let messages = self.addr_messages(index).await?;
        let current: BTreeSet<Ipv4Addr> = messages
            .iter()
            .filter(|m| m.header.prefix_len == 32)
            .filter_map(ipv4_of)
            .collect();
        let p = plan(&current, wanted);
        for ip in &p.add {
            match self
                .handle
                .address()
                .add(index, IpAddr::V4(*ip), 32)
                .execute()
                .await
            {
                Ok(()) => {}
                // EEXIST: another node sharing this machine added it first.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => {}
                Err(e) => return Err(nl(format!("adding {ip} to {name}"))(e)),
            }
        }
        for m in messages {
            let Some(ip) = ipv4_of(&m) else { continue };
            if m.header.prefix_len == 32 && p.remove.contains(&ip) {
                match self.handle.address().del(m).execute().await {
                    Ok(()) => {}
                    // EADDRNOTAVAIL: already gone.
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -99 => {}
                    Err(e) => return Err(nl(format!("removing {ip} from {name}"))(e)),
                }
            }
        }
        Ok(())
    }

    async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), rtnetlink::Error> {
        let mut req = NetlinkMessage::from(message);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut response = handle.request(req)?;
        while let Some(msg) = futures::StreamExt::next(&mut response).await {
            if let NetlinkPayload::Error(e) = msg.payload
                && e.code.is_some()
            {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
        Ok(())
    }
}

fn is_vxlan(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vxlan))),
        _ => false,
    })
}

/// The UDP port of a VXLAN device.
fn port_of(link: &LinkMessage) -> Option<u16> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(v)) => v.iter().find_map(|x| match x {
                InfoVxlan::Port(p) => Some(*p),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

/// The VNI of a VXLAN device.
fn vni_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(v)) => v.iter().find_map(|x| match x {
                InfoVxlan::Id(id) => Some(*id),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn ipv4_of(m: &AddressMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
            Some(*ip)
        }
        _ => None,
    })
}

/// `bridge fdb append 00:00:00:00:00:00 dev <index> dst <peer> self permanent`.
fn flood_entry(index: u32, peer: Ipv4Addr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.header.kind = RouteType::Unspec;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(vec![0u8; 6]));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            peer,
        )));
    m
}

/// Test support: running async code inside a throwaway network namespace.
#[cfg(test)]
pub(crate) mod netns_test {
    use std::future::Future;

    /// Runs `f` on a thread that entered a new namespace `/run/netns/<name>` (made with `ip
    /// netns add` and deleted afterwards, also when `f` panics); `Err` is `f`'s panic.
    pub(crate) fn run_in_netns<F, Fut, R>(name: &str, f: F) -> std::thread::Result<R>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R>,
        R: Send + 'static,
    {
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(ip(&["netns", "add", name]), "ip netns add {name}");
        let path = format!("/run/netns/{name}");
        let res = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("namespace file");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(f())
        })
        .join();
        ip(&["netns", "del", name]);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::LinkBridge;

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(vxlan_ifname("k3x9q0v2m7a1b2c3"), "swv-k3x9q0v2m7a");
        assert!(vxlan_ifname("k3x9q0v2m7a1b2c3").len() <= 15);
        assert_eq!(vxlan_ifname("ab"), "swv-ab");
    }

    #[test]
    fn the_vni_and_name_of_a_vxlan_link() {
        let mut l = LinkMessage::default();
        assert_eq!(vni_of(&l), None);
        l.attributes.push(LinkAttribute::IfName("swv-abc".into()));
        l.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Port(VXLAN_PORT),
                InfoVxlan::Id(4097),
            ])),
        ]));
        assert_eq!(vni_of(&l), Some(4097));
        assert_eq!(port_of(&l), Some(VXLAN_PORT));
        assert_eq!(link_name(&l).as_deref(), Some("swv-abc"));
        assert!(is_vxlan(&l));
    }

    /// In a namespace of its own (root and iproute2): a second device for a VNI already
    /// taken is refused with the holder's name, not netlink's bare EEXIST.
    #[test]
    #[ignore = "needs root and iproute2: scripts/test runs it"]
    fn a_taken_vni_names_its_holder() {
        swarmd_testkit::require(
            "root and iproute2",
            swarmd_testkit::is_root() && swarmd_testkit::command_works("ip", &["netns", "list"]),
        );
        let ns = format!("swvni{:x}", std::process::id());
        let got = netns_test::run_in_netns(&ns, || async {
            let np = Netplane::connect().unwrap();
            let spec = |name: &str| VxlanSpec {
                name: name.into(),
                vni: 4242,
                local: Ipv4Addr::new(192, 0, 2, 1),
                bridge: "swvnibr".into(),
                port: VXLAN_PORT,
            };
            let br = LinkBridge::new("swvnibr").build();
            np.handle.link().add(br).execute().await.unwrap();
            np.ensure_vxlan(&spec("swv-first")).await.unwrap();
            np.ensure_vxlan(&spec("swv-second")).await
        });
        match got.expect("namespace thread") {
            Err(NetplaneError::VniInUse { vni, holder }) => {
                assert_eq!((vni, holder.as_str()), (4242, "swv-first"))
            }
            other => panic!("expected VniInUse, got {other:?}"),
        }
    }

    /// In a namespace of its own (root and iproute2): the device uses the swarm's data path
    /// port, and a device left on another port is replaced.
    #[test]
    #[ignore = "needs root and iproute2: scripts/test runs it"]
    fn the_device_uses_the_data_path_port() {
        swarmd_testkit::require(
            "root and iproute2",
            swarmd_testkit::is_root() && swarmd_testkit::command_works("ip", &["netns", "list"]),
        );
        let ns = format!("swport{:x}", std::process::id());
        let got = netns_test::run_in_netns(&ns, || async {
            let np = Netplane::connect().unwrap();
            let spec = |port| VxlanSpec {
                name: "swv-port".into(),
                vni: 4243,
                local: Ipv4Addr::new(192, 0, 2, 1),
                bridge: "swportbr".into(),
                port,
            };
            let br = LinkBridge::new("swportbr").build();
            np.handle.link().add(br).execute().await.unwrap();
            let port = |np: &Netplane| {
                let np = np.clone();
                async move { port_of(&np.link("swv-port").await.unwrap().unwrap()) }
            };
            np.ensure_vxlan(&spec(4789)).await.unwrap();
            let first = port(&np).await;
            np.ensure_vxlan(&spec(7789)).await.unwrap();
            (first, port(&np).await)
        });
        assert_eq!(got.expect("namespace thread"), (Some(4789), Some(7789)));
    }

    #[test]
    fn plan_adds_and_removes_the_difference() {
        let cur: BTreeSet<u8> = [1, 2, 3].into();
        let want: BTreeSet<u8> = [2, 3, 4].into();
        let p = plan(&cur, &want);
        assert_eq!(p.add, [4].into());
        assert_eq!(p.remove, [1].into());
        assert_eq!(plan(&want, &want), Plan::default());
    }
}
