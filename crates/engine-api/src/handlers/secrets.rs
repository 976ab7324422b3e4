//! `/secrets*` and `/configs*`.
//!
//! The two resources behave alike (swarmkit's controlapi shares their validation), so one
//! set of handlers serves both, told apart by [`FileKind`]. A secret's data is never encoded
//! into an answer; a config's is (`docker config inspect` shows it, as Docker does).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use swarmd_types::models::{self, Driver};
use swarmd_types::{Config, Secret};

use super::{json_ok, json_response, require_manager};
use crate::backend::ObjectSpec;
use crate::convert::opt_time;
use crate::decode::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::filters::{Filters, match_labels, parse_filters};
use crate::query::QueryParams;
use crate::resolve::resolve;
use crate::router::AppState;
use crate::wire::{self, moby};

/// The daemon's `newListSecretsFilters` / `newListConfigsFilters` keys: `names` exact,
/// `name` and `id` prefixes, `label`.
const FILTERS: &[&str] = &["names", "name", "id", "label"];

fn matches(
    f: &Filters,
    id: &str,
    name: &str,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    (!f.contains("names") || f.exact_match("names", name))
        && f.matches_prefix("name", name)
        && f.matches_prefix("id", id)
        && match_labels(&f.label_map("label"), labels)
}

fn version(index: u64) -> Option<models::ObjectVersion> {
    Some(models::ObjectVersion { index: Some(index) })
}

fn driver(name: &Option<String>) -> Option<Driver> {
    name.as_ref().map(|n| Driver {
        name: n.clone(),
        options: None,
    })
}

/// The templating driver as the client gave it, options included.
fn templating(name: &Option<String>, options: &HashMap<String, String>) -> Option<Driver> {
    name.as_ref().map(|n| Driver {
        name: n.clone(),
        options: (!options.is_empty()).then(|| options.clone()),
    })
}

/// A driver's name and options, split as the backend keeps them.
fn split_driver(d: Option<Driver>) -> (Option<String>, HashMap<String, String>) {
    match d {
        Some(Driver { name, options }) => (Some(name), options.unwrap_or_default()),
        None => (None, HashMap::new()),
    }
}

/// A secret as the API shows it: everything but the data.
pub fn secret_to_docker(s: &Secret) -> models::Secret {
    models::Secret {
        id: Some(s.id.clone()),
        version: version(s.meta.version),
        created_at: opt_time(&s.meta.created_at),
        updated_at: opt_time(&s.meta.updated_at),
        spec: Some(models::SecretSpec {
            name: Some(s.name.clone()),
            labels: Some(s.labels.clone()),
            data: None,
            driver: driver(&s.driver),
            templating: templating(&s.templating, &s.templating_options),
        }),
    }
}

/// A config as the API shows it, data included (base64, as Docker encodes `[]byte`).
pub fn config_to_docker(c: &Config) -> models::Config {
    models::Config {
        id: Some(c.id.clone()),
        version: version(c.meta.version),
        created_at: opt_time(&c.meta.created_at),
        updated_at: opt_time(&c.meta.updated_at),
        spec: Some(models::ConfigSpec {
            name: Some(c.name.clone()),
            labels: Some(c.labels.clone()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&c.data)),
            templating: templating(&c.templating, &c.templating_options),
        }),
    }
}

/// Decodes the spec's base64 `Data`. The daemon's JSON decoder fails on bad base64 with
/// Go's `illegal base64 data at input byte N`; the message never includes the data.
fn decode_data(data: Option<&str>) -> ApiResult<Vec<u8>> {
    let Some(d) = data else {
        return Ok(Vec::new());
    };
    base64::engine::general_purpose::STANDARD
        .decode(d)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                ApiError::bad_request(format!("illegal base64 data at input byte {at}"))
            }
            _ => ApiError::bad_request("illegal base64 data at input byte 0"),
        })
}

