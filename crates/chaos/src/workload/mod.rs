//! The workload: clients calling the Docker API of the managers while faults happen, each
//! operation recorded with its invocation and return times.
//!
//! - **Registers** ([`registers`]): configs `chaos-reg-K` and services `chaos-svc-K`, their
//!   label `v` the value. A read is `GET /configs/{name}` (or `/services/`); a
//!   compare-and-set reads, and if the value is the expected one updates with `?version=`
//!   of that read (see [`crate::check::register`]). Each (kind, key) is its own register.
//! - **Set**: secrets with unique names (`chaos-set-C-N`); after the run, every acknowledged
//!   one must be listed.
//! - **Tasks** ([`tasks`], with workers): services of real tasks scaled and updated now and
//!   then, and an observer recording nodes and tasks listings for [`crate::check::tasks`].
//!
//! A client keeps one operation in flight. An operation whose outcome is unknown (timeout,
//! connection lost, 5xx) ends that client's identity: it continues as a new client, as
//! Jepsen's processes do, since the old operation may still take effect later.

pub mod registers;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::check::Operation;
use crate::check::register::{RegisterOp, RegisterOut};
use crate::check::tasks::{Observation, Order};
use crate::lab::Lab;
use registers::{Kind, REGISTERS, RegisterId, parse_register};

/// How long one API call may take before its outcome counts as unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A recorded register operation, with which register.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRecord {
    pub register: RegisterId,
    /// Which manager (0-based) the client asked.
    pub node: usize,
    pub op: Operation<RegisterOp, RegisterOut>,
}

/// What the task observer saw, for [`crate::check::tasks`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TaskHistory {
    /// The task services' update orders, by service ID.
    pub orders: BTreeMap<String, Order>,
    /// Nodes and tasks listings in the order they were read.
    pub observations: Vec<Observation>,
    /// Scales and forced updates the driver had acknowledged.
    pub changes: u64,
}

/// Everything the clients recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub registers: Vec<RegisterRecord>,
    pub set_acknowledged: BTreeSet<String>,
    pub set_unknown: BTreeSet<String>,
    /// Operations that failed for certain (a 4xx other than a refused compare-and-set), by
    /// status and message.
    pub failed: BTreeMap<String, u64>,
    /// (invoked, returned) of every acknowledged write, for the unavailability windows.
    pub writes_ok: Vec<(u64, u64)>,
    pub tasks: TaskHistory,
}

impl History {
    pub fn ops(&self) -> usize {
        self.registers.len() + self.set_acknowledged.len() + self.set_unknown.len()
    }
    pub fn acknowledged(&self) -> usize {
        self.registers_answered(true) + self.set_acknowledged.len()
    }

    fn registers_answered(&self, answered: bool) -> usize {
        self.registers
            .iter()
            .filter(|r| r.op.returned.is_some() == answered)
            .count()
    }
    fn failed_with(&mut self, status: u16, message: &str) {
        *self
            .failed
            .entry(format!("{status} {}", message.trim()))
            .or_default() += 1;
    }

    pub fn unknown(&self) -> usize {
        self.registers_answered(false) + self.set_unknown.len()
    }
}

/// Creates the registers (every kind at value 0) and, with `workers`, the task services.
pub fn setup(lab: &Lab, workers: bool, history: &Mutex<History>) -> anyhow::Result<()> {
    for kind in Kind::ALL {
        for key in 0..REGISTERS {
            lab.call("POST", &kind.create_path(), Some(kind.create_body(key)))?;
        }
    }
    if workers {
        let orders = tasks::create_services(lab)?;
        lock(history).tasks.orders = orders;
    }
    Ok(())
}

fn lock(history: &Mutex<History>) -> std::sync::MutexGuard<'_, History> {
    history.lock().unwrap_or_else(|e| e.into_inner())
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

/// Shared state of the clients.
pub struct Clients {
    pub history: Mutex<History>,
    pub stop: AtomicBool,
    start: Instant,
    next_client: AtomicU64,
    next_value: AtomicU64,
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
        lock(&self.history)
    }

    fn record(&self, register: RegisterId, node: usize, op: Operation<RegisterOp, RegisterOut>) {
        self.lock()
            .registers
            .push(RegisterRecord { register, node, op });
    }

    /// One client's loop until `stop`: `sockets` are the managers' API sockets.
    pub fn run(self: &Arc<Self>, seed: u64, sockets: Vec<PathBuf>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut client = self.new_client();
        let mut last_seen: BTreeMap<RegisterId, u64> = BTreeMap::new();
        let mut created = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let node = rng.random_range(0..sockets.len());
            let socket = &sockets[node];
            let register = RegisterId {
                kind: Kind::ALL[rng.random_range(0..Kind::ALL.len())],
                key: rng.random_range(0..REGISTERS),
            };
            let path = register.read_path();
            let seen = last_seen.entry(register).or_insert(0);
            let roll = rng.random_range(0..10);
            if roll < 4 {
                // Read.
                let invoked = self.now();
                if let Reply::Ok(v) = call(socket, "GET", &path, None)
                    && let Some((value, _)) = parse_register(&v)
                {
                    *seen = value;
                    let op = Operation {
                        client,
                        invoked,
                        returned: Some((self.now(), RegisterOut::Value(value))),
                        input: RegisterOp::Read,
                    };
                    self.record(register, node, op);
                }
                // A read that got no answer observed nothing: not recorded.
            } else if roll < 9 {
                // Compare-and-set from the last value this client saw.
                let expected = *seen;
                let new = self.next_value.fetch_add(1, Ordering::Relaxed);
                let input = RegisterOp::Cas { expected, new };
                let invoked = self.now();
                let Reply::Ok(v) = call(socket, "GET", &path, None) else {
                    continue; // nothing sent yet: no operation
                };
                let Some((value, version)) = parse_register(&v) else {
                    continue;
                };
                let read_returned = self.now();
                let id = v["ID"].as_str().unwrap_or_default().to_string();
                let returned = if value != expected {
                    *seen = value;
                    Some((self.now(), RegisterOut::Refused))
                } else {
                    let body = register.kind.update_body(&v, new);
                    match call(
                        socket,
                        "POST",
                        &register.update_path(&id, version),
                        Some(&body),
                    ) {
                        Reply::Ok(_) => {
                            *seen = new;
                            let now = self.now();
                            self.lock().writes_ok.push((invoked, now));
                            Some((now, RegisterOut::Ok))
                        }
                        Reply::Refused(409, _) if register.kind.refusal_proves_change() => {
                            Some((self.now(), RegisterOut::Refused))
                        }
                        Reply::Refused(409, _) => {
                            // Not applied, for a reason that may not be a new value: what
                            // remains is the read it began with.
                            let op = Operation {
                                client,
                                invoked,
                                returned: Some((read_returned, RegisterOut::Value(value))),
                                input: RegisterOp::Read,
                            };
                            self.record(register, node, op);
                            continue;
                        }
                        Reply::Refused(status, msg) => {
                            self.lock().failed_with(status, &msg);
                            continue;
                        }
                        Reply::Unknown => None,
                    }
                };
                let unknown = returned.is_none();
                self.record(
                    register,
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
