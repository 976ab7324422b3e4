//! The options of `swarm init`/`join` that live outside the spec (address pools, subnet size,
//! data path port, the node's first availability) and the Raft part of the spec, checked as
//! Docker checks them and with its messages (moby `daemon/cluster/listen_addr.go` and
//! `noderunner.go`; etcd raft's config validation, which swarmkit's Raft runs).

use swarmd_types::models::{NodeSpecAvailabilityEnum, SwarmSpecRaft};

use crate::ipam::Cidr;

/// What `swarm init` asked for beyond the spec, as the request carried it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitRequestOptions {
    /// `None`: the request had no pool (moby checks nothing then).
    pub default_addr_pool: Option<Vec<String>>,
    pub subnet_size: u32,
    pub data_path_port: u32,
    pub availability: Option<String>,
}

/// [`InitRequestOptions`] checked and defaulted: what the new cluster and its first node
/// get.
#[derive(Debug, Clone, PartialEq)]
pub struct InitOptions {
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub data_path_port: u32,
    pub availability: Option<NodeSpecAvailabilityEnum>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            default_addr_pool: vec![DEFAULT_ADDR_POOL.into()],
            subnet_size: DEFAULT_SUBNET_SIZE,
            data_path_port: DEFAULT_DATA_PATH_PORT,
            availability: None,
        }
    }
}

impl InitRequestOptions {
    /// Checks in moby's order (pools, data path port, then availability when the node
    /// starts), with its messages.
    pub fn check(&self) -> Result<InitOptions, String> {
        let (default_addr_pool, subnet_size) =
            address_pools(self.default_addr_pool.as_deref(), self.subnet_size)?;
        Ok(InitOptions {
            default_addr_pool,
            subnet_size,
            data_path_port: data_path_port(self.data_path_port)?,
            availability: availability(self.availability.as_deref())?,
        })
    }
}

/// swarmkit's inbuilt default address pool.
pub const DEFAULT_ADDR_POOL: &str = "10.0.0.0/8";
/// swarmkit's inbuilt subnet size.
pub const DEFAULT_SUBNET_SIZE: u32 = 24;
/// The largest subnet size Docker accepts: a /29 keeps 8 addresses, the smallest overlay
/// libnetwork's load balancer leaves room in.
pub const MAX_SUBNET_SIZE: u32 = 29;
/// The IANA VXLAN port, Docker's default data path port.
pub const DEFAULT_DATA_PATH_PORT: u32 = 4789;

/// The Raft ticks swarmd runs with, as swarmkit counts them (`HeartbeatTick` 1,
/// `ElectionTick` 10, the daemon's defaults). swarmd's timing is fixed: a heartbeat every
/// 100 ms and elections after 300–600 ms of silence, i.e. one tick is 100 ms for the
/// heartbeat and elections are three to six times faster than ten such ticks. Docker does
/// not apply the spec's ticks either (the daemon's own settings decide; swarmkit only warns
/// when they differ), so swarmd keeps these and refuses other values rather than record
/// something it does not do.
pub const HEARTBEAT_TICK: i64 = 1;
pub const ELECTION_TICK: i64 = 10;

/// The address pools and subnet size a new swarm allocates overlay subnets with: the
/// request's (trimmed, as Docker trims them) or swarmkit's defaults. `pool` is `None` when
/// the request had none; moby then checks nothing, not even the size.
pub fn address_pools(pool: Option<&[String]>, size: u32) -> Result<(Vec<String>, u32), String> {
    let Some(pool) = pool else {
        return Ok((vec![DEFAULT_ADDR_POOL.into()], DEFAULT_SUBNET_SIZE));
    };
    let size = if size == 0 { DEFAULT_SUBNET_SIZE } else { size };
    if size > MAX_SUBNET_SIZE {
        return Err(format!("subnet size is out of range: {size}"));
    }
    let mut out = Vec::with_capacity(pool.len());
    for p in pool {
        let p = p.trim();
        let Some(cidr) = Cidr::parse(p) else {
            // Go's net.ParseCIDR takes IPv6 too; swarmd's overlays are IPv4 only.
            return Err(if p.contains(':') {
                format!("invalid base pool {p}: swarmd allocates IPv4 overlay subnets only")
            } else {
                format!("invalid base pool {p}: invalid CIDR address: {p}")
            });
        };
        if size < u32::from(cidr.len) {
            return Err(format!(
                "invalid CIDR: {p:?}. Subnet size is too small for pool: {size}"
            ));
        }
        out.push(p.to_string());
    }
    if out.is_empty() {
        out.push(DEFAULT_ADDR_POOL.into());
    }
    Ok((out, size))
}

/// The VXLAN UDP port (moby's `getDataPathPort`): 0 means 4789; otherwise a registered
/// port, 1024–49151.
pub fn data_path_port(port: u32) -> Result<u32, String> {
    match port {
        0 => Ok(DEFAULT_DATA_PATH_PORT),
        1024..=49151 => Ok(port),
        _ => Err(format!(
            "Datapath port number is not in valid range (1024-49151) : {port}"
        )),
    }
}