/// The spec as the backend keeps it. Destructured with no `..`, so a field added to the
/// model does not compile until it is carried or refused. A secret `Driver` is passed on by
/// name only: swarmd has no secret store plugins and the manager refuses any driver, so its
/// options are never dropped from a secret that exists.
fn secret_spec(spec: models::SecretSpec) -> ApiResult<ObjectSpec> {
    let models::SecretSpec {
        name,
        labels,
        data,
        driver,
        templating,
    } = spec;
    let (templating, templating_options) = split_driver(templating);
    Ok(ObjectSpec {
        name: name.unwrap_or_default(),
        labels: labels.unwrap_or_default(),
        data: decode_data(data.as_deref())?,
        driver: driver.map(|d| d.name),
        templating,
        templating_options,
    })
}

/// As [`secret_spec`], for a config (which has no `Driver`).
fn config_spec(spec: models::ConfigSpec) -> ApiResult<ObjectSpec> {
    let models::ConfigSpec {
        name,
        labels,
        data,
        templating,
    } = spec;
    let (templating, templating_options) = split_driver(templating);
    Ok(ObjectSpec {
        name: name.unwrap_or_default(),
        labels: labels.unwrap_or_default(),
        data: decode_data(data.as_deref())?,
        driver: None,
        templating,
        templating_options,
    })
}

/// Docker's answer to a create: 201 `{"ID": ...}`.
fn created(id: String) -> Response {
    json_response(StatusCode::CREATED, &serde_json::json!({ "ID": id }))
}

/// Docker answers a removal with 204.
fn no_content() -> Response {
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// What tells secrets and configs apart for their handlers; everything else is shared.
#[async_trait::async_trait]
pub trait FileKind: Sized + Send + Sync + 'static {
    /// "secret" or "config", in messages.
    const NOUN: &'static str;
    /// Its `moby` wire shape.
    const WIRE: &'static wire::Ty;
    type Spec: serde::de::DeserializeOwned + Send;
    type Docker: serde::Serialize;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn labels(&self) -> &HashMap<String, String>;
    fn to_docker(&self) -> Self::Docker;
    fn spec(spec: Self::Spec) -> ApiResult<ObjectSpec>;
    async fn all(st: &AppState) -> ApiResult<Vec<Self>>;
    async fn create(st: &AppState, spec: ObjectSpec) -> ApiResult<String>;
    async fn update(st: &AppState, id: &str, version: u64, spec: ObjectSpec) -> ApiResult<()>;
    async fn remove(st: &AppState, id: &str) -> ApiResult<()>;
}

#[async_trait::async_trait]
impl FileKind for Secret {
    const NOUN: &'static str = "secret";
    const WIRE: &'static wire::Ty = &moby::SECRET;
    type Spec = models::SecretSpec;
    type Docker = models::Secret;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn labels(&self) -> &HashMap<String, String> {
        &self.labels
    }
    fn to_docker(&self) -> models::Secret {
        secret_to_docker(self)
    }
    fn spec(spec: models::SecretSpec) -> ApiResult<ObjectSpec> {
        secret_spec(spec)
    }
    async fn all(st: &AppState) -> ApiResult<Vec<Secret>> {
        Ok(st.backend.secrets().await?)
    }
    async fn create(st: &AppState, spec: ObjectSpec) -> ApiResult<String> {
        Ok(st.backend.secret_create(spec).await?)
    }
    async fn update(st: &AppState, id: &str, version: u64, spec: ObjectSpec) -> ApiResult<()> {
        Ok(st.backend.secret_update(id, version, spec).await?)
    }
    async fn remove(st: &AppState, id: &str) -> ApiResult<()> {
        Ok(st.backend.secret_remove(id).await?)
    }
}

#[async_trait::async_trait]
impl FileKind for Config {
    const NOUN: &'static str = "config";
    const WIRE: &'static wire::Ty = &moby::CONFIG;
    type Spec = models::ConfigSpec;
    type Docker = models::Config;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn labels(&self) -> &HashMap<String, String> {
        &self.labels
    }
    fn to_docker(&self) -> models::Config {
        config_to_docker(self)
    }
    fn spec(spec: models::ConfigSpec) -> ApiResult<ObjectSpec> {
        config_spec(spec)
    }
    async fn all(st: &AppState) -> ApiResult<Vec<Config>> {
        Ok(st.backend.configs().await?)
    }
    async fn create(st: &AppState, spec: ObjectSpec) -> ApiResult<String> {
        Ok(st.backend.config_create(spec).await?)
    }
    async fn update(st: &AppState, id: &str, version: u64, spec: ObjectSpec) -> ApiResult<()> {
        Ok(st.backend.config_update(id, version, spec).await?)
    }
    async fn remove(st: &AppState, id: &str) -> ApiResult<()> {
        Ok(st.backend.config_remove(id).await?)
    }
}

