//! Request bodies decoded with Go's `encoding/json` rules.
//!
//! Docker clients (and hand-written scripts) send `{"name": "web"}` as readily as
//! `{"Name": "web"}`: Go matches struct fields case-insensitively, so the daemon accepts both.
//! serde is exact. Rather than annotating hundreds of bollard-stubs fields with aliases, the
//! body is parsed into a [`serde_json::Value`] and handed to the model's `Deserialize` through
//! [`CiDeserializer`], which renames an object's keys to the field names the struct expects
//! (the `fields` serde passes to `deserialize_struct`) before visiting it. That works for every
//! model without per-type code. The wrapper also tracks the field path, so type errors read
//! like Go's ("json: cannot unmarshal string into Go struct field
//! ServiceSpec.Mode.Replicated.Replicas of type int64").

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Error as _,
    IntoDeserializer, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde_json::{Map, Value};
use swarmd_types::models::ServiceSpec;

use crate::error::ApiError;

/// Largest request body the API decodes (secrets and configs are limited to 500 KiB by
/// swarm; service specs are a few KiB). Proxied engine requests are not limited.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A body that could not be decoded. The message is what the daemon would say
/// (`invalid JSON: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub message: String,
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        DecodeError {
            message: message.into(),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        ApiError::bad_request(e.message)
    }
}

/// Decodes a request body like the daemon's `httputils.ReadJSON`: an empty body is the zero
/// value, keys match case-insensitively, unknown keys are ignored, and anything after the
/// first JSON value is an error.
pub fn decode_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.is_empty() {
        return Ok(T::default());
    }
    let value = parse_value(bytes)?;
    T::deserialize(CiDeserializer::new(value))
        .map_err(|e| DecodeError::new(format!("invalid JSON: {e}")))
}

/// The fuzzing entry point for service specs (`POST /services/create` and `/update`).
pub fn decode_service_spec(bytes: &[u8]) -> Result<ServiceSpec, DecodeError> {
    decode_json(bytes)
}

/// Parses the first JSON value of `bytes`, with Go-like syntax error texts.
fn parse_value(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let value = match stream.next() {
        None => {
            return Err(DecodeError::new(
                "invalid JSON: got EOF while reading request body",
            ));
        }
        Some(Err(e)) => {
            return Err(DecodeError::new(format!(
                "invalid JSON: {}",
                go_syntax_error(&e, bytes)
            )));
        }
        Some(Ok(v)) => v,
    };
    let rest = &bytes[stream.byte_offset()..];
    if rest.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(DecodeError::new("unexpected content after JSON"));
    }
    Ok(value)
}

/// Rewrites a serde_json syntax error the way Go's scanner words it.
fn go_syntax_error(e: &serde_json::Error, bytes: &[u8]) -> String {
    if e.classify() == serde_json::error::Category::Eof {
        return "unexpected EOF".to_string();
    }
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let offending = char_at(bytes, e.line(), e.column());
    let context = match msg {
        "expected value" => "looking for beginning of value",
        "expected `:`" => "after object key",
        "expected `,` or `}`" => "after object key:value pair",
        "expected `,` or `]`" => "after array element",
        "key must be a string" => "looking for beginning of object key string",
        "expected ident" => "in literal",
        _ => return msg.to_string(),
    };
    match offending {
        Some(c) => format!("invalid character {} {context}", quote_char(c)),
        None => msg.to_string(),
    }
}

/// The character at a 1-based line / column position (serde_json counts columns in bytes).
fn char_at(bytes: &[u8], line: usize, column: usize) -> Option<char> {
    let text = String::from_utf8_lossy(bytes);
    let line_text = text.split('\n').nth(line.checked_sub(1)?)?;
    let start = column.checked_sub(1)?;
    line_text.get(start..)?.chars().next()
}

fn quote_char(c: char) -> String {
    match c {
        '\'' => r"'\''".to_string(),
        '"' => "'\"'".to_string(),
        c if c.is_control() => format!("{:?}", c),
        c => format!("'{c}'"),
    }
}

