//! The Raft write path with encryption at rest: what one proposal costs end to end (append
//! sealed and fsynced, commit, apply) on a one-manager cluster, and what sealing one record
//! costs on its own (XChaCha20-Poly1305, the part encryption adds to each log write).
//!
//! `cargo bench -p swarmd-raft --bench write_path`. The proposal carries a ~1 KiB service
//! (a typical `service create`); the seal is measured at 1 KiB and 64 KiB.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use swarmd_raft::{DataKey, RaftConfig, RaftNode};
use swarmd_store::{Batch, MemoryStore, Proposer, StoreAction};

fn config(dir: &std::path::Path) -> RaftConfig {
    RaftConfig::new(dir, DataKey::generate(), 1, "127.0.0.1:2377")
}

fn service(i: u64) -> swarmd_types::Service {
    let mut s = swarmd_types::Service {
        id: format!("svc{i:022}"),
        ..Default::default()
    };
    s.spec.name = Some(format!("web-{i}"));
    s.spec.labels = Some([("filler".to_string(), "x".repeat(900))].into());
    s
}

fn propose(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = rt.block_on(async {
        let node = RaftNode::open(config(dir.path()), Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        node.initialize_single().await.unwrap();
        node.wait_for_leader(std::time::Duration::from_secs(10))
            .await
            .unwrap();
        node
    });
    let node = Arc::new(node);
    let mut i = 0u64;
    c.bench_function("raft_propose_1KiB_service", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let node = node.clone();
            let batch = Batch {
                actions: vec![StoreAction::Create(service(i).into())],
                proposed_at: "2024-01-01T00:00:00Z".into(),
            };
            async move { node.propose(batch).await.unwrap() }
        })
    });
    rt.block_on(node.shutdown());
}

fn seal(c: &mut Criterion) {
    let key = DataKey::generate();
    let mut g = c.benchmark_group("seal_record");
    for size in [1024usize, 64 * 1024] {
        let data = vec![0x5a; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| key.seal(b"swarmd/raft_log/00000001", d))
        });
    }
    g.finish();
}

criterion_group!(benches, propose, seal);
criterion_main!(benches);