fn find<'a, K: FileKind>(input: &str, all: &'a [K]) -> ApiResult<&'a K> {
    resolve(K::NOUN, input, all, |o| o.id(), |o, n| o.name() == n)
}

/// `GET /secrets`, `GET /configs`.
pub async fn list<K: FileKind>(State(st): State<AppState>, q: QueryParams) -> ApiResult<Response> {
    let f = parse_filters(q.get("filters").unwrap_or(""))?;
    f.validate(FILTERS)?;
    require_manager(&st)?;
    let out: Vec<_> = K::all(&st)
        .await?
        .iter()
        .filter(|o| matches(&f, o.id(), o.name(), o.labels()))
        .map(K::to_docker)
        .collect();
    Ok(json_ok(&wire::list_to_wire(K::WIRE, &out)))
}

/// `GET /secrets/{id}`, `GET /configs/{id}`.
pub async fn inspect<K: FileKind>(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_manager(&st)?;
    let all = K::all(&st).await?;
    Ok(json_ok(&wire::to_wire(
        K::WIRE,
        &find(&id, &all)?.to_docker(),
    )))
}

/// `POST /secrets/create`, `POST /configs/create`.
pub async fn create<K: FileKind>(
    State(st): State<AppState>,
    JsonBody(spec): JsonBody<K::Spec>,
) -> ApiResult<Response> {
    let spec = K::spec(spec)?;
    require_manager(&st)?;
    Ok(created(K::create(&st, spec).await?))
}

/// `POST /secrets/{id}/update`, `POST /configs/{id}/update` (labels only).
pub async fn update<K: FileKind>(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryParams,
    JsonBody(spec): JsonBody<K::Spec>,
) -> ApiResult<Response> {
    let version = q.object_version(K::NOUN)?;
    let spec = K::spec(spec)?;
    require_manager(&st)?;
    let all = K::all(&st).await?;
    K::update(&st, find(&id, &all)?.id(), version, spec).await?;
    Ok(super::empty_ok())
}

/// `DELETE /secrets/{id}`, `DELETE /configs/{id}`.
pub async fn remove<K: FileKind>(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_manager(&st)?;
    let all = K::all(&st).await?;
    K::remove(&st, find(&id, &all)?.id()).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_shown_without_its_data_a_config_with_it() {
        let s = Secret {
            id: "s".into(),
            name: "pw".into(),
            data: b"hunter2".to_vec(),
            templating: Some("golang".into()),
            ..Default::default()
        };
        let json = serde_json::to_string(&secret_to_docker(&s)).unwrap();
        assert!(!json.contains("Data"), "{json}");
        assert!(!json.contains("aHVudGVyMg"), "{json}");
        assert!(json.contains(r#""Templating":{"Name":"golang"}"#), "{json}");
        let c = Config {
            id: "c".into(),
            name: "conf".into(),
            data: b"hunter2".to_vec(),
            ..Default::default()
        };
        let json = serde_json::to_string(&config_to_docker(&c)).unwrap();
        assert!(json.contains(r#""Data":"aHVudGVyMg==""#), "{json}");
    }

    #[test]
    fn bad_base64_is_a_400_with_gos_words() {
        let e = decode_data(Some("ab$d")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "illegal base64 data at input byte 2");
        assert_eq!(decode_data(Some("aGk=")).unwrap(), b"hi");
        assert!(decode_data(None).unwrap().is_empty());
    }

    #[test]
    fn filters_match_like_the_daemon() {
        let f = parse_filters(r#"{"name":{"db":true},"label":{"env=prod":true}}"#).unwrap();
        let labels = [("env".to_string(), "prod".to_string())].into();
        assert!(matches(&f, "abc", "db_pw", &labels));
        assert!(!matches(&f, "abc", "pw", &labels));
        let f = parse_filters(r#"{"names":{"db":true}}"#).unwrap();
        assert!(!matches(&f, "abc", "db_pw", &labels), "names is exact");
    }
}
