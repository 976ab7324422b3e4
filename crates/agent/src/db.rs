//! The agent's local task database (redb).
//!
//! It remembers which tasks this node holds and their last reported status, so a restarted
//! agent (a) starts runners for them at once and re-adopts their containers/processes
//! instead of killing them, and (b) never reports a state lower than one it already
//! reported. redb is synchronous: every call runs on the blocking pool.
//!
//! Every record is sealed with the node's data key (XChaCha20-Poly1305, associated data
//! naming the task ID, see [`swarmd_crypto`]): task records carry the names of the secrets and
//! configs a task uses and its environment, none of which may sit on disk in plaintext. A
//! record that fails authentication (altered, moved to another task's key, a wrong key, or a
//! plaintext record from before encryption at rest) is never used: it is logged and skipped,
//! like an undecodable one, and the manager's next assignment set brings the task back.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use swarmd_crypto::DataKey;
use swarmd_types::Task;

use crate::AgentError;

/// Task ID → sealed JSON of the `Task` as last known, with `status` = our last reported
/// status.
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub(crate) struct TaskDb {
    db: Arc<Database>,
    key: DataKey,
}

/// The associated data of a task's record: its table and key.
fn aad(task_id: &str) -> Vec<u8> {
    let mut out = b"swarmd/agent_tasks/".to_vec();
    out.extend_from_slice(task_id.as_bytes());
    out
}

/// Seals a task as the record stored under its ID.
fn seal_task(key: &DataKey, task: &Task) -> Result<Vec<u8>, AgentError> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(task).map_err(db_err)?);
    Ok(key.seal(&aad(&task.id), &json))
}

/// Opens the record stored under `id`: authentic, decodable and about that task, or an error.
fn open_task(key: &DataKey, id: &str, record: &[u8]) -> Result<Task, String> {
    let json = zeroize::Zeroizing::new(key.open(&aad(id), record).map_err(|e| e.to_string())?);
    let task: Task = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    if task.id != id {
        return Err(format!("record claims task {}", task.id));
    }
    Ok(task)
}

fn db_err(e: impl std::fmt::Display) -> AgentError {
    AgentError::State(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::State(format!("database task failed: {e}")))?
}

impl TaskDb {
    /// Opens (or creates) the database file; records are sealed with `key`.
    pub(crate) async fn open(path: &Path, key: DataKey) -> Result<Self, AgentError> {
        let path = path.to_path_buf();
        blocking(move || {
            let db = Database::create(&path)
                .map_err(|e| AgentError::State(format!("opening {}: {e}", path.display())))?;
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(TASKS).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(TaskDb {
                db: Arc::new(db),
                key,
            })
        })
        .await
    }

    /// All stored tasks. Entries that fail authentication or do not decode are skipped (and
    /// logged), never fatal and never used.
    pub(crate) async fn load(&self) -> Result<Vec<Task>, AgentError> {
        let db = self.db.clone();
        let key = self.key.clone();
        blocking(move || {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(TASKS).map_err(db_err)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                match open_task(&key, k.value(), v.value()) {
                    Ok(t) => out.push(t),
                    Err(e) => {
                        tracing::warn!(task.id = k.value(), error = %e, "skipping unreadable task record")
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Stores (replaces) tasks, in one transaction.
    pub(crate) async fn put(&self, tasks: Vec<Task>) -> Result<(), AgentError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let key = self.key.clone();
        blocking(move || {
            let tx = db.begin_write().map_err(db_err)?;
            {
                let mut table = tx.open_table(TASKS).map_err(db_err)?;
                for t in &tasks {
                    let v = seal_task(&key, t)?;
                    table.insert(t.id.as_str(), v.as_slice()).map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    /// Forgets tasks, in one transaction.
    pub(crate) async fn delete(&self, ids: Vec<String>) -> Result<(), AgentError> {
        if ids.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        blocking(move || {
            let tx = db.begin_write().map_err(db_err)?;
            {
                let mut table = tx.open_table(TASKS).map_err(db_err)?;
                for id in &ids {
                    table.remove(id.as_str()).map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let key = DataKey::generate();
        let db = TaskDb::open(&path, key.clone()).await.unwrap();
        let t = Task {
            id: "t1".into(),
            service_name: "web".into(),
            ..Default::default()
        };
        db.put(vec![t.clone()]).await.unwrap();
        db.put(vec![Task {
            id: "t2".into(),
            ..Default::default()
        }])
        .await
        .unwrap();
        db.delete(vec!["t2".into()]).await.unwrap();
        drop(db);
        let db = TaskDb::open(&path, key.clone()).await.unwrap();
        assert_eq!(db.load().await.unwrap(), vec![t]);
        drop(db);
        let file = std::fs::read(&path).unwrap();
        assert!(!file.windows(3).any(|w| w == b"web"), "plaintext on disk");
        // Another key reads nothing (and fails no call).
        let db = TaskDb::open(&path, DataKey::generate()).await.unwrap();
        assert_eq!(db.load().await.unwrap(), vec![]);
    }

    #[test]
    fn tampered_swapped_or_plaintext_records_are_refused() {
        let key = DataKey::generate();
        let t = Task {
            id: "t1".into(),
            ..Default::default()
        };
        let rec = seal_task(&key, &t).unwrap();
        assert_eq!(open_task(&key, "t1", &rec).unwrap(), t);
        let mut bad = rec.clone();
        bad[30] ^= 4;
        assert!(open_task(&key, "t1", &bad).is_err());
        assert!(
            open_task(&key, "t2", &rec).is_err(),
            "moved to another task"
        );
        assert!(open_task(&key, "t1", &rec[..rec.len() - 1]).is_err());
        let plain = serde_json::to_vec(&t).unwrap();
        assert!(open_task(&key, "t1", &plain).is_err());
    }
}
