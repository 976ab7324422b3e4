//! What the DNS server knows: which names exist on which network, and which clients are on
//! which networks. Pure data and lookups; the server (`server.rs`) only does I/O.
//!
//! Docker's rules (libnetwork's `ResolveName` for swarm services):
//! - `<service>`: the service's virtual IP on that network (VIP mode), or the addresses of its
//!   tasks (`--endpoint-mode dnsrr`);
//! - `tasks.<service>`: the addresses of its tasks, in either mode;
//! - a network alias of the service answers like the service name.
//!
//! Names are scoped by network: a client sees the names of the networks it is attached to,
//! nothing else, so two stacks' `web` services on different networks do not collide.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// An overlay network as the DNS server sees it: its ID and its subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkScope {
    pub id: String,
    pub subnet: Subnet,
}

/// An IPv4 subnet (`10.0.1.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n`; `None` for anything else (IPv6 subnets are not served).
    pub fn parse(s: &str) -> Option<Subnet> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= 32).then_some(Subnet { addr, prefix })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// One service's presence on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub network_id: String,
    pub name: String,
    pub aliases: Vec<String>,
    /// The service's VIP on this network; `None` in dnsrr mode.
    pub vip: Option<Ipv4Addr>,
    /// Addresses of the service's running tasks on this network.
    pub task_addrs: Vec<Ipv4Addr>,
}

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A virtual IP: stable, may be cached.
    Vip(Ipv4Addr),
    /// Task addresses: change as tasks come and go, so they are not to be cached. May be
    /// empty (the service exists but no task runs).
    Tasks(Vec<Ipv4Addr>),
}

/// The names of every network, and the networks of every known client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsTable {
    networks: Vec<NetworkScope>,
    /// (network ID, lowercase name) → answer.
    names: HashMap<(String, String), Answer>,
    /// Task address → the networks its task is attached to (a task's query comes from one
    /// of its addresses, whichever the route picks, yet it may use names of all of them).
    /// Addresses of tasks the table was not told about fall back to subnet matching.
    clients: HashMap<Ipv4Addr, Vec<String>>,
}

impl DnsTable {
    /// Builds the table. `tasks` lists, per task, its (network ID, address) attachments.
    /// When two services claim the same name on a network (an alias equal to another
    /// service's name), the service's own name wins over an alias, as in Docker.
    pub fn build(
        networks: Vec<NetworkScope>,
        services: &[ServiceRecord],
        tasks: &[Vec<(String, Ipv4Addr)>],
    ) -> DnsTable {
        let mut names: HashMap<(String, String), Answer> = HashMap::new();
        let mut clients: HashMap<Ipv4Addr, Vec<String>> = HashMap::new();
        for s in services {
            let own = match s.vip {
                Some(vip) => Answer::Vip(vip),
                None => Answer::Tasks(s.task_addrs.clone()),
            };
            let net = s.network_id.clone();
            for alias in &s.aliases {
                names
                    .entry((net.clone(), alias.to_ascii_lowercase()))
                    .or_insert_with(|| own.clone());
            }
            names.insert((net.clone(), s.name.to_ascii_lowercase()), own);
            names.insert(
                (net, format!("tasks.{}", s.name.to_ascii_lowercase())),
                Answer::Tasks(s.task_addrs.clone()),
            );
        }
        for attachments in tasks {
            let mut nets: Vec<String> = attachments.iter().map(|(n, _)| n.clone()).collect();
            nets.sort();
            nets.dedup();
            for (_, addr) in attachments {
                clients.insert(*addr, nets.clone());
            }
        }
        DnsTable {
            networks,
            names,
            clients,
        }
    }

    /// The networks whose names `client` may resolve: its task's networks if it is a known
    /// task address, else every network whose subnet holds it (attachable containers).
    fn scopes(&self, client: IpAddr) -> Vec<&str> {
        let IpAddr::V4(ip) = client else {
            return Vec::new();
        };
        if let Some(nets) = self.clients.get(&ip) {
            return nets.iter().map(String::as_str).collect();
        }
        self.networks
            .iter()
            .filter(|n| n.subnet.contains(ip))
            .map(|n| n.id.as_str())
            .collect()
    }

