//! Answers shaped as Docker's daemon writes them: moby's Go types, not the swagger file.
//!
//! The API models are bollard-stubs, generated from Docker's swagger. Where the swagger and
//! the daemon's Go types disagree, clients follow the daemon: `ContainerSpec.Healthcheck`
//! (the swagger says `HealthCheck`), fields Go always prints (`Volumes: null` on a task,
//! `Raft.ElectionTick`, `JoinTokens`), fields Go leaves out when zero (`omitempty`), and
//! structs Go never leaves out (`Spec.Orchestration`, `Status.PortStatus`, `CreatedAt`).
//!
//! Rather than patch each model by hand, every swarm object is serialized with its model and
//! then re-encoded through [`moby`], a transcription of the daemon's Go types (v28.2, API
//! 1.50): keys are matched as Go's decoder does (exact, then case-insensitively) and renamed
//! to the Go field's JSON name, keys the Go type lacks are dropped, and each field is
//! written or left out by Go's `encoding/json` rules. The result is what the daemon would
//! send after decoding our answer into its own types and encoding it again, so a swagger
//! name or an `Option` left `None` cannot reach a client.

pub mod moby;

use serde::Serialize;
use serde_json::{Map, Value};

/// A Go type as `encoding/json` sees it.
#[derive(Debug)]
pub enum Ty {
    /// `string` and string-like enums.
    Str,
    /// Any integer or float (`time.Duration` is an `int64` of nanoseconds).
    Num,
    Bool,
    /// `time.Time`: a struct, so never omitted; the zero time when unset.
    Time,
    /// `[]byte` (base64) or anything passed through as it is.
    Raw,
    /// A struct by value: always written, even under `omitempty`.
    Struct(&'static [F]),
    /// A pointer: `null` when unset, and a pointer to a zero value is not empty.
    Ptr(&'static Ty),
    /// A slice: `null` when unset, empty when empty.
    Slice(&'static Ty),
    /// A map with string keys.
    Map(&'static Ty),
    /// `Annotations.Labels` as the daemon's `annotationsFromGRPC` fills it: `{}` when unset.
    Labels,
}

/// One field of a Go struct: its JSON name and whether it is tagged `omitempty`.
#[derive(Debug)]
pub struct F {
    pub name: &'static str,
    pub omitempty: bool,
    pub ty: Ty,
}

/// A field tagged `json:",omitempty"`.
pub const fn o(name: &'static str, ty: Ty) -> F {
    F {
        name,
        omitempty: true,
        ty,
    }
}

/// A field without `omitempty`: always written.
pub const fn a(name: &'static str, ty: Ty) -> F {
    F {
        name,
        omitempty: false,
        ty,
    }
}

/// Go's zero `time.Time`, as `encoding/json` writes it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Serializes `value` and re-encodes it as the Go type `ty`.
pub fn to_wire<T: Serialize>(ty: &Ty, value: &T) -> Value {
    match serde_json::to_value(value) {
        Ok(v) => shape(Some(v), ty, false).unwrap_or(Value::Null),
        Err(e) => {
            // Our models always serialize; should one ever fail, answer it rather than panic.
            tracing::error!(error = %e, "serializing an API answer");
            Value::Null
        }
    }
}

/// Re-encodes each element of a list answer.
pub fn list_to_wire<T: Serialize>(ty: &Ty, values: &[T]) -> Value {
    Value::Array(values.iter().map(|v| to_wire(ty, v)).collect())
}

/// Whether `encoding/json`'s `omitempty` counts a non-struct value as empty.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The value of `v` as the Go type `ty`, or `None` when Go would leave the field out.
/// `v` is `None` for a key the answer lacks (Go's zero value).
fn shape(v: Option<Value>, ty: &Ty, omitempty: bool) -> Option<Value> {
    let v = v.filter(|v| !v.is_null());
    match ty {
        Ty::Struct(fields) => Some(Value::Object(shape_struct(v, fields))),
        Ty::Time => Some(v.unwrap_or_else(|| Value::String(ZERO_TIME.into()))),
        Ty::Labels => Some(match v {
            Some(Value::Object(m)) => Value::Object(m),
            _ => Value::Object(Map::new()),
        }),
        Ty::Ptr(inner) => match v {
            None if omitempty => None,
            None => Some(Value::Null),
            Some(v) => shape(Some(v), inner, false),
        },
        Ty::Slice(elem) => match v {
            Some(Value::Array(items)) if !(omitempty && items.is_empty()) => Some(Value::Array(
                items
                    .into_iter()
                    .map(|i| shape(Some(i), elem, false).unwrap_or(Value::Null))
                    .collect(),
            )),
            Some(Value::Array(_)) => None,
            Some(other) => Some(other),
            None if omitempty => None,
            None => Some(Value::Null),
        },
        Ty::Map(elem) => match v {
            Some(Value::Object(m)) if !(omitempty && m.is_empty()) => Some(Value::Object(
                m.into_iter()
                    .map(|(k, i)| (k, shape(Some(i), elem, false).unwrap_or(Value::Null)))
                    .collect(),
            )),
            Some(Value::Object(_)) => None,
            Some(other) => Some(other),
            None if omitempty => None,
            None => Some(Value::Null),
        },
        Ty::Str | Ty::Num | Ty::Bool | Ty::Raw => {
            let v = v.unwrap_or_else(|| zero(ty));
            (!(omitempty && is_empty(&v))).then_some(v)
        }
    }
}

fn zero(ty: &Ty) -> Value {
    match ty {
        Ty::Str => Value::String(String::new()),
        Ty::Num => Value::from(0),
        Ty::Bool => Value::Bool(false),
        _ => Value::Null,
    }
}

/// A struct's fields, each taken from the key Go's decoder would match (the exact name, else
/// one equal under case folding) and written under the Go name.
fn shape_struct(v: Option<Value>, fields: &[F]) -> Map<String, Value> {
    let mut src = match v {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut out = Map::new();
    for f in fields {
        let key = if src.contains_key(f.name) {
            Some(f.name.to_string())
        } else {
            src.keys()
                .find(|k| k.to_lowercase() == f.name.to_lowercase())
                .cloned()
        };
        let value = key.and_then(|k| src.remove(&k));
        if let Some(v) = shape(value, &f.ty, f.omitempty) {
            out.insert(f.name.to_string(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INNER: &[F] = &[o("Name", Ty::Str), a("Count", Ty::Num)];
    const OUTER: &[F] = &[
        a("ID", Ty::Str),
        o("Healthcheck", Ty::Ptr(&Ty::Struct(INNER))),
        o("Inner", Ty::Struct(INNER)),
        o("Replicas", Ty::Ptr(&Ty::Num)),
        o("Items", Ty::Slice(&Ty::Struct(INNER))),
        a("Volumes", Ty::Slice(&Ty::Str)),
        a("Labels", Ty::Labels),
        o("CreatedAt", Ty::Time),
        o("Flag", Ty::Bool),
    ];

    #[test]
    fn keys_take_the_go_name_and_unknown_keys_go() {
        let v = shape(
            Some(json!({"id": "x", "HealthCheck": {"Name": "n"}, "Swagger": 1})),
            &Ty::Struct(OUTER),
            false,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "ID": "x",
                "Healthcheck": {"Name": "n", "Count": 0},
                "Inner": {"Count": 0},
                "Volumes": null,
                "Labels": {},
                "CreatedAt": ZERO_TIME,
            })
        );
    }

    #[test]
    fn omitempty_follows_go() {
        let v = shape(
            Some(
                json!({"ID": "", "Replicas": 0, "Items": [], "Flag": false, "Inner": {"Name": ""}}),
            ),
            &Ty::Struct(OUTER),
            false,
        )
        .unwrap();
        // A pointer to zero stays; an empty slice, false and "" under omitempty go; a
        // struct never goes; a field without omitempty stays even when empty.
        assert_eq!(v["Replicas"], 0);
        assert!(v.get("Items").is_none());
        assert!(v.get("Flag").is_none());
        assert_eq!(v["Inner"], json!({"Count": 0}));
        assert_eq!(v["ID"], "");
    }

    #[test]
    fn exact_case_wins_over_folded() {
        let v = shape(
            Some(json!({"healthcheck": {"Count": 1}, "Healthcheck": {"Count": 2}})),
            &Ty::Struct(OUTER),
            false,
        )
        .unwrap();
        assert_eq!(v["Healthcheck"]["Count"], 2);
    }
}
