//! The `filters=` query parameter, as the daemon's `filters.Args`.
//!
//! The docker CLI sends `{"name":{"web":true}}`; docker-py and old clients send the legacy
//! `{"name":["web"]}`. Both decode to a set of values per key. Each endpoint then validates
//! its keys against the list the daemon accepts, so a typo gives the daemon's 400 instead of
//! a silently unfiltered list.

use std::collections::{BTreeMap, HashMap};

use crate::error::ApiError;

/// Decoded filters: key → values (with the boolean the modern form carries). Serializes
/// to the modern form (`{"key":{"value":true}}`), for passing filters on to an engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Filters(BTreeMap<String, BTreeMap<String, bool>>);

/// A malformed or unknown filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The parameter is neither form of filter JSON.
    #[error("invalid filter")]
    InvalidJson,
    /// A key the endpoint does not know.
    #[error("invalid filter '{0}'")]
    UnknownKey(String),
    /// A value the endpoint cannot use (the daemon's wording, e.g.
    /// "Invalid role filter: 'x'").
    #[error("{0}")]
    InvalidValue(String),
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Parses a `filters` parameter in either form. An empty string means no filters.
pub fn parse_filters(raw: &str) -> Result<Filters, FilterError> {
    if raw.is_empty() {
        return Ok(Filters::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|_| FilterError::InvalidJson)?;
    let obj = match value {
        serde_json::Value::Null => return Ok(Filters::default()),
        serde_json::Value::Object(o) => o,
        _ => return Err(FilterError::InvalidJson),
    };
    modern_form(&obj)
        .or_else(|| legacy_form(&obj))
        .map(Filters)
        .ok_or(FilterError::InvalidJson)
}

type FilterMap = BTreeMap<String, BTreeMap<String, bool>>;

/// `{"k":{"v":true}}` (Go: `map[string]map[string]bool`; `null` maps and values are allowed).
fn modern_form(obj: &serde_json::Map<String, serde_json::Value>) -> Option<FilterMap> {
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let mut values = BTreeMap::new();
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Object(inner) => {
                for (val, b) in inner {
                    let b = match b {
                        serde_json::Value::Bool(b) => *b,
                        serde_json::Value::Null => false,
                        _ => return None,
                    };
                    values.insert(val.clone(), b);
                }
            }
            _ => return None,
        }
        out.insert(k.clone(), values);
    }
    Some(out)
}

/// `{"k":["v"]}` (Go: `map[string][]string`).
fn legacy_form(obj: &serde_json::Map<String, serde_json::Value>) -> Option<FilterMap> {
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let mut values = BTreeMap::new();
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Array(items) => {
                for item in items {
                    values.insert(item.as_str()?.to_string(), true);
                }
            }
            _ => return None,
        }
        out.insert(k.clone(), values);
    }
    Some(out)
}

