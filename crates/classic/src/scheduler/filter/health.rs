//! Health filter: only engines whose health indicator is above zero take containers.

use super::FilterError;
use crate::scheduler::model::Node;

pub(super) fn filter(nodes: Vec<&Node>) -> Result<Vec<&Node>, FilterError> {
    let kept: Vec<&Node> = nodes.into_iter().filter(|n| n.is_healthy()).collect();
    if kept.is_empty() {
        return Err(FilterError::NoHealthyNode);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::*;

    #[test]
    fn drops_unhealthy_and_fails_when_none_left() {
        let a = node("a");
        let mut b = node("b");
        b.health = 0;
        assert_eq!(names(&filter(vec![&a, &b]).unwrap()), ["a"]);
        let err = filter(vec![&b]).unwrap_err();
        assert_eq!(err.to_string(), "No healthy node available in the cluster");
        assert_eq!(filter(vec![]).unwrap_err(), FilterError::NoHealthyNode);
    }
}
