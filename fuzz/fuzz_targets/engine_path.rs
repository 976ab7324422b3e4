//! The engine URLs swarmd builds itself ([`swarmd_engine_api::engine_path`]): any path
//! segments and query pairs, whatever bytes they hold, make a valid request target (one
//! `http::Uri` accepts) from which the same segments and pairs come back. Issue 18 item 2: a
//! network named `test 01` made the old `format!("/networks/{name}")` fail to parse.
//!
//! Input: NUL-separated fields; the first `1 + data[0] % 4` are path segments, the rest
//! alternate query keys and values, then a last field is appended as a raw query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmd_engine_api::engine_path::{EnginePath, unescape_segment};
use swarmd_engine_api::query::QueryParams;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let fields: Vec<&str> = text.split('\0').collect();
    let n_segs = (1 + n as usize % 4).min(fields.len());
    let (segs, query) = fields.split_at(n_segs);
    // An empty segment names nothing (the API never routes one to a handler), and a leading
    // `//` would read as an authority.
    if segs.iter().any(|s| s.is_empty()) {
        return;
    }
    let pairs: Vec<(&str, &str)> = query
        .chunks_exact(2)
        .map(|kv| (kv[0], kv[1]))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    let mut p = EnginePath::new(segs.iter().copied());
    for (k, v) in &pairs {
        p = p.query(k, v);
    }
    let raw = if query.len() % 2 == 1 {
        query[query.len() - 1]
    } else {
        ""
    };
    let built = p.clone().raw_query(raw).build();
    let uri: axum::http::Uri = match built.parse() {
        Ok(u) => u,
        Err(e) => panic!("{built:?} is not a valid URI: {e}"),
    };
    // The path: exactly the segments, each decoding to what went in.
    let got: Vec<Vec<u8>> = uri
        .path()
        .strip_prefix('/')
        .expect("absolute path")
        .split('/')
        .map(unescape_segment)
        .collect();
    let want: Vec<Vec<u8>> = segs.iter().map(|s| s.as_bytes().to_vec()).collect();
    assert_eq!(got, want, "{built:?}");
    // The query: our pairs come back first and unchanged, as the engine would read them.
    let q = QueryParams::parse(uri.query().unwrap_or(""));
    assert!(q.0.len() >= pairs.len(), "{built:?}");
    for (i, (k, v)) in pairs.iter().enumerate() {
        assert_eq!((q.0[i].0.as_str(), q.0[i].1.as_str()), (*k, *v), "{built:?}");
    }
});
