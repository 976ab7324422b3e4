//! `file://` discovery contents: one engine (or range) per line.
//!
//! Classic's rules, kept: surrounding whitespace is trimmed, a line starting with `#` is a
//! comment, anything after a `#` is a trailing comment, blank lines are skipped, and each line
//! may hold a `[from:to]` range. Unlike `nodes://`, a line holds one entry: commas are not
//! split (classic did not either).

use super::addr::EngineAddr;
use super::source::{DiscoveryError, collect_entries};

/// Parses the contents of a discovery file into engine addresses, duplicates dropped.
pub fn parse_file_content(content: &str) -> Result<Vec<EngineAddr>, DiscoveryError> {
    let lines = content.lines().filter_map(|line| {
        let line = line.split('#').next().unwrap_or_default().trim();
        (!line.is_empty()).then_some(line)
    });
    collect_entries(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: Vec<EngineAddr>) -> Vec<String> {
        v.into_iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn comments_blank_lines_and_ranges() {
        let content = "\
# engines of rack 1
10.0.0.1:2375

  10.0.0.[2:3]:2375   # two more
#10.0.0.9:2375
unix:///var/run/docker.sock
";
        assert_eq!(
            strings(parse_file_content(content).unwrap()),
            [
                "10.0.0.1:2375",
                "10.0.0.2:2375",
                "10.0.0.3:2375",
                "unix:///var/run/docker.sock"
            ]
        );
    }

    #[test]
    fn empty_file_is_an_empty_pool() {
        assert!(parse_file_content("").unwrap().is_empty());
        assert!(parse_file_content("# nothing yet\n\n").unwrap().is_empty());
    }

    #[test]
    fn crlf_line_endings() {
        assert_eq!(
            strings(parse_file_content("a:1\r\nb:2\r\n").unwrap()),
            ["a:1", "b:2"]
        );
    }

    #[test]
    fn bad_line_is_an_error_naming_it() {
        let err = parse_file_content("a:1\nnode-without-port\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "address node-without-port: missing port in address"
        );
    }

    #[test]
    fn duplicates_dropped_first_kept() {
        assert_eq!(
            strings(parse_file_content("b:1\na:1\nb:1\n").unwrap()),
            ["b:1", "a:1"]
        );
    }
}