/// Go's field-name matching: exact first, then case-insensitive (Unicode lowercase).
fn fold_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
        || a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
}

/// Renames the keys of an object to the struct's field names. When two keys land on the same
/// field the exact-case one wins; keys matching no field are kept (and ignored by serde).
fn rename_keys(map: Map<String, Value>, fields: &'static [&'static str]) -> Map<String, Value> {
    let mut exact = Map::new();
    let mut folded = Vec::new();
    for (k, v) in map {
        if fields.contains(&k.as_str()) {
            exact.insert(k, v);
        } else {
            folded.push((k, v));
        }
    }
    for (k, v) in folded {
        match fields.iter().find(|f| fold_eq(f, &k)) {
            Some(f) if !exact.contains_key(*f) => {
                exact.insert((*f).to_string(), v);
            }
            Some(_) => {}
            None => {
                exact.insert(k, v);
            }
        }
    }
    exact
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's name for what serde expected ("u64" → "uint64").
fn go_type(expected: &str) -> String {
    let t = match expected {
        "u8" => "uint8",
        "u16" => "uint16",
        "u32" => "uint32",
        "u64" => "uint64",
        "i8" => "int8",
        "i16" => "int16",
        "i32" => "int32",
        "i64" => "int64",
        "f32" => "float32",
        "f64" => "float64",
        "a string" | "a borrowed string" | "a character" => "string",
        "a boolean" => "bool",
        "a sequence" => "[]",
        "a map" => "map",
        other => return other.strip_prefix("struct ").unwrap_or(other).to_string(),
    };
    t.to_string()
}

/// Adds the field path to an error raised by a leaf value.
fn annotate(err: serde_json::Error, got: &'static str, path: &str) -> serde_json::Error {
    let msg = err.to_string();
    if path.is_empty() {
        return err;
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        return serde_json::Error::custom(format!(
            "json: cannot unmarshal {got} into Go struct field {path} of type {}",
            go_type(expected)
        ));
    }
    serde_json::Error::custom(format!("{msg} (field {path})"))
}

/// A [`Value`] deserialized with Go's case-insensitive field matching.
pub struct CiDeserializer {
    value: Value,
    /// `ServiceSpec.TaskTemplate.ContainerSpec`: the struct path for error messages.
    path: String,
}

impl CiDeserializer {
    pub fn new(value: Value) -> Self {
        CiDeserializer {
            value,
            path: String::new(),
        }
    }

    fn type_error(&self, expected: &str) -> serde_json::Error {
        let got = json_kind(&self.value);
        if self.path.is_empty() {
            serde_json::Error::custom(format!(
                "json: cannot unmarshal {got} into Go value of type {}",
                go_type(expected)
            ))
        } else {
            serde_json::Error::custom(format!(
                "json: cannot unmarshal {got} into Go struct field {} of type {}",
                self.path,
                go_type(expected)
            ))
        }
    }
}

macro_rules! forward_leaf {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                let got = json_kind(&self.value);
                let path = self.path;
                self.value.$method(visitor).map_err(|e| annotate(e, got, &path))
            }
        )*
    };
}