/// A node's first availability from `--availability` (case-insensitive, as moby matches
/// swarmkit's enum names); empty means active.
pub fn availability(s: Option<&str>) -> Result<Option<NodeSpecAvailabilityEnum>, String> {
    match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(None),
        Some("active") => Ok(Some(NodeSpecAvailabilityEnum::ACTIVE)),
        Some("pause") => Ok(Some(NodeSpecAvailabilityEnum::PAUSE)),
        Some("drain") => Ok(Some(NodeSpecAvailabilityEnum::DRAIN)),
        Some(_) => Err(format!("invalid Availability: {:?}", s.unwrap_or_default())),
    }
}

/// The Raft part of a swarm spec: etcd raft's checks first (what swarmkit's Raft would
/// refuse to start with), then the ticks swarmd cannot follow (see [`HEARTBEAT_TICK`]).
/// 0 or absent means the default, as in Docker.
pub fn validate_raft(r: &SwarmSpecRaft) -> Result<(), String> {
    let election = r.election_tick.unwrap_or(0);
    let heartbeat = r.heartbeat_tick.unwrap_or(0);
    if heartbeat < 0 {
        return Err("heartbeat tick must be greater than 0".into());
    }
    if election < 0 || (election != 0 && election <= heartbeat.max(HEARTBEAT_TICK)) {
        return Err("election tick must be greater than heartbeat tick".into());
    }
    if (heartbeat != 0 && heartbeat != HEARTBEAT_TICK)
        || (election != 0 && election != ELECTION_TICK)
    {
        return Err(format!(
            "swarmd's Raft timing is fixed (heartbeats every 100ms, elections after 300-600ms): \
             HeartbeatTick must be {HEARTBEAT_TICK} and ElectionTick {ELECTION_TICK} (or 0 for the default)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(p: &[&str], size: u32) -> Result<(Vec<String>, u32), String> {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        address_pools(Some(&p), size)
    }

    #[test]
    fn address_pools_as_docker_checks_them() {
        assert_eq!(
            address_pools(None, 0).unwrap(),
            (vec!["10.0.0.0/8".to_string()], 24)
        );
        assert_eq!(
            pools(&[" 10.20.0.0/16 ", "192.168.0.0/20"], 26).unwrap(),
            (vec!["10.20.0.0/16".into(), "192.168.0.0/20".into()], 26)
        );
        // The CLI sends an empty pool and 24 when no flag was given.
        assert_eq!(pools(&[], 24).unwrap(), (vec!["10.0.0.0/8".into()], 24));
        assert_eq!(pools(&["10.0.0.0/8"], 0).unwrap().1, 24);
        assert_eq!(
            pools(&["10.20.0.0/16"], 30).unwrap_err(),
            "subnet size is out of range: 30"
        );
        assert_eq!(
            pools(&["10.20.0.0/16"], 12).unwrap_err(),
            "invalid CIDR: \"10.20.0.0/16\". Subnet size is too small for pool: 12"
        );
        assert_eq!(
            pools(&["10.20.0.300/16"], 24).unwrap_err(),
            "invalid base pool 10.20.0.300/16: invalid CIDR address: 10.20.0.300/16"
        );
        assert_eq!(
            pools(&["10.20.0.0"], 24).unwrap_err(),
            "invalid base pool 10.20.0.0: invalid CIDR address: 10.20.0.0"
        );
        assert!(pools(&["fd00::/64"], 24).unwrap_err().contains("IPv4"));
    }

    #[test]
    fn data_path_port_range() {
        assert_eq!(data_path_port(0), Ok(4789));
        assert_eq!(data_path_port(1024), Ok(1024));
        assert_eq!(data_path_port(49151), Ok(49151));
        assert_eq!(
            data_path_port(1023).unwrap_err(),
            "Datapath port number is not in valid range (1024-49151) : 1023"
        );
        assert!(data_path_port(49152).is_err());
    }

    #[test]
    fn availability_names() {
        assert_eq!(availability(None), Ok(None));
        assert_eq!(availability(Some("")), Ok(None));
        assert_eq!(
            availability(Some("Drain")),
            Ok(Some(NodeSpecAvailabilityEnum::DRAIN))
        );
        assert_eq!(
            availability(Some("pause")),
            Ok(Some(NodeSpecAvailabilityEnum::PAUSE))
        );
        assert_eq!(
            availability(Some("asleep")).unwrap_err(),
            "invalid Availability: \"asleep\""
        );
    }

    #[test]
    fn raft_ticks() {
        let r = |e: Option<i64>, h: Option<i64>| SwarmSpecRaft {
            election_tick: e,
            heartbeat_tick: h,
            ..Default::default()
        };
        assert!(validate_raft(&r(None, None)).is_ok());
        assert!(validate_raft(&r(Some(0), Some(0))).is_ok());
        assert!(validate_raft(&r(Some(10), Some(1))).is_ok());
        assert_eq!(
            validate_raft(&r(Some(1), Some(1))).unwrap_err(),
            "election tick must be greater than heartbeat tick"
        );
        assert_eq!(
            validate_raft(&r(Some(3), Some(5))).unwrap_err(),
            "election tick must be greater than heartbeat tick"
        );
        assert_eq!(
            validate_raft(&r(Some(10), Some(-1))).unwrap_err(),
            "heartbeat tick must be greater than 0"
        );
        assert!(
            validate_raft(&r(Some(20), Some(2)))
                .unwrap_err()
                .contains("fixed")
        );
    }
}
