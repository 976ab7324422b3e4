//! `GET /info` -> the node's identity, capacity and constraint labels (classic's
//! `updateSpecs`).

use bollard_stubs::models::SystemInfo;

use crate::scheduler::model::Node;

/// Why classic refuses an engine's `/info`; Display is classic's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// A Swarm manager (or anything else) answering at the address reports no resources.
    #[error(
        "cannot get resources for this engine, make sure {addr} is a Docker Engine, not a Swarm manager"
    )]
    NoResources { addr: String },
    /// The cluster indexes engines by ID; a changed ID would corrupt that index, so classic
    /// puts the engine back to pending instead of accepting it.
    #[error(
        "Engine (ID: {known}, Addr: {addr}) shows up with another ID:{reported}. Please remove it from cluster, it can be added back."
    )]
    IdChanged {
        known: String,
        addr: String,
        reported: String,
    },
    /// An engine label without `=`; classic refuses the engine rather than guess.
    #[error(
        "Engine (ID: {id}, Addr: {addr}) contains an invalid label ({label}) not formatted as \"key=value\"."
    )]
    InvalidLabel {
        id: String,
        addr: String,
        label: String,
    },
}

impl Node {
    /// Applies an engine's `/info` to the node. The node's `id` is [`node_id`], adopted on
    /// first contact (empty) and required to match afterwards; on error the node is
    /// unchanged (classic had already copied some fields; a refused engine is not
    /// scheduled on either way). Engine labels replace the previous ones wholesale, as
    /// classic rebuilds its map; a `node` label is dropped because `constraint:node==`
    /// always means the engine's name.
    pub fn apply_info(&mut self, info: &SystemInfo) -> Result<(), InfoError> {
        let ncpu = info.ncpu.unwrap_or(0);
        let mem = info.mem_total.unwrap_or(0);
        if ncpu == 0 || mem == 0 {
            return Err(InfoError::NoResources {
                addr: self.addr.clone(),
            });
        }
        let reported = node_id(info.id.as_deref().unwrap_or(""), &self.addr);
        if !self.id.is_empty() && self.id != reported {
            return Err(InfoError::IdChanged {
                known: self.id.clone(),
                addr: self.addr.clone(),
                reported,
            });
        }
        let mut labels = std::collections::HashMap::new();
        for l in info.labels.iter().flatten() {
            let Some((k, v)) = l.split_once('=') else {
                return Err(InfoError::InvalidLabel {
                    id: reported,
                    addr: self.addr.clone(),
                    label: l.clone(),
                });
            };
            if k != "node" {
                labels.insert(k.to_string(), v.to_string());
            }
        }
        self.id = reported;
        self.labels = labels;
        self.name = info.name.clone().unwrap_or_default();
        self.cpus = ncpu;
        self.memory = mem;
        self.storage_driver = info.driver.clone().unwrap_or_default();
        self.kernel_version = info.kernel_version.clone().unwrap_or_default();
        self.operating_system = info.operating_system.clone().unwrap_or_default();
        self.os_type = info.os_type.clone().unwrap_or_default();
        Ok(())
    }
}

/// Classic's engine ID: the engine's own ID, `|`, its address. Engines cloned with the
/// same `/etc/docker` (hence the same ID) on different hosts then stay distinct.
pub fn node_id(engine_id: &str, addr: &str) -> String {
    format!("{engine_id}|{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE_ID: &str = "Q4NB:ZTHP:4NNE:3U2Y:YCBK:EQIU:2QXA:XT3F:6TFN:GTJP:4H2P:VBUL";

    #[test]
    fn same_engine_id_on_two_addresses_stays_distinct() {
        assert_ne!(
            node_id(ENGINE_ID, "10.0.0.1:2375"),
            node_id(ENGINE_ID, "10.0.0.2:2375")
        );
    }

    /// Trimmed from engine 20.10's `/info`.
    const INFO: &str = r#"{
        "ID": "Q4NB:ZTHP:4NNE:3U2Y:YCBK:EQIU:2QXA:XT3F:6TFN:GTJP:4H2P:VBUL",
        "Containers": 2, "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "KernelVersion": "6.1.0-13-amd64", "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
        "OSVersion": "12", "OSType": "linux", "Architecture": "x86_64",
        "NCPU": 4, "MemTotal": 8330768384, "Name": "node1",
        "Labels": ["zone=eu-1", "disk=ssd", "expr=a=b", "node=other"],
        "ServerVersion": "20.10.24+dfsg1"
    }"#;

    fn info() -> SystemInfo {
        serde_json::from_str(INFO).unwrap()
    }

    fn node() -> Node {
        Node {
            addr: "10.0.0.1:2375".into(),
            ..Default::default()
        }
    }

    #[test]
    fn identity_capacity_and_constraint_keys() {
        let mut n = node();
        n.apply_info(&info()).unwrap();
        assert_eq!(n.id, format!("{ENGINE_ID}|10.0.0.1:2375"));
        assert_eq!(n.name, "node1");
        assert_eq!((n.cpus, n.memory), (4, 8330768384));
        assert_eq!(n.label("storagedriver"), Some("overlay2"));
        assert_eq!(n.label("kernelversion"), Some("6.1.0-13-amd64"));
        assert_eq!(
            n.label("operatingsystem"),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(n.label("ostype"), Some("linux"));
        assert_eq!(n.label("zone"), Some("eu-1"));
        assert_eq!(n.label("expr"), Some("a=b"), "split at the first '=' only");
        assert_eq!(
            n.label("node"),
            None,
            "`node` is the engine name, never a label"
        );
    }

    #[test]
    fn labels_are_replaced_not_merged() {
        let mut n = node();
        n.labels.insert("old".into(), "x".into());
        n.apply_info(&info()).unwrap();
        assert_eq!(n.label("old"), None);
    }

    #[test]
    fn label_without_equals_refuses_the_engine() {
        let mut i = info();
        i.labels = Some(vec!["zone=a".into(), "bare".into()]);
        let mut n = node();
        let err = n.apply_info(&i).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Engine (ID: {ENGINE_ID}|10.0.0.1:2375, Addr: 10.0.0.1:2375) contains an invalid label (bare) not formatted as \"key=value\"."
            )
        );
        assert_eq!(n, node(), "node unchanged");
    }

    #[test]
    fn no_resources_is_refused_with_classic_wording() {
        let mut i = info();
        i.ncpu = Some(0);
        let mut n = node();
        let err = n.apply_info(&i).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot get resources for this engine, make sure 10.0.0.1:2375 is a Docker Engine, not a Swarm manager"
        );
        assert_eq!(n, node(), "node unchanged");
        let mut i = info();
        i.mem_total = None;
        assert!(matches!(
            n.apply_info(&i),
            Err(InfoError::NoResources { .. })
        ));
    }

    #[test]
    fn changed_id_is_refused_known_id_accepted() {
        let mut n = node();
        n.id = "OTHER".into();
        let err = n.apply_info(&info()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Engine (ID: OTHER, Addr: 10.0.0.1:2375) shows up with another ID:{ENGINE_ID}|10.0.0.1:2375. Please remove it from cluster, it can be added back."
            )
        );
        assert_eq!(n.name, "", "node unchanged");
        n.id = node_id(ENGINE_ID, "10.0.0.1:2375");
        n.apply_info(&info()).unwrap();
        assert_eq!(n.name, "node1");
    }
}
