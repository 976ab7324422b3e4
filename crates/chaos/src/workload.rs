//! The workload: clients calling the Docker API of the managers while faults happen, each
//! operation recorded with its invocation and return times.
//!
//! - **Registers**: `configs` named `chaos-reg-K`, their label `v` the value. A read is
//!   `GET /configs/{name}`; a compare-and-set reads, and if the value is the expected one
//!   updates with `?version=` of that read (see [`crate::check::register`]).
//! - **Set**: secrets with unique names (`chaos-set-C-N`); after the run, every acknowledged
//!   one must be listed.
//!
//! A client keeps one operation in flight. An operation whose outcome is unknown (timeout,
//! connection lost, 5xx) ends that client's identity: it continues as a new client, as
//! Jepsen's processes do, since the old operation may still take effect later.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::check::Operation;
use crate::check::register::{RegisterOp, RegisterOut};

/// How long one API call may take before its outcome counts as unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Registers per run.
pub const REGISTERS: u64 = 3;

/// A recorded register operation, with which register.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRecord {
    pub key: u64,
    /// Which manager (0-based) the client asked.
    pub node: usize,
    pub op: Operation<RegisterOp, RegisterOut>,
}

/// Everything the clients recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub registers: Vec<RegisterRecord>,
    pub set_acknowledged: BTreeSet<String>,
    pub set_unknown: BTreeSet<String>,
    /// Operations that failed for certain (a 4xx other than a refused compare-and-set), by
    /// status and message.
    pub failed: std::collections::BTreeMap<String, u64>,
    /// (invoked, returned) of every acknowledged write, for the unavailability windows.
    pub writes_ok: Vec<(u64, u64)>,
}

impl History {
    pub fn ops(&self) -> usize {
        self.registers.len() + self.set_acknowledged.len() + self.set_unknown.len()
    }
    pub fn acknowledged(&self) -> usize {
        self.registers
            .iter()
            .filter(|r| r.op.returned.is_some())
            .count()
            + self.set_acknowledged.len()
    }
    fn failed_with(&mut self, status: u16, message: &str) {
        *self
            .failed
            .entry(format!("{status} {}", message.trim()))
            .or_default() += 1;
    }

    pub fn unknown(&self) -> usize {
        self.registers
            .iter()
            .filter(|r| r.op.returned.is_none())
            .count()
            + self.set_unknown.len()
    }
}

/// The name of register `k`.
pub fn register_name(k: u64) -> String {
    format!("chaos-reg-{k}")
}

/// The body creating register `k` at value 0.
pub fn register_create(k: u64) -> Value {
    json!({ "Name": register_name(k), "Labels": { "v": "0" }, "Data": "AA==" })
}

/// What one API call came back with.
enum Reply {
    Ok(Value),
    /// Certainly not done (a 4xx): the status and message.
    Refused(u16, String),
    /// Maybe done: timeout, broken connection, 5xx.
    Unknown,
}

fn call(socket: &std::path::Path, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let body = body.map(|b| b.to_string());
    match swarmd_testkit::unix_http(
        socket,
        method,
        path,
        body.as_deref().map(str::as_bytes),
        CALL_TIMEOUT,
    ) {
        Ok(r) if r.status < 300 => {
            Reply::Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        }
        Ok(r) if r.status < 500 => Reply::Refused(r.status, r.text()),
        _ => Reply::Unknown,
    }
}

/// A register's value and version as a read saw them.
fn parse_register(v: &Value) -> Option<(u64, u64)> {
    let value = v["Spec"]["Labels"]["v"].as_str()?.parse().ok()?;
    let version = v["Version"]["Index"].as_u64()?;
    Some((value, version))
}

/// Shared state of the clients.
pub struct Clients {
    pub history: Mutex<History>,
    pub stop: AtomicBool,
    start: Instant,
    next_client: std::sync::atomic::AtomicU64,
    next_value: std::sync::atomic::AtomicU64,
}