impl<'de> Deserializer<'de> for CiDeserializer {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Object(map) => visitor.visit_map(CiMap::new(map, self.path, false)),
            Value::Array(items) => visitor.visit_seq(CiSeq::new(items, self.path)),
            other => {
                let got = json_kind(&other);
                other
                    .deserialize_any(visitor)
                    .map_err(|e| annotate(e, got, &self.path))
            }
        }
    }

    forward_leaf!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_identifier,
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Array(items) => visitor.visit_seq(CiSeq::new(items, self.path)),
            // Go decodes `null` into a slice as nil; serde's visitors have no "nil", so an
            // empty sequence is the closest.
            Value::Null => visitor.visit_seq(CiSeq::new(Vec::new(), self.path)),
            _ => Err(self.type_error("a sequence")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Object(map) => visitor.visit_map(CiMap::new(map, self.path, false)),
            Value::Null => visitor.visit_map(CiMap::new(Map::new(), self.path, false)),
            _ => Err(self.type_error("a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            self.path.clone()
        };
        match self.value {
            Value::Object(map) => {
                visitor.visit_map(CiMap::new(rename_keys(map, fields), path, true))
            }
            Value::Null => visitor.visit_map(CiMap::new(Map::new(), path, true)),
            _ => Err(self.type_error(&format!("struct {name}"))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let path = self.path;
        match self.value {
            Value::String(s) => {
                let de: de::value::StringDeserializer<serde_json::Error> = s.into_deserializer();
                visitor
                    .visit_enum(de)
                    .map_err(|e| annotate(e, "string", &path))
            }
            Value::Object(map) if map.len() == 1 => {
                let Some((variant, value)) = map.into_iter().next() else {
                    return Err(serde_json::Error::custom("empty enum object"));
                };
                visitor.visit_enum(CiEnum {
                    variant,
                    value,
                    path,
                })
            }
            other => Err(CiDeserializer { value: other, path }.type_error(name)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }
}

/// Entries of an object; values are wrapped so nested structs match case-insensitively too.
struct CiMap {
    iter: serde_json::map::IntoIter,
    pending: Option<(String, Value)>,
    path: String,
    /// Struct fields extend the error path; map entries do not (as in Go's messages).
    is_struct: bool,
}

impl CiMap {
    fn new(map: Map<String, Value>, path: String, is_struct: bool) -> Self {
        CiMap {
            iter: map.into_iter(),
            pending: None,
            path,
            is_struct,
        }
    }
}

impl<'de> MapAccess<'de> for CiMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            None => Ok(None),
            Some((k, v)) => {
                let key = seed.deserialize(
                    IntoDeserializer::<serde_json::Error>::into_deserializer(k.as_str()),
                )?;
                self.pending = Some((k, v));
                Ok(Some(key))
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let Some((k, v)) = self.pending.take() else {
            return Err(serde_json::Error::custom("value requested before key"));
        };
        let path = if self.is_struct {
            format!("{}.{}", self.path, k)
        } else {
            self.path.clone()
        };
        seed.deserialize(CiDeserializer { value: v, path })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct CiSeq {
    iter: std::vec::IntoIter<Value>,
    path: String,
}

impl CiSeq {
    fn new(items: Vec<Value>, path: String) -> Self {
        CiSeq {
            iter: items.into_iter(),
            path,
        }
    }
}

impl<'de> SeqAccess<'de> for CiSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        match self.iter.next() {
            None => Ok(None),
            Some(value) => seed
                .deserialize(CiDeserializer {
                    value,
                    path: self.path.clone(),
                })
                .map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// `{"Variant": value}` enums (externally tagged). bollard-stubs' enums are plain strings;
/// this keeps the wrapper total.
struct CiEnum {
    variant: String,
    value: Value,
    path: String,
}

impl<'de> EnumAccess<'de> for CiEnum {
    type Error = serde_json::Error;
    type Variant = CiDeserializer;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let variant = seed.deserialize(
            IntoDeserializer::<serde_json::Error>::into_deserializer(self.variant.as_str()),
        )?;
        Ok((
            variant,
            CiDeserializer {
                value: self.value,
                path: self.path,
            },
        ))
    }
}

impl<'de> VariantAccess<'de> for CiDeserializer {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        match self.value {
            Value::Null => Ok(()),
            _ => Err(self.type_error("unit")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

/// Docker's `CheckForJSON`: a body must be `application/json` (parameters allowed). A body
/// without any Content-Type is accepted too, which the daemon refuses, because scripts
/// using plain HTTP clients often omit it and nothing is ambiguous about JSON here.
pub fn check_content_type(content_type: Option<&str>, body_empty: bool) -> Result<(), ApiError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    if ct.is_empty() && body_empty {
        return Ok(());
    }
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.is_empty() {
        return Err(ApiError::bad_request(format!(
            "malformed Content-Type header ({ct}): mime: no media type"
        )));
    }
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    Ok(())
}

/// Reads a whole request body, refusing more than [`MAX_BODY_BYTES`].
pub async fn read_body(body: axum::body::Body) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is too large (limit is {MAX_BODY_BYTES} bytes)"),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

/// Extractor: a JSON body decoded with [`decode_json`].
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let bytes = read_body(req.into_body()).await?;
        check_content_type(content_type.as_deref(), bytes.is_empty())?;
        Ok(JsonBody(decode_json(&bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::models::{
        EndpointSpecModeEnum, NodeSpec, NodeSpecRoleEnum, SwarmInitRequest,
        TaskSpecRestartPolicyConditionEnum,
    };

    #[test]
    fn service_spec_with_lowercase_keys() {
        let body = br#"{
            "name": "web",
            "labels": {"Keep": "Case"},
            "taskTemplate": {
                "containerSpec": {"image": "busybox", "args": ["sleep", "1"], "tty": true},
                "restartPolicy": {"condition": "on-failure", "maxAttempts": 3},
                "forceupdate": 2
            },
            "MODE": {"replicated": {"replicas": 3}},
            "endpointSpec": {"mode": "dnsrr", "ports": [{"targetPort": 80, "publishedPort": 8080}]},
            "unknownField": {"whatever": 1}
        }"#;
        let spec = decode_service_spec(body).unwrap();
        assert_eq!(spec.name.as_deref(), Some("web"));
        // Map keys are data, not field names: they keep their case.
        assert_eq!(
            spec.labels
                .as_ref()
                .and_then(|l| l.get("Keep"))
                .map(String::as_str),
            Some("Case")
        );
        let tt = spec.task_template.unwrap();
        let cs = tt.container_spec.unwrap();
        assert_eq!(cs.image.as_deref(), Some("busybox"));
        assert_eq!(cs.args, Some(vec!["sleep".to_string(), "1".to_string()]));
        assert_eq!(cs.tty, Some(true));
        assert_eq!(tt.force_update, Some(2));
        let rp = tt.restart_policy.unwrap();
        assert_eq!(
            rp.condition,
            Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE)
        );
        assert_eq!(rp.max_attempts, Some(3));
        assert_eq!(spec.mode.unwrap().replicated.unwrap().replicas, Some(3));
        let ep = spec.endpoint_spec.unwrap();
        assert_eq!(ep.mode, Some(EndpointSpecModeEnum::DNSRR));
        let port = &ep.ports.unwrap()[0];
        assert_eq!(port.target_port, Some(80));
        assert_eq!(port.published_port, Some(8080));
    }

    #[test]
    fn exact_case_wins_over_folded_duplicate() {
        let spec = decode_service_spec(br#"{"name":"lower","Name":"exact"}"#).unwrap();
        assert_eq!(spec.name.as_deref(), Some("exact"));
    }

    #[test]
    fn empty_body_is_the_zero_value() {
        assert_eq!(decode_service_spec(b"").unwrap(), ServiceSpec::default());
        let e = decode_service_spec(b"  \n").unwrap_err();
        assert_eq!(
            e.message,
            "invalid JSON: got EOF while reading request body"
        );
    }

    #[test]
    fn syntax_errors_read_like_go() {
        let e = decode_service_spec(b"{\"Name\" \"web\"}").unwrap_err();
        assert_eq!(
            e.message,
            "invalid JSON: invalid character '\"' after object key"
        );
        let e = decode_service_spec(b"{\"Name\": x}").unwrap_err();
        assert_eq!(
            e.message,
            "invalid JSON: invalid character 'x' looking for beginning of value"
        );
        let e = decode_service_spec(b"{\"Name\": \"web\"").unwrap_err();
        assert_eq!(e.message, "invalid JSON: unexpected EOF");
        let e = decode_service_spec(b"{} {}").unwrap_err();
        assert_eq!(e.message, "unexpected content after JSON");
    }

    #[test]
    fn type_errors_name_the_field() {
        let e =
            decode_service_spec(br#"{"Mode":{"Replicated":{"Replicas":"three"}}}"#).unwrap_err();
        assert_eq!(
            e.message,
            "invalid JSON: json: cannot unmarshal string into Go struct field ServiceSpec.Mode.Replicated.Replicas of type int64"
        );
        let e =
            decode_service_spec(br#"{"taskTemplate":{"containerSpec":{"args":"x"}}}"#).unwrap_err();
        assert!(
            e.message
                .contains("Go struct field ServiceSpec.TaskTemplate.ContainerSpec.Args"),
            "{}",
            e.message
        );
        let e = decode_service_spec(b"[1]").unwrap_err();
        assert!(
            e.message.contains("cannot unmarshal array"),
            "{}",
            e.message
        );
    }

    #[test]
    fn nulls_are_absent() {
        let spec =
            decode_service_spec(br#"{"Name":null,"Labels":null,"TaskTemplate":{"Networks":null}}"#)
                .unwrap();
        assert_eq!(spec.name, None);
        assert_eq!(spec.labels, None);
    }

    #[test]
    fn other_models_decode_too() {
        let spec: NodeSpec =
            decode_json(br#"{"labels":{"foo":"bar"},"role":"manager","availability":"drain"}"#)
                .unwrap();
        assert_eq!(spec.role, Some(NodeSpecRoleEnum::MANAGER));
        let init: SwarmInitRequest = decode_json(
            br#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"127.0.0.1","DataPathAddr":"","DataPathPort":0,"ForceNewCluster":false,"Spec":{"Labels":null,"Orchestration":{},"Raft":{"ElectionTick":0,"HeartbeatTick":0},"Dispatcher":{},"CAConfig":{},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}},"AutoLockManagers":false,"Availability":"","DefaultAddrPool":[],"SubnetSize":24}"#,
        )
        .unwrap();
        assert_eq!(init.advertise_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(init.subnet_size, Some(24));
    }

    #[test]
    fn never_panics_on_odd_input() {
        let inputs: &[&[u8]] = &[
            b"\xff\xfe",
            b"{\"Name\":\"\\ud800\"}",
            b"{\"TaskTemplate\":[]}",
            b"{\"Mode\":{\"Global\":{\"x\":1}}}",
            b"{\"EndpointSpec\":{\"Mode\":\"bogus\"}}",
            b"{\"Labels\":{\"a\":1}}",
            b"1e999",
            b"\"str\"",
            b"{\"TaskTemplate\":{\"ForceUpdate\":-1}}",
        ];
        for input in inputs {
            let _ = decode_service_spec(input);
        }
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Some("application/json"), false).is_ok());
        assert!(check_content_type(Some("application/json; charset=utf-8"), false).is_ok());
        assert!(check_content_type(None, false).is_ok());
        let e = check_content_type(Some("text/plain"), false).unwrap_err();
        assert_eq!(
            e.message,
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
    }

    /// Every body the docker CLI 28.2 sent in the reference log decodes into its model.
    #[test]
    fn reference_cli_bodies_decode() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/reference/docker-cli-28.2-requests.jsonl"
        );
        let text =
            std::fs::read_to_string(path).expect("the reference request log is in the repository");
        let mut checked = 0;
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let path = entry["path"].as_str().unwrap_or("");
            let body = &entry["body"];
            if body.is_null() {
                continue;
            }
            let bytes = serde_json::to_vec(body).unwrap_or_default();
            let (_, tail) = crate::version::split_version_prefix(path).unwrap_or(("", path));
            let result = if tail == "/services/create"
                || (tail.starts_with("/services/") && tail.ends_with("/update"))
            {
                decode_service_spec(&bytes).map(|_| ())
            } else if tail.starts_with("/nodes/") {
                decode_json::<NodeSpec>(&bytes).map(|_| ())
            } else if tail == "/swarm/init" {
                decode_json::<crate::InitRequest>(&bytes).map(|_| ())
            } else if tail == "/swarm/update" {
                decode_json::<swarmd_types::models::SwarmSpec>(&bytes).map(|_| ())
            } else {
                continue;
            };
            assert!(result.is_ok(), "{tail}: {result:?}");
            checked += 1;
        }
        assert!(checked > 10);
    }
}
