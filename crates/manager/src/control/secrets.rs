//! Secrets and configs (swarmkit's controlapi `secret.go` / `config.go`), and the checks a
//! service spec's references to them must pass.
//!
//! Messages are swarmkit's, word for word: the CLI prints them and scripts match on them
//! (e.g. "is in use by the following service").

use std::collections::{BTreeMap, HashMap};

use swarmd_store::Tables;
use swarmd_types::error::SwarmError;
use swarmd_types::models::ServiceSpec;
use swarmd_types::{Config, Kind, Object, Secret, ids};

use super::{Control, ControlError, ControlResult, invalid};

/// swarmkit's `validation.MaxSecretSize`: data must be strictly smaller.
pub const MAX_SECRET_SIZE: usize = 500 * 1024;
/// swarmkit's `controlapi.MaxConfigSize`.
pub const MAX_CONFIG_SIZE: usize = 1000 * 1024;

pub use swarmd_types::ObjectSpec;

/// swarmkit's `isValidConfigOrSecretName`: `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`,
/// at most 64 characters.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(inner)
}

fn validate_name(name: &str) -> ControlResult<()> {
    if name.is_empty() {
        return Err(invalid("name must be provided"));
    }
    if !valid_name(name) {
        return Err(invalid(
            "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
        ));
    }
    Ok(())
}

/// swarmkit's `validateSecretSpec`.
pub fn validate_secret(spec: &ObjectSpec) -> ControlResult<()> {
    validate_name(&spec.name)?;
    match spec.driver.as_deref() {
        None => {
            if spec.data.is_empty() || spec.data.len() >= MAX_SECRET_SIZE {
                return Err(invalid(format!(
                    "secret data must be larger than 0 and less than {MAX_SECRET_SIZE} bytes"
                )));
            }
            Ok(())
        }
        Some("") => Err(invalid("secret driver must have a name")),
        // swarmd has no secret-store plugins: the daemon would fail to find the plugin.
        Some(d) => Err(invalid(format!(
            "secret driver {d} is not supported: swarmd has no secret store plugins"
        ))),
    }
}

/// swarmkit's `validateConfigSpec`.
pub fn validate_config(spec: &ObjectSpec) -> ControlResult<()> {
    validate_name(&spec.name)?;
    if spec.data.is_empty() || spec.data.len() >= MAX_CONFIG_SIZE {
        return Err(invalid(format!(
            "config data must be larger than 0 and less than {MAX_CONFIG_SIZE} bytes"
        )));
    }
    Ok(())
}

