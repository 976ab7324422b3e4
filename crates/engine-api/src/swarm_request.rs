//! The bodies of `POST /swarm/init` and `/swarm/join` as the daemon decodes them (moby's
//! `swarm.InitRequest` and `swarm.JoinRequest`).
//!
//! bollard-stubs follows the swagger, which leaves out `Availability` and
//! `AutoLockManagers`; the CLI sends both (`--availability`, `--autolock`), so decoding into
//! the swagger models dropped them without a word. These structs carry every field the
//! daemon reads.

use serde::{Deserialize, Serialize};
use swarmd_types::models::SwarmSpec;

/// `POST /swarm/init`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InitRequest {
    #[serde(rename = "ListenAddr", default)]
    pub listen_addr: Option<String>,
    #[serde(rename = "AdvertiseAddr", default)]
    pub advertise_addr: Option<String>,
    #[serde(rename = "DataPathAddr", default)]
    pub data_path_addr: Option<String>,
    /// VXLAN UDP port of overlay traffic (API 1.40+); 0 or absent: 4789.
    #[serde(rename = "DataPathPort", default)]
    pub data_path_port: Option<u32>,
    #[serde(rename = "ForceNewCluster", default)]
    pub force_new_cluster: Option<bool>,
    #[serde(rename = "Spec", default)]
    pub spec: Option<SwarmSpec>,
    #[serde(rename = "AutoLockManagers", default)]
    pub auto_lock_managers: Option<bool>,
    /// This node's first availability: `active`, `pause` or `drain`.
    #[serde(rename = "Availability", default)]
    pub availability: Option<String>,
    /// Pools overlay subnets come from (API 1.39+); absent: `10.0.0.0/8`.
    #[serde(rename = "DefaultAddrPool", default)]
    pub default_addr_pool: Option<Vec<String>>,
    /// Prefix length of each subnet taken from the pools (API 1.39+); 0 or absent: 24.
    #[serde(rename = "SubnetSize", default)]
    pub subnet_size: Option<u32>,
}

/// `POST /swarm/join`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    #[serde(rename = "ListenAddr", default)]
    pub listen_addr: Option<String>,
    #[serde(rename = "AdvertiseAddr", default)]
    pub advertise_addr: Option<String>,
    #[serde(rename = "DataPathAddr", default)]
    pub data_path_addr: Option<String>,
    #[serde(rename = "RemoteAddrs", default)]
    pub remote_addrs: Option<Vec<String>>,
    #[serde(rename = "JoinToken", default)]
    pub join_token: Option<String>,
    /// This node's first availability: `active`, `pause` or `drain`.
    #[serde(rename = "Availability", default)]
    pub availability: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_json;

    /// What docker CLI 28.2 sends for `swarm init --availability drain --default-addr-pool
    /// 10.20.0.0/16 --default-addr-pool-mask-length 26 --data-path-port 7789 --autolock`.
    #[test]
    fn every_field_the_cli_sends_is_kept() {
        let init: InitRequest = decode_json(
            br#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathAddr":"","DataPathPort":7789,"ForceNewCluster":false,"Spec":{"Labels":null,"Orchestration":{},"Raft":{"ElectionTick":0,"HeartbeatTick":0},"Dispatcher":{},"CAConfig":{},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":true}},"AutoLockManagers":true,"Availability":"drain","DefaultAddrPool":["10.20.0.0/16"],"SubnetSize":26}"#,
        )
        .unwrap();
        assert_eq!(init.availability.as_deref(), Some("drain"));
        assert_eq!(init.auto_lock_managers, Some(true));
        assert_eq!(
            init.default_addr_pool,
            Some(vec!["10.20.0.0/16".to_string()])
        );
        assert_eq!(init.subnet_size, Some(26));
        assert_eq!(init.data_path_port, Some(7789));

        let join: JoinRequest = decode_json(
            br#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathAddr":"","RemoteAddrs":["10.0.0.1:2377"],"JoinToken":"SWMTKN-1-x","Availability":"pause"}"#,
        )
        .unwrap();
        assert_eq!(join.availability.as_deref(), Some("pause"));
        assert_eq!(join.remote_addrs, Some(vec!["10.0.0.1:2377".to_string()]));
    }
}