impl Clients {
    pub fn new() -> Arc<Clients> {
        Arc::new(Clients {
            history: Mutex::new(History::default()),
            stop: AtomicBool::new(false),
            start: Instant::now(),
            next_client: 0.into(),
            next_value: 1.into(),
        })
    }

    /// Nanoseconds since the clients started: the clock of the history and the faults.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn new_client(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, key: u64, node: usize, op: Operation<RegisterOp, RegisterOut>) {
        self.lock().registers.push(RegisterRecord { key, node, op });
    }

    /// One client's loop until `stop`: `sockets` are the managers' API sockets.
    pub fn run(self: &Arc<Self>, seed: u64, sockets: Vec<PathBuf>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut client = self.new_client();
        let mut last_seen = [0u64; REGISTERS as usize];
        let mut created = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let node = rng.random_range(0..sockets.len());
            let socket = &sockets[node];
            let key = rng.random_range(0..REGISTERS);
            let path = format!("/configs/{}", register_name(key));
            let roll = rng.random_range(0..10);
            if roll < 4 {
                // Read.
                let invoked = self.now();
                if let Reply::Ok(v) = call(socket, "GET", &path, None)
                    && let Some((value, _)) = parse_register(&v)
                {
                    last_seen[key as usize] = value;
                    let op = Operation {
                        client,
                        invoked,
                        returned: Some((self.now(), RegisterOut::Value(value))),
                        input: RegisterOp::Read,
                    };
                    self.record(key, node, op);
                }
                // A read that got no answer observed nothing: not recorded.
            } else if roll < 9 {
                // Compare-and-set from the last value this client saw.
                let expected = last_seen[key as usize];
                let new = self.next_value.fetch_add(1, Ordering::Relaxed);
                let input = RegisterOp::Cas { expected, new };
                let invoked = self.now();
                let Reply::Ok(v) = call(socket, "GET", &path, None) else {
                    continue; // nothing sent yet: no operation
                };
                let Some((value, version)) = parse_register(&v) else {
                    continue;
                };
                let id = v["ID"].as_str().unwrap_or_default().to_string();
                let returned = if value != expected {
                    last_seen[key as usize] = value;
                    Some((self.now(), RegisterOut::Refused))
                } else {
                    let spec =
                        json!({ "Name": register_name(key), "Labels": { "v": new.to_string() } });
                    match call(
                        socket,
                        "POST",
                        &format!("/configs/{id}/update?version={version}"),
                        Some(&spec),
                    ) {
                        Reply::Ok(_) => {
                            last_seen[key as usize] = new;
                            let now = self.now();
                            self.lock().writes_ok.push((invoked, now));
                            Some((now, RegisterOut::Ok))
                        }
                        Reply::Refused(409, _) => Some((self.now(), RegisterOut::Refused)),
                        Reply::Refused(status, msg) => {
                            self.lock().failed_with(status, &msg);
                            continue;
                        }
                        Reply::Unknown => None,
                    }
                };
                let unknown = returned.is_none();
                self.record(
                    key,
                    node,
                    Operation {
                        client,
                        invoked,
                        returned,
                        input,
                    },
                );
                if unknown {
                    client = self.new_client();
                }
            } else {
                // Add to the set.
                let name = format!("chaos-set-{seed}-{created}");
                created += 1;
                let body = json!({ "Name": name, "Data": "AA==" });
                let invoked = self.now();
                let reply = call(socket, "POST", "/secrets/create", Some(&body));
                let now = self.now();
                let mut h = self.lock();
                match reply {
                    Reply::Ok(_) => {
                        h.set_acknowledged.insert(name);
                        h.writes_ok.push((invoked, now));
                    }
                    Reply::Refused(status, msg) => h.failed_with(status, &msg),
                    Reply::Unknown => {
                        h.set_unknown.insert(name);
                    }
                }
            }
        }
    }
}