    /// Resolves `name` (any case, with or without the trailing dot) for `client`. `None`: not
    /// a name of the client's networks, to be forwarded to the host's resolvers.
    pub fn lookup(&self, client: IpAddr, name: &str) -> Option<&Answer> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        self.scopes(client)
            .into_iter()
            .find_map(|net| self.names.get(&(net.to_string(), name.clone())))
    }

    /// True when nothing is known (no network has a service).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn table() -> DnsTable {
        DnsTable::build(
            vec![
                NetworkScope {
                    id: "front".into(),
                    subnet: Subnet::parse("10.0.1.0/24").unwrap(),
                },
                NetworkScope {
                    id: "back".into(),
                    subnet: Subnet::parse("10.0.2.0/24").unwrap(),
                },
            ],
            &[
                ServiceRecord {
                    network_id: "front".into(),
                    name: "api".into(),
                    aliases: vec!["backend".into()],
                    vip: Some(ip("10.0.1.2")),
                    task_addrs: vec![ip("10.0.1.10"), ip("10.0.1.11")],
                },
                ServiceRecord {
                    network_id: "back".into(),
                    name: "db".into(),
                    aliases: vec![],
                    vip: None,
                    task_addrs: vec![ip("10.0.2.5"), ip("10.0.2.6")],
                },
                // The api's tasks are on the back network too.
                ServiceRecord {
                    network_id: "back".into(),
                    name: "api".into(),
                    aliases: vec![],
                    vip: Some(ip("10.0.2.2")),
                    task_addrs: vec![ip("10.0.2.10"), ip("10.0.2.11")],
                },
            ],
            &[
                vec![
                    ("front".into(), ip("10.0.1.10")),
                    ("back".into(), ip("10.0.2.10")),
                ],
                vec![
                    ("front".into(), ip("10.0.1.11")),
                    ("back".into(), ip("10.0.2.11")),
                ],
            ],
        )
    }

    #[test]
    fn vip_mode_answers_the_vip_and_tasks_answers_the_tasks() {
        let t = table();
        let client = IpAddr::V4(ip("10.0.1.50"));
        assert_eq!(t.lookup(client, "api"), Some(&Answer::Vip(ip("10.0.1.2"))));
        assert_eq!(t.lookup(client, "API."), Some(&Answer::Vip(ip("10.0.1.2"))));
        assert_eq!(
            t.lookup(client, "tasks.api"),
            Some(&Answer::Tasks(vec![ip("10.0.1.10"), ip("10.0.1.11")]))
        );
        assert_eq!(
            t.lookup(client, "backend"),
            Some(&Answer::Vip(ip("10.0.1.2")))
        );
    }

    #[test]
    fn dnsrr_answers_task_addresses() {
        let t = table();
        assert_eq!(
            t.lookup(IpAddr::V4(ip("10.0.2.99")), "db"),
            Some(&Answer::Tasks(vec![ip("10.0.2.5"), ip("10.0.2.6")]))
        );
    }

    #[test]
    fn names_are_scoped_to_the_clients_networks() {
        let t = table();
        // A client only on "front" does not see "db" (on "back"): it is forwarded.
        assert_eq!(t.lookup(IpAddr::V4(ip("10.0.1.50")), "db"), None);
        // Unknown clients and unknown names are forwarded too.
        assert_eq!(t.lookup(IpAddr::V4(ip("192.168.1.1")), "api"), None);
        assert_eq!(t.lookup(IpAddr::V4(ip("10.0.1.50")), "example.com"), None);
        // An api task, querying from its front address, sees names of both its networks.
        assert_eq!(
            t.lookup(IpAddr::V4(ip("10.0.1.10")), "db"),
            Some(&Answer::Tasks(vec![ip("10.0.2.5"), ip("10.0.2.6")]))
        );
        // A db task (not in the task list) falls back to its subnet: "back" only.
        assert_eq!(t.lookup(IpAddr::V4(ip("10.0.2.5")), "backend"), None);
        assert_eq!(
            t.lookup(IpAddr::V4(ip("10.0.2.5")), "api"),
            Some(&Answer::Vip(ip("10.0.2.2")))
        );
    }

    #[test]
    fn a_service_name_wins_over_another_services_alias() {
        let t = DnsTable::build(
            vec![NetworkScope {
                id: "n".into(),
                subnet: Subnet::parse("10.0.0.0/24").unwrap(),
            }],
            &[
                ServiceRecord {
                    network_id: "n".into(),
                    name: "a".into(),
                    aliases: vec!["b".into()],
                    vip: Some(ip("10.0.0.2")),
                    task_addrs: vec![ip("10.0.0.9")],
                },
                ServiceRecord {
                    network_id: "n".into(),
                    name: "b".into(),
                    aliases: vec![],
                    vip: Some(ip("10.0.0.3")),
                    task_addrs: vec![],
                },
            ],
            &[],
        );
        assert_eq!(
            t.lookup(IpAddr::V4(ip("10.0.0.9")), "b"),
            Some(&Answer::Vip(ip("10.0.0.3")))
        );
    }

    #[test]
    fn subnets_parse_and_contain() {
        let s = Subnet::parse("10.0.1.0/24").unwrap();
        assert!(s.contains(ip("10.0.1.255")));
        assert!(!s.contains(ip("10.0.2.0")));
        assert!(Subnet::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert_eq!(Subnet::parse("10.0.0.0/33"), None);
        assert_eq!(Subnet::parse("fd00::/64"), None);
        assert_eq!(Subnet::parse("10.0.0.0"), None);
    }
}
