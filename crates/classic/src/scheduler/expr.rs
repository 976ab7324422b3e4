//! Classic's filter expressions: `key==value`, `key!=value`, soft `key==~value`, values
//! that are globs (`ub*`) or regular expressions (`/ubuntu-1[24]/`).

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

/// `==` or `!=`, checked in this order (classic's OPERATORS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::NotEq => "!=",
        }
    }
}

/// One parsed expression. `value` has its soft marker (`~`) stripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub key: String,
    pub op: Op,
    pub value: String,
    /// Soft expressions are dropped when nothing satisfies them.
    pub soft: bool,
}

/// Classic's parse errors, worded as classic words them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("Key '{0}' is invalid")]
    InvalidKey(String),
    #[error("Value '{0}' is invalid")]
    InvalidValue(String),
    #[error("One of operator ==, != is expected")]
    NoOperator,
}

fn key_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // Classic demands at least two characters.
    RE.get_or_init(|| Regex::new(r"^(?i)[a-z_][a-z0-9\-_.]+$").expect("static regex"))
}

fn value_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // A leading `=`, `!` or `/`, then the soft marker, then globs and regex characters.
    RE.get_or_init(|| {
        Regex::new(r"^(?i)[=!/]?(~)?[a-z0-9:\-_\s.*/()?+\[\]\\^$|]+$").expect("static regex")
    })
}

impl Expr {
    /// Parses one expression such as `region==us-east` (without `constraint:`).
    pub fn parse(s: &str) -> Result<Expr, ExprError> {
        for op in [Op::Eq, Op::NotEq] {
            let Some((key, value)) = s.split_once(op.as_str()) else {
                continue;
            };
            if !key_re().is_match(key) {
                return Err(ExprError::InvalidKey(key.to_string()));
            }
            if !value_re().is_match(value) {
                return Err(ExprError::InvalidValue(value.to_string()));
            }
            return Ok(Expr {
                key: key.to_string(),
                op,
                value: value.trim_start_matches('~').to_string(),
                soft: value.starts_with('~'),
            });
        }
        Err(ExprError::NoOperator)
    }

    /// Parses a list, failing on the first bad expression as classic does.
    pub fn parse_all<S: AsRef<str>>(list: &[S]) -> Result<Vec<Expr>, ExprError> {
        list.iter().map(|s| Expr::parse(s.as_ref())).collect()
    }

    /// True when any of `candidates` matches the value (`/re/` unanchored, otherwise a
    /// glob anchored at both ends), inverted for `!=`. A value whose regex does not
    /// compile matches nothing, so `!=` with it holds everywhere, as in classic.
    pub fn matches<S: AsRef<str>>(&self, candidates: &[S]) -> bool {
        let v = &self.value;
        let found = if v.len() >= 2 && v.starts_with('/') && v.ends_with('/') {
            with_regex(&v[1..v.len() - 1], |re| {
                candidates.iter().any(|c| re.is_match(c.as_ref()))
            })
        } else if !v.contains(REGEX_META) {
            // No glob or regex character: the anchored pattern is the value itself.
            candidates.iter().any(|c| c.as_ref() == v)
        } else {
            // Classic only turns `*` into `.*`; other regex characters keep their meaning.
            with_regex(&format!("^{}$", v.replace('*', ".*")), |re| {
                candidates.iter().any(|c| re.is_match(c.as_ref()))
            })
        };
        match self.op {
            Op::Eq => found,
            Op::NotEq => !found,
        }
    }
}

/// Characters that make a value more than a literal.
const REGEX_META: &[char] = &[
    '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '^', '$', '\\',
];

/// Patterns compiled so far on this thread: the filters test every engine against the
/// same few expressions, and compiling one per engine made a placement over 1,000
/// engines take 1,000 compilations. Bounded; a pattern that does not compile is
/// remembered as such (it matches nothing).
const REGEX_CACHE_MAX: usize = 512;

fn with_regex(pattern: &str, f: impl FnOnce(&Regex) -> bool) -> bool {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Option<Regex>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            if cache.len() >= REGEX_CACHE_MAX {
                cache.clear();
            }
            cache.insert(pattern.to_owned(), Regex::new(pattern).ok());
        }
        cache.get(pattern).and_then(Option::as_ref).is_some_and(f)
    })
}

/// `key==value`, the form classic prints in its error messages.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Expr {
        Expr::parse(s).unwrap()
    }

    #[test]
    fn parses_operators_and_soft() {
        assert_eq!(
            e("region==us-east"),
            Expr {
                key: "region".into(),
                op: Op::Eq,
                value: "us-east".into(),
                soft: false
            }
        );
        let x = e("node!=~node1");
        assert_eq!((x.op, x.value.as_str(), x.soft), (Op::NotEq, "node1", true));
        // `==` is tried first; a leading `=` or `!` after it is kept in the value.
        assert_eq!(e("a1===b").value, "=b");
    }

    #[test]
    fn parse_errors_have_classic_wording() {
        assert_eq!(
            Expr::parse("region").unwrap_err().to_string(),
            "One of operator ==, != is expected"
        );
        assert_eq!(
            Expr::parse("r==x").unwrap_err().to_string(),
            "Key 'r' is invalid"
        );
        assert_eq!(
            Expr::parse("1ab==x").unwrap_err().to_string(),
            "Key '1ab' is invalid"
        );
        assert_eq!(
            Expr::parse("region==").unwrap_err().to_string(),
            "Value '' is invalid"
        );
        assert_eq!(
            Expr::parse("region==a,b").unwrap_err().to_string(),
            "Value 'a,b' is invalid"
        );
        assert!(Expr::parse_all(&["a1==b", "x"]).is_err());
    }

    #[test]
    fn glob_is_anchored() {
        assert!(e("os==ub*t*").matches(&["ubuntu"]));
        assert!(!e("os==ub*").matches(&["xubuntu"]));
        assert!(!e("os==ubuntu").matches(&["ubuntu-14"]));
        assert!(e("os==UBUNTU").matches(&["x", "UBUNTU"]));
        assert!(!e("os==ubuntu").matches::<&str>(&[]));
    }

    #[test]
    fn regex_is_unanchored_and_case_flag_works() {
        assert!(e("os==/ubuntu-1[24]/").matches(&["my-ubuntu-14.04"]));
        assert!(!e("os==/ubuntu-1[24]/").matches(&["ubuntu-16"]));
        assert!(e("os==/(?i)UBUNTU/").matches(&["ubuntu"]));
    }

    #[test]
    fn not_equal_inverts_and_bad_regex_matches_nothing() {
        assert!(e("os!=ubuntu").matches(&["debian"]));
        assert!(!e("os!=ubuntu").matches(&["ubuntu"]));
        assert!(!e("os==/[/").matches(&["["]));
        assert!(e("os!=/[/").matches(&["["]));
    }

    #[test]
    fn literal_fast_path_agrees_with_the_pattern() {
        // A dot is a regex character in classic's anchored pattern, not a literal.
        assert!(e("ip==10.0.0.1").matches(&["10a0b0c1"]));
        assert!(e("zone==z3").matches(&["z3"]));
        assert!(!e("zone==z3").matches(&["z33", "xz3"]));
        assert!(e("zone!=z3").matches(&["z4"]));
    }

    #[test]
    fn display_is_key_op_value() {
        assert_eq!(e("node!=~n*").to_string(), "node!=n*");
    }
}
