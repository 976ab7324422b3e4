//! A store for reconciler unit tests: one in-memory replica written without consensus.

use std::sync::Arc;

use swarmd_store::{LocalProposer, MemoryStore, ProposeError, Store};
use swarmd_types::Object;

/// An in-memory store holding `objects` (created in one entry).
pub async fn store_with(objects: Vec<Object>) -> Store {
    let mem = Arc::new(MemoryStore::new());
    let store = Store::new(mem.clone(), Arc::new(LocalProposer::new(mem)));
    if !objects.is_empty() {
        store
            .update(|_, tx| {
                for o in &objects {
                    tx.create(o.clone());
                }
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
    }
    store
}
