//! Every JSON body the API decodes besides service specs (`service_spec` has those): swarm
//! init/join/update/unlock, node update, secret and config create/update, network create.
//! The first byte picks the body type, the rest is the body. Decoding with Go's rules
//! (`decode_json`) and serializing the result back must not panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use swarmd_engine_api::decode_json;
use swarmd_types::models;

fn check<T: DeserializeOwned + Default + Serialize>(body: &[u8]) {
    if let Ok(v) = decode_json::<T>(body) {
        let out = serde_json::to_vec(&v).expect("a decoded body serializes");
        // What we would store or answer decodes again.
        let _ = decode_json::<T>(&out);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 8 {
        0 => check::<models::SwarmInitRequest>(body),
        1 => check::<models::SwarmJoinRequest>(body),
        2 => check::<models::SwarmSpec>(body),
        3 => check::<models::SwarmUnlockRequest>(body),
        4 => check::<models::NodeSpec>(body),
        5 => check::<models::SecretSpec>(body),
        6 => check::<models::ConfigSpec>(body),
        _ => check::<models::NetworkCreateRequest>(body),
    }
});
