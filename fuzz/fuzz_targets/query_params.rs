//! Query strings and the parameters swarmd parses itself: `QueryParams` (form decoding),
//! then the logs options (`since`/`until` timestamps, `tail`, booleans), object `version`s and
//! a bare timestamp. None may panic; issue 18 item 7 was `since=1e300` panicking a
//! connection task once the value reached a `Duration`. A timestamp that parses must print
//! back to itself, and its seconds must convert to a `SystemTime` bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmd_engine_api::logs::parse_log_options;
use swarmd_engine_api::query::QueryParams;
use swarmd_engine_api::timestamp::parse_unix_timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let q = QueryParams::parse(raw);
    let _ = q.bool("force");
    let _ = q.object_version("service");
    if let Ok(opts) = parse_log_options(&q) {
        for t in [opts.since, opts.until].into_iter().flatten() {
            assert!(!t.is_nan(), "{raw:?}");
            let _ = swarmd_types::timefmt::since_bound(t);
        }
    }
    // The raw input as one timestamp value.
    if let Ok(Some(t)) = parse_unix_timestamp(raw) {
        let again = parse_unix_timestamp(&format!("{}.{:09}", t.secs, t.nanos))
            .expect("a printed timestamp parses")
            .expect("non-empty");
        assert_eq!(again, t, "{raw:?}");
        assert!(t.nanos < 1_000_000_000);
        let _ = swarmd_types::timefmt::since_bound(t.as_f64());
    }
});
