//! The CA part of a swarm spec (`CAConfig`): what it asks of the swarm's root CA, checked as
//! swarmkit's controlapi checks it (`validateCAConfig`), with its messages, and the spec as
//! it may be stored. The signing CA key never stays in a spec: swarmkit keeps it apart, in
//! the cluster's root CA object, and so does swarmd ([`scrub_signing_material`]).

use swarmd_pki::RootCaMaterial;
use swarmd_types::RootCa;
use swarmd_types::error::SwarmError;
use swarmd_types::models::{SwarmSpec, SwarmSpecCaConfig};

use super::{ControlError, ControlResult, invalid};

/// What a spec's `CAConfig` asks of the root CA.
#[derive(Debug)]
pub enum CaRequest {
    /// The current root stays (possibly re-affirmed by giving its own certificate).
    Keep,
    /// A new root: self-generated (`ForceRotate` changed) or the one given.
    NewRoot(Option<RootCaMaterial>),
}

/// The `ForceRotate` value the current root answers.
pub fn last_forced_rotation(root: &RootCa, stored_spec: &SwarmSpec) -> u64 {
    root.last_forced_rotation
        .unwrap_or_else(|| force_rotate(stored_spec))
}

/// The spec's `CAConfig.ForceRotate` (0 when unset).
pub fn force_rotate(spec: &SwarmSpec) -> u64 {
    spec.ca_config
        .as_ref()
        .and_then(|c| c.force_rotate)
        .unwrap_or(0)
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.trim().is_empty())
}

/// Decides what `ca` asks of the root `current` (which answers `ForceRotate` value
/// `last_forced`), refusing what swarmkit refuses and what swarmd cannot do.
pub fn plan_ca_change(
    current: &RootCa,
    last_forced: u64,
    ca: Option<&SwarmSpecCaConfig>,
) -> ControlResult<CaRequest> {
    let Some(ca) = ca else {
        return Ok(CaRequest::Keep);
    };
    let cert = non_empty(&ca.signing_ca_cert);
    let key = non_empty(&ca.signing_ca_key);
    if key.is_some() && cert.is_none() {
        return Err(invalid(
            "if a signing CA key is provided, the signing CA cert must also be provided",
        ));
    }
    if ca.external_cas.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(external_ca_refused());
    }
    let Some(cert) = cert else {
        return Ok(if ca.force_rotate.unwrap_or(0) != last_forced {
            CaRequest::NewRoot(None)
        } else {
            CaRequest::Keep
        });
    };
    // A certificate without its key could only be served by an external CA.
    let Some(key) = key else {
        return Err(invalid(
            "there must be at least one valid, reachable external CA corresponding to the desired CA certificate",
        ));
    };
    let given = swarmd_pki::check_signing_root(cert, key).map_err(|e| invalid(e.to_string()))?;
    // At init there is no current root yet: whatever is given is new.
    if let Ok((_, current_key)) = swarmd_pki::subject_and_key(&current.cert_pem) {
        if swarmd_pki::load_certs(&current.cert_pem)
            .is_ok_and(|c| c[0].as_ref() == given.cert_der.as_slice())
        {
            return Ok(CaRequest::Keep);
        }
        let (_, given_key) =
            swarmd_pki::subject_and_key(&given.cert_pem).map_err(SwarmError::internal)?;
        if given_key == current_key {
            return Err(invalid("Cannot update to a cert with an identical key"));
        }
    }
    Ok(CaRequest::NewRoot(Some(given)))
}

/// swarmd signs every node certificate itself; it does not forward CSRs to an external
/// CA (cfssl), so a request for one is refused rather than stored and ignored.
pub fn external_ca_refused() -> ControlError {
    invalid(
        "external CAs are not supported by swarmd: node certificates are signed with the swarm's own root CA key",
    )
}

/// The spec as it is stored and shown: without the signing CA certificate and key, which
/// live in the cluster's root CA object once taken (moby and swarmkit never return them;
/// returning the certificate would also make a read-modify-write of the spec look like a
/// new rotation request).
pub fn scrub_signing_material(spec: &mut SwarmSpec) {
    if let Some(ca) = spec.ca_config.as_mut() {
        ca.signing_ca_cert = None;
        ca.signing_ca_key = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Control;
    use swarmd_types::Cluster;
    use swarmd_types::error::Code;

    async fn control() -> Control {
        crate::control::initialised_for_test().await
    }

    fn cluster(c: &Control) -> Cluster {
        c.store().view(|t| t.cluster().cloned()).unwrap()
    }

    fn with_ca(c: &Cluster, ca: SwarmSpecCaConfig) -> SwarmSpec {
        let mut spec = c.spec.clone();
        spec.ca_config = Some(ca);
        spec
    }

    async fn update(c: &Control, spec: SwarmSpec) -> ControlResult<()> {
        let version = cluster(c).meta.version;
        c.update_swarm(version, spec, false, false, false).await
    }

    #[tokio::test]
    async fn the_signing_key_is_never_stored_in_the_spec() {
        let c = control().await;
        let before = cluster(&c);
        // Re-affirming the current root with its key is accepted and changes no root.
        let spec = with_ca(
            &before,
            SwarmSpecCaConfig {
                signing_ca_cert: Some(before.root_ca.cert_pem.clone()),
                signing_ca_key: Some(before.root_ca.key_pem.clone()),
                ..Default::default()
            },
        );
        update(&c, spec).await.unwrap();
        let after = cluster(&c);
        let ca = after.spec.ca_config.clone().unwrap();
        assert_eq!((ca.signing_ca_cert, ca.signing_ca_key), (None, None));
        assert_eq!(after.root_ca, before.root_ca);
        let stored = serde_json::to_string(&after.spec).unwrap();
        assert!(!stored.contains("PRIVATE KEY"), "{stored}");
    }

    #[tokio::test]
    async fn bad_ca_requests_are_refused_and_change_nothing() {
        let c = control().await;
        let before = cluster(&c);
        let other = swarmd_pki::generate_root_ca().unwrap();
        let cases = [
            (
                SwarmSpecCaConfig {
                    signing_ca_key: Some(other.key_pem.clone()),
                    ..Default::default()
                },
                "if a signing CA key is provided, the signing CA cert must also be provided",
            ),
            (
                SwarmSpecCaConfig {
                    signing_ca_cert: Some(other.cert_pem.clone()),
                    ..Default::default()
                },
                "there must be at least one valid, reachable external CA corresponding to the desired CA certificate",
            ),
            (
                SwarmSpecCaConfig {
                    signing_ca_cert: Some(before.root_ca.cert_pem.clone()),
                    signing_ca_key: Some(other.key_pem.clone()),
                    ..Default::default()
                },
                "certificate key mismatch",
            ),
            (
                SwarmSpecCaConfig {
                    external_cas: Some(vec![Default::default()]),
                    ..Default::default()
                },
                "external CAs are not supported",
            ),
        ];
        for (ca, want) in cases {
            let err = update(&c, with_ca(&before, ca)).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err}");
            assert!(err.message().contains(want), "{err}, want {want}");
            assert_eq!(cluster(&c), before, "a refused update changed the cluster");
        }
    }
}
