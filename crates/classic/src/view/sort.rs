//! Classic's engine order in `docker info`: natural sort of names (`node-2` before
//! `node-10`), as its `EngineSorter` does.

use std::cmp::Ordering;

/// Compares runs of digits by value and everything else character by character.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (ca, ra) = chunk(a);
        let (cb, rb) = chunk(b);
        let ord = match (numeric(ca), numeric(cb)) {
            (true, true) => {
                let (ta, tb) = (ca.trim_start_matches('0'), cb.trim_start_matches('0'));
                ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
            }
            _ => ca.cmp(cb),
        };
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (ra, rb);
    }
}

fn numeric(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
}

/// The leading run of digits or of non-digits, and the rest.
fn chunk(s: &str) -> (&str, &str) {
    let digits = numeric(s);
    let end = s
        .find(|c: char| c.is_ascii_digit() != digits)
        .unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let mut v = vec!["node-10", "node-2", "node-1", "alpha", "node-02x"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["alpha", "node-1", "node-2", "node-02x", "node-10"]);
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
        assert_eq!(natural_cmp("a1", "a1"), Ordering::Equal);
    }
}
