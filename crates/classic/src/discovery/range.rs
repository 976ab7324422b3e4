//! Classic's address ranges: `10.0.0.[10:20]:2375` stands for eleven engines.
//!
//! Classic matched the regex `\[(.+):(.+)\]` (greedy, leftmost) and, when both bounds were
//! integers, printed every value from `from` to `to` inclusive in their place. Anything else
//! (an IPv6 `[::1]`, two ranges, a non-number) was left as one literal entry, and `from > to`
//! gave no entries at all. We keep all of that.

/// Largest expansion we accept: classic had no cap, but `[0:999999999]` would allocate a
/// billion strings; a /16 is more engines than any classic cluster ran.
pub const MAX_RANGE_ENTRIES: usize = 65_536;

/// A range wider than [`MAX_RANGE_ENTRIES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "range in {pattern:?} expands to {count} entries, more than the {MAX_RANGE_ENTRIES} allowed"
)]
pub struct RangeTooLarge {
    pub pattern: String,
    pub count: u128,
}

/// Expands the (single) `[from:to]` range in `pattern`, or returns `pattern` itself.
pub fn expand_range(pattern: &str) -> Result<Vec<String>, RangeTooLarge> {
    let Some((prefix, from, to, suffix)) = find_range(pattern) else {
        return Ok(vec![pattern.to_owned()]);
    };
    // Go's strconv.Atoi: optional sign, decimal digits, no spaces.
    let (Ok(from), Ok(to)) = (from.parse::<i64>(), to.parse::<i64>()) else {
        return Ok(vec![pattern.to_owned()]);
    };
    if from > to {
        return Ok(Vec::new());
    }
    let count = (i128::from(to) - i128::from(from) + 1) as u128;
    if count > MAX_RANGE_ENTRIES as u128 {
        return Err(RangeTooLarge {
            pattern: pattern.to_owned(),
            count,
        });
    }
    Ok((from..=to)
        .map(|v| format!("{prefix}{v}{suffix}"))
        .collect())
}

/// The leftmost-first match of `\[(.+):(.+)\]`: from the first `[` that can start a match,
/// group 1 runs to the last `:` that still leaves a non-empty group 2 before the last `]`.
fn find_range(pattern: &str) -> Option<(&str, &str, &str, &str)> {
    let close = pattern.rfind(']')?;
    for (open, _) in pattern.match_indices('[') {
        if open >= close {
            break;
        }
        let inner = &pattern[open + 1..close];
        // Last ':' with at least one char on each side.
        let colon = inner
            .char_indices()
            .rev()
            .find(|&(i, c)| c == ':' && i > 0 && i + 1 < inner.len())
            .map(|(i, _)| i);
        if let Some(c) = colon {
            return Some((
                &pattern[..open],
                &inner[..c],
                &inner[c + 1..],
                &pattern[close + 1..],
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_inclusive_range() {
        assert_eq!(
            expand_range("10.0.0.[10:12]:2375").unwrap(),
            ["10.0.0.10:2375", "10.0.0.11:2375", "10.0.0.12:2375"]
        );
    }

    #[test]
    fn range_in_the_port() {
        assert_eq!(
            expand_range("node:[2375:2376]").unwrap(),
            ["node:2375", "node:2376"]
        );
    }

    #[test]
    fn no_range_is_one_literal_entry() {
        assert_eq!(expand_range("10.0.0.1:2375").unwrap(), ["10.0.0.1:2375"]);
    }

    #[test]
    fn ipv6_brackets_are_not_a_range() {
        assert_eq!(expand_range("[::1]:2375").unwrap(), ["[::1]:2375"]);
        assert_eq!(expand_range("[fe80::1]:2375").unwrap(), ["[fe80::1]:2375"]);
    }

    #[test]
    fn non_numeric_bounds_stay_literal() {
        assert_eq!(expand_range("node[a:b]:1").unwrap(), ["node[a:b]:1"]);
    }

    #[test]
    fn two_ranges_stay_literal_as_in_classic() {
        // Greedy group 1 swallows "1:2].[3", which is not a number.
        assert_eq!(
            expand_range("10.[1:2].[3:4]:1").unwrap(),
            ["10.[1:2].[3:4]:1"]
        );
    }

    #[test]
    fn leading_zeros_are_dropped_like_atoi() {
        assert_eq!(expand_range("n[08:09]:1").unwrap(), ["n8:1", "n9:1"]);
    }

    #[test]
    fn reversed_range_is_empty() {
        assert!(expand_range("10.0.0.[20:10]:2375").unwrap().is_empty());
    }

    #[test]
    fn single_value_range() {
        assert_eq!(expand_range("n[5:5]:1").unwrap(), ["n5:1"]);
    }

    #[test]
    fn huge_range_refused() {
        let err = expand_range("n[0:999999999]:1").unwrap_err();
        assert_eq!(err.count, 1_000_000_000);
        assert!(expand_range("n[1:65536]:1").is_ok());
        assert!(expand_range("n[0:65536]:1").is_err());
    }
}
