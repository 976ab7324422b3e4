//! The task's on-disk records (`task.json`, `proc.json`, `exit.json`) and what `/proc`
//! says about the recorded process.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::exec::{BoundPort, ExecError};

/// What prepare records about the task (the "container" the process executor presents).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TaskMeta {
    pub(super) task_id: String,
    pub(super) name: String,
    pub(super) image: String,
    pub(super) command: Vec<String>,
    pub(super) labels: HashMap<String, String>,
    pub(super) node_addr: String,
    pub(super) created: f64,
    pub(super) ports: Vec<BoundPort>,
}

/// Identity of a started process; written right after spawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct PidRecord {
    pub(super) pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot): tells the original process
    /// from a later one that reused its pid.
    pub(super) start_time: u64,
    pub(super) started_at: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct ExitRecord {
    /// `None`: the process ended while it was not our child.
    pub(super) code: Option<i64>,
    pub(super) finished_at: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    Code(i64),
    Unknown,
}

pub(super) fn exit_of(r: ExitRecord) -> Exit {
    match r.code {
        Some(c) => Exit::Code(c),
        None => Exit::Unknown,
    }
}

/// State and start time of a process from `/proc/<pid>/stat`.
pub(super) fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 3 is `fields[0]`, so field 22 (starttime) is `fields[19]`.
    let start: u64 = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether the recorded process still runs (not a zombie, same start time).
pub(super) fn is_alive(rec: &PidRecord) -> bool {
    match proc_stat(rec.pid) {
        Some((state, start)) => start == rec.start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let data = fs::read(path).ok()?;
    match serde_json::from_slice(&data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable record");
            None
        }
    }
}

/// Writes a record atomically (temp file + rename), so a crash never leaves half a record.
pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ExecError> {
    let data = serde_json::to_vec(value).map_err(|e| ExecError::io("encoding record", e))?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(|e| ExecError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| ExecError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn stat_parsing_of_self() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).expect("own stat");
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
        assert!(is_alive(&PidRecord {
            pid: me,
            start_time: start,
            started_at: 0.0
        }));
        assert!(!is_alive(&PidRecord {
            pid: me,
            start_time: start + 1,
            started_at: 0.0
        }));
    }
}