/// Names of the services whose spec references the secret (or config) `id`, sorted.
fn services_using(t: &Tables, kind: Kind, id: &str) -> Vec<String> {
    let mut names: Vec<String> = t
        .services
        .values()
        .filter(|s| {
            let Some(c) = s
                .spec
                .task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref())
            else {
                return false;
            };
            match kind {
                Kind::Secret => c
                    .secrets
                    .iter()
                    .flatten()
                    .any(|r| r.secret_id.as_deref() == Some(id)),
                _ => c
                    .configs
                    .iter()
                    .flatten()
                    .any(|r| r.config_id.as_deref() == Some(id)),
            }
        })
        .map(|s| s.spec.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

fn in_use(kind: &str, name: &str, services: &[String]) -> ControlError {
    let noun = if services.len() == 1 {
        "service"
    } else {
        "services"
    };
    invalid(format!(
        "{kind} '{name}' is in use by the following {noun}: {}",
        services.join(", ")
    ))
}

/// swarmkit's `checkSecretExistence` / `checkConfigExistence` plus the reference shape
/// checks of `validateSecretRefsSpec` / `validateConfigRefsSpec`: every reference names an
/// existing object by ID *and* its current name, and no two references share a target.
pub fn check_references(t: &Tables, spec: &ServiceSpec) -> ControlResult<()> {
    let Some(c) = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
    else {
        return Ok(());
    };
    let mut targets: HashMap<String, String> = HashMap::new();
    let mut missing = Vec::new();
    for r in c.secrets.iter().flatten() {
        let (Some(id), Some(name)) = (r.secret_id.as_deref(), r.secret_name.as_deref()) else {
            return Err(invalid("malformed secret reference"));
        };
        let Some(file) = &r.file else {
            return Err(invalid(format!(
                "malformed secret reference: {name}: missing file"
            )));
        };
        let target = file.name.clone().unwrap_or_default();
        if target.is_empty() {
            return Err(invalid(format!("malformed file target: {name}")));
        }
        if let Some(prev) = targets.insert(target.clone(), name.to_string()) {
            return Err(invalid(format!(
                "secret references '{prev}' and '{name}' have a conflicting target: '{target}'"
            )));
        }
        if t.secrets.get(id).is_none_or(|s| s.name != name) {
            missing.push(name.to_string());
        }
    }
    if !missing.is_empty() {
        let noun = if missing.len() == 1 {
            "secret"
        } else {
            "secrets"
        };
        return Err(invalid(format!("{noun} not found: {}", missing.join(", "))));
    }
    let mut targets: HashMap<String, String> = HashMap::new();
    for r in c.configs.iter().flatten() {
        let (Some(id), Some(name)) = (r.config_id.as_deref(), r.config_name.as_deref()) else {
            return Err(invalid("malformed config reference"));
        };
        if let Some(file) = &r.file {
            let target = file.name.clone().unwrap_or_default();
            if target.is_empty() {
                return Err(invalid(format!("malformed file target: {name}")));
            }
            if let Some(prev) = targets.insert(target.clone(), name.to_string()) {
                return Err(invalid(format!(
                    "config references '{prev}' and '{name}' have a conflicting target: '{target}'"
                )));
            }
        }
        if t.configs.get(id).is_none_or(|c| c.name != name) {
            missing.push(name.to_string());
        }
    }
    if !missing.is_empty() {
        let noun = if missing.len() == 1 {
            "config"
        } else {
            "configs"
        };
        return Err(invalid(format!("{noun} not found: {}", missing.join(", "))));
    }
    Ok(())
}

impl Control {
    /// `secret create`. Returns the new ID. The data is never logged.
    pub async fn create_secret(&self, spec: ObjectSpec) -> ControlResult<String> {
        validate_secret(&spec)?;
        let id = ids::new_id();
        self.store
            .update(|t, tx| {
                if t.id_by_name(Kind::Secret, &spec.name).is_some() {
                    return Err(SwarmError::already_exists(format!(
                        "secret {} already exists",
                        spec.name
                    )));
                }
                tx.create(Secret {
                    id: id.clone(),
                    meta: Default::default(),
                    name: spec.name.clone(),
                    labels: spec.labels.clone(),
                    data: spec.data.clone(),
                    driver: spec.driver.clone(),
                    templating: spec.templating.clone(),
                    templating_options: spec.templating_options.clone(),
                });
                Ok(())
            })
            .await?;
        Ok(id)
    }

    /// `secret update`: only labels may change (swarmkit refuses a new name or new data).
    pub async fn update_secret(
        &self,
        id: &str,
        version: u64,
        spec: ObjectSpec,
    ) -> ControlResult<()> {
        self.update_labels::<Secret>(id, version, spec).await
    }

    /// `secret rm`: refused while a service's spec references it.
    pub async fn remove_secret(&self, id: &str) -> ControlResult<()> {
        self.remove_unused::<Secret>(id).await
    }

    /// `config create`. Returns the new ID.
    pub async fn create_config(&self, spec: ObjectSpec) -> ControlResult<String> {
        validate_config(&spec)?;
        let id = ids::new_id();
        self.store
            .update(|t, tx| {
                if t.id_by_name(Kind::Config, &spec.name).is_some() {
                    return Err(SwarmError::already_exists(format!(
                        "config {} already exists",
                        spec.name
                    )));
                }
                tx.create(Config {
                    id: id.clone(),
                    meta: Default::default(),
                    name: spec.name.clone(),
                    labels: spec.labels.clone(),
                    data: spec.data.clone(),
                    templating: spec.templating.clone(),
                    templating_options: spec.templating_options.clone(),
                });
                Ok(())
            })
            .await?;
        Ok(id)
    }

    /// `config update`: only labels may change.
    pub async fn update_config(
        &self,
        id: &str,
        version: u64,
        spec: ObjectSpec,
    ) -> ControlResult<()> {
        self.update_labels::<Config>(id, version, spec).await
    }

    /// `config rm`: refused while a service's spec references it.
    pub async fn remove_config(&self, id: &str) -> ControlResult<()> {
        self.remove_unused::<Config>(id).await
    }

    /// swarmkit's update rule for secrets and configs: the version must match, and only the
    /// labels may change (a new name or new data is refused).
    async fn update_labels<T: FileObject>(
        &self,
        id: &str,
        version: u64,
        spec: ObjectSpec,
    ) -> ControlResult<()> {
        self.store
            .update(|t, tx| {
                let Some(cur) = T::table(t).get(id) else {
                    return Err(SwarmError::not_found(T::NOUN, id));
                };
                if cur.version() != version {
                    return Err(SwarmError::out_of_sequence());
                }
                if cur.name() != spec.name || (!spec.data.is_empty() && spec.data != cur.data()) {
                    return Err(invalid("only updates to Labels are allowed"));
                }
                let mut next = cur.clone();
                next.set_labels(spec.labels.clone());
                tx.update(next);
                Ok(())
            })
            .await
    }

    /// Removes a secret or config unless a service's spec still references it.
    async fn remove_unused<T: FileObject>(&self, id: &str) -> ControlResult<()> {
        self.store
            .update(|t, tx| {
                let Some(cur) = T::table(t).get(id) else {
                    return Err(SwarmError::not_found(T::NOUN, id));
                };
                let users = services_using(t, T::KIND, id);
                if !users.is_empty() {
                    return Err(in_use(T::NOUN, cur.name(), &users));
                }
                tx.remove(T::KIND, id);
                Ok(())
            })
            .await
    }
}

/// What secrets and configs share, so their update and removal rules are written once.
trait FileObject: Clone + Into<Object> {
    const KIND: Kind;
    /// The word in messages: "secret", "config".
    const NOUN: &'static str;
    fn table(t: &Tables) -> &BTreeMap<String, Self>;
    fn name(&self) -> &str;
    fn data(&self) -> &[u8];
    fn version(&self) -> u64;
    fn set_labels(&mut self, labels: HashMap<String, String>);
}

macro_rules! file_object {
    ($ty:ty, $kind:expr, $noun:literal, $table:ident) => {
        impl FileObject for $ty {
            const KIND: Kind = $kind;
            const NOUN: &'static str = $noun;
            fn table(t: &Tables) -> &BTreeMap<String, Self> {
                &t.$table
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn data(&self) -> &[u8] {
                &self.data
            }
            fn version(&self) -> u64 {
                self.meta.version
            }
            fn set_labels(&mut self, labels: HashMap<String, String>) {
                self.labels = labels;
            }
        }
    };
}

file_object!(Secret, Kind::Secret, "secret", secrets);
file_object!(Config, Kind::Config, "config", configs);

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::error::Code;

    fn spec(name: &str, len: usize) -> ObjectSpec {
        ObjectSpec {
            name: name.into(),
            data: vec![b'x'; len],
            ..Default::default()
        }
    }

    /// The message of an InvalidArgument refusal.
    fn msg(r: ControlResult<()>) -> String {
        let e = r.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        e.message().to_string()
    }

    #[test]
    fn names_follow_swarmkit() {
        for ok in ["a", "db.password", "A-b_c.d9", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", ".a", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(msg(validate_secret(&spec("", 1))), "name must be provided");
        assert!(msg(validate_secret(&spec("a b", 1))).contains("invalid name, only 64"));
    }

    #[test]
    fn size_limits() {
        assert!(validate_secret(&spec("s", MAX_SECRET_SIZE - 1)).is_ok());
        assert_eq!(
            msg(validate_secret(&spec("s", MAX_SECRET_SIZE))),
            "secret data must be larger than 0 and less than 512000 bytes"
        );
        assert!(msg(validate_secret(&spec("s", 0))).contains("larger than 0"));
        assert!(validate_config(&spec("c", MAX_CONFIG_SIZE - 1)).is_ok());
        assert_eq!(
            msg(validate_config(&spec("c", MAX_CONFIG_SIZE))),
            "config data must be larger than 0 and less than 1024000 bytes"
        );
    }

    #[test]
    fn in_use_message_is_dockers() {
        let e = in_use("secret", "pw", &["web".into()]);
        assert_eq!(
            e.to_string(),
            "rpc error: code = InvalidArgument desc = secret 'pw' is in use by the following service: web"
        );
        let e = in_use("config", "c", &["a".into(), "b".into()]);
        assert!(e.to_string().ends_with("following services: a, b"));
    }
}
