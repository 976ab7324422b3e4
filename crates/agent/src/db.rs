//! The agent's local task database (redb).
//!
//! It remembers which tasks this node holds and their last reported status, so a restarted
//! agent (a) starts runners for them at once and re-adopts their containers/processes
//! instead of killing them, and (b) never reports a state lower than one it already
//! reported. redb is synchronous: every call runs on the blocking pool.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use swarmd_types::Task;

use crate::AgentError;

/// Task ID → JSON of the `Task` as last known, with `status` = our last reported status.
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub(crate) struct TaskDb {
    db: Arc<Database>,
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
    /// Opens (or creates) the database file.
    pub(crate) async fn open(path: &Path) -> Result<Self, AgentError> {
        let path = path.to_path_buf();
        blocking(move || {
            let db = Database::create(&path)
                .map_err(|e| AgentError::State(format!("opening {}: {e}", path.display())))?;
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(TASKS).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(TaskDb { db: Arc::new(db) })
        })
        .await
    }

    /// All stored tasks. Entries that do not decode are skipped (and logged), never fatal.
    pub(crate) async fn load(&self) -> Result<Vec<Task>, AgentError> {
        let db = self.db.clone();
        blocking(move || {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(TASKS).map_err(db_err)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                match serde_json::from_slice::<Task>(v.value()) {
                    Ok(t) => out.push(t),
                    Err(e) => {
                        tracing::warn!(task.id = k.value(), error = %e, "skipping undecodable task record")
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
        blocking(move || {
            let tx = db.begin_write().map_err(db_err)?;
            {
                let mut table = tx.open_table(TASKS).map_err(db_err)?;
                for t in &tasks {
                    let v = serde_json::to_vec(t).map_err(db_err)?;
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
        let db = TaskDb::open(&path).await.unwrap();
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
        let db = TaskDb::open(&path).await.unwrap();
        assert_eq!(db.load().await.unwrap(), vec![t]);
    }
}
