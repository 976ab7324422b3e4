//! The `filters=` query parameter, in both the modern `{"k":{"v":true}}` and the legacy
//! `{"k":["v"]}` form. Parsing and the helpers the handlers call on the result must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filters) = swarmd_engine_api::parse_filters(raw) else {
        return;
    };
    // What handlers do next with a parsed filter set.
    let _ = filters.validate(&["id", "name", "label", "mode", "node", "service"]);
    for key in ["id", "name", "label", "node.label", "desired-state"] {
        let _ = filters.get(key);
        let _ = filters.exact_match(key, "web");
        let _ = filters.matches_any(key, "web");
        let _ = filters.matches_prefix(key, "web");
        let labels = filters.label_map(key);
        let _ = swarmd_engine_api::filters::match_labels(&labels, &labels);
    }
});
