//! Published-port allocation, done with the spec so conflicts are refused at the API.

use std::collections::{BTreeMap, BTreeSet};

use swarmd_store::Tables;
use swarmd_types::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum as Proto,
    EndpointPortConfigPublishModeEnum as PubMode, EndpointSpec,
};

/// Docker's dynamic range for ingress ports published without a number.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn proto(p: &EndpointPortConfig) -> Proto {
    match p.protocol {
        None | Some(Proto::EMPTY) => Proto::TCP,
        Some(x) => x,
    }
}

fn mode(p: &EndpointPortConfig) -> PubMode {
    match p.publish_mode {
        None | Some(PubMode::EMPTY) => PubMode::INGRESS,
        Some(x) => x,
    }
}

/// The service's ports with defaults filled and published ports assigned. Ingress ports
/// are unique across services per protocol; `service_id` is the service being written.
pub fn allocate(
    tables: &Tables,
    service_id: &str,
    spec: Option<&EndpointSpec>,
) -> Result<Vec<EndpointPortConfig>, String> {
    let requested = spec.and_then(|s| s.ports.clone()).unwrap_or_default();
    let mut used: BTreeSet<(Proto, i64)> = BTreeSet::new();
    let mut owner = BTreeMap::new();
    for s in tables.services.values().filter(|s| s.id != service_id) {
        for p in &s.endpoint.ports {
            if mode(p) == PubMode::INGRESS
                && let Some(pp) = p.published_port.filter(|p| *p > 0)
            {
                used.insert((proto(p), pp));
                owner.insert(
                    (proto(p), pp),
                    (s.spec.name.clone().unwrap_or_default(), s.id.clone()),
                );
            }
        }
    }
    // Keep ports this service already had, so an update doesn't reshuffle them.
    let previous: Vec<EndpointPortConfig> = tables
        .services
        .get(service_id)
        .map(|s| s.endpoint.ports.clone())
        .unwrap_or_default();

    let mut out = Vec::with_capacity(requested.len());
    let mut mine: BTreeSet<(Proto, i64, PubMode)> = BTreeSet::new();
    for p in &requested {
        let target = p.target_port.unwrap_or(0);
        if !(1..=65535).contains(&target) {
            return Err(format!("invalid target port {target}"));
        }
        let published = p.published_port.unwrap_or(0);
        if !(0..=65535).contains(&published) {
            return Err(format!("invalid published port {published}"));
        }
        let mut q = p.clone();
        q.protocol = Some(proto(p));
        q.publish_mode = Some(mode(p));
        if published > 0 {
            if mode(p) == PubMode::INGRESS && used.contains(&(proto(p), published)) {
                let (name, id) = owner[&(proto(p), published)].clone();
                return Err(format!(
                    "port '{published}' is already in use by service '{name}' ({id}) as an ingress port"
                ));
            }
            if !mine.insert((proto(p), published, mode(p))) {
                return Err(format!("duplicate published port {published}/{}", proto(p)));
            }
        }
        out.push(q);
    }
    // Auto-assign ingress ports that came without a number.
    for q in out.iter_mut() {
        if q.published_port.unwrap_or(0) != 0 || q.publish_mode != Some(PubMode::INGRESS) {
            continue;
        }
        let reuse = previous.iter().find(|o| {
            o.target_port == q.target_port
                && proto(o) == proto(q)
                && o.published_port.unwrap_or(0) > 0
        });
        let pick = reuse.and_then(|o| o.published_port).filter(|pp| {
            !used.contains(&(proto(q), *pp)) && !mine.contains(&(proto(q), *pp, PubMode::INGRESS))
        });
        let pick = pick.or_else(|| {
            DYNAMIC_PORTS.clone().find(|pp| {
                !used.contains(&(proto(q), *pp))
                    && !mine.contains(&(proto(q), *pp, PubMode::INGRESS))
            })
        });
        let Some(pp) = pick else {
            return Err("no available ports in the dynamic range 30000-32767".into());
        };
        mine.insert((proto(q), pp, PubMode::INGRESS));
        q.published_port = Some(pp);
    }
    Ok(out)
}
