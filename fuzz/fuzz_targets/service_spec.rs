//! `POST /services/create` bodies: the case-insensitive JSON decoder, then validation.
//! Neither may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = swarmd_engine_api::decode_service_spec(data) {
        let _ = swarmd_manager::control::validate_service_spec(spec);
    }
});