impl Filters {
    /// Builds filters from `(key, value)` pairs (tests, internal callers).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut f = Filters::default();
        for (k, v) in pairs {
            f.add(k, v);
        }
        f
    }

    pub fn add(&mut self, key: &str, value: &str) {
        self.0
            .entry(key.to_string())
            .or_default()
            .insert(value.to_string(), true);
    }

    /// Replaces the values of `key` (used when names are resolved to IDs).
    pub fn set(&mut self, key: &str, values: impl IntoIterator<Item = String>) {
        self.0.insert(
            key.to_string(),
            values.into_iter().map(|v| (v, true)).collect(),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops `key` and its values, returning them.
    pub fn take(&mut self, key: &str) -> Vec<String> {
        self.0
            .remove(key)
            .map(|m| m.into_keys().collect())
            .unwrap_or_default()
    }

    /// Rejects keys outside `accepted` with the daemon's "invalid filter 'x'".
    pub fn validate(&self, accepted: &[&str]) -> Result<(), FilterError> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(k) => Err(FilterError::UnknownKey(k.clone())),
            None => Ok(()),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The values given for `key` (empty if none).
    pub fn get(&self, key: &str) -> Vec<&str> {
        self.0
            .get(key)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// True when `key` is not filtered, or `source` is one of its values. (Go's
    /// `ExactMatch`, including that a `false` value does not match.)
    pub fn exact_match(&self, key: &str, source: &str) -> bool {
        match self.0.get(key) {
            None => true,
            Some(m) if m.is_empty() => true,
            Some(m) => m.get(source).copied().unwrap_or(false),
        }
    }

    /// True when `key` is not filtered or one of its values equals `source` (swarmkit's
    /// `filterContains`).
    pub fn matches_any(&self, key: &str, source: &str) -> bool {
        let values = self.get(key);
        values.is_empty() || values.contains(&source)
    }

    /// True when `key` is not filtered or one of its values is a prefix of `source`
    /// (swarmkit's `filterContainsPrefix`, used for `id` and `name`).
    pub fn matches_prefix(&self, key: &str, source: &str) -> bool {
        let values = self.get(key);
        values.is_empty() || values.iter().any(|p| source.starts_with(p))
    }

    /// `label`-style values `k` or `k=v` as a map (later duplicates win, as
    /// `ConvertKVStringsToMap`).
    pub fn label_map(&self, key: &str) -> HashMap<String, String> {
        self.get(key)
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect()
    }
}

/// swarmkit's `filterMatchLabels`: every wanted key must be present, and equal where a value
/// was given.
pub fn match_labels(wanted: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| match labels.get(k) {
        Some(have) => v.is_empty() || v == have,
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let modern =
            parse_filters(r#"{"name":{"web":true},"label":{"a=b":true,"c":true}}"#).unwrap();
        let legacy = parse_filters(r#"{"name":["web"],"label":["a=b","c"]}"#).unwrap();
        assert_eq!(modern, legacy);
        assert_eq!(modern.get("name"), vec!["web"]);
        let labels = modern.label_map("label");
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(labels.get("c").map(String::as_str), Some(""));
    }

    #[test]
    fn empty_and_null_mean_no_filters() {
        assert!(parse_filters("").unwrap().is_empty());
        assert!(parse_filters("null").unwrap().is_empty());
        assert!(parse_filters("{}").unwrap().is_empty());
        assert!(
            parse_filters(r#"{"name":null}"#)
                .unwrap()
                .get("name")
                .is_empty()
        );
    }

    #[test]
    fn rejects_bad_json() {
        for bad in [
            "{",
            "[1]",
            r#"{"a":1}"#,
            r#"{"a":["x",1]}"#,
            r#"{"a":{"b":"c"}}"#,
            "x",
        ] {
            assert_eq!(parse_filters(bad), Err(FilterError::InvalidJson), "{bad}");
        }
        assert_eq!(FilterError::InvalidJson.to_string(), "invalid filter");
    }

    #[test]
    fn validates_keys() {
        let f = parse_filters(r#"{"nmae":{"web":true}}"#).unwrap();
        let e = f.validate(&["name", "id"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'nmae'");
        let api: ApiError = e.into();
        assert_eq!(api.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            parse_filters(r#"{"name":{"web":true}}"#)
                .unwrap()
                .validate(&["name"])
                .is_ok()
        );
    }

    #[test]
    fn matching_helpers() {
        let f = Filters::from_pairs([("name", "we"), ("mode", "global")]);
        assert!(f.matches_prefix("name", "web"));
        assert!(!f.matches_prefix("name", "db"));
        assert!(f.matches_prefix("id", "anything"));
        assert!(f.exact_match("mode", "global"));
        assert!(!f.exact_match("mode", "replicated"));
        let off = parse_filters(r#"{"mode":{"global":false}}"#).unwrap();
        assert!(!off.exact_match("mode", "global"));

        let labels: HashMap<String, String> =
            [("a".to_string(), "b".to_string())].into_iter().collect();
        let want = |s: &[(&str, &str)]| -> HashMap<String, String> {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(match_labels(&want(&[("a", "")]), &labels));
        assert!(match_labels(&want(&[("a", "b")]), &labels));
        assert!(!match_labels(&want(&[("a", "c")]), &labels));
        assert!(!match_labels(&want(&[("x", "")]), &labels));
        assert!(match_labels(&want(&[]), &labels));
    }
}
