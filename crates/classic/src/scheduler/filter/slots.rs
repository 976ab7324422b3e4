//! Containerslots filter: an engine labelled `containerslots=N` takes at most N
//! containers (all of them count, stopped included). A label that is not a number
//! is ignored, as classic ignores it.

use super::FilterError;
use crate::scheduler::model::Node;

pub(super) fn filter(nodes: Vec<&Node>) -> Result<Vec<&Node>, FilterError> {
    let kept: Vec<&Node> = nodes
        .into_iter()
        .filter(|n| match n.labels.get("containerslots") {
            None => true,
            Some(s) => match s.parse::<i64>() {
                Ok(slots) => (n.containers.len() as i64) < slots,
                Err(_) => true,
            },
        })
        .collect();
    if kept.is_empty() {
        return Err(FilterError::NoSlots);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::*;

    fn with_slots(name: &str, slots: &str, used: usize) -> Node {
        let mut n = node(name);
        n.labels.insert("containerslots".into(), slots.into());
        n.containers = (0..used)
            .map(|i| container(&format!("c{i}"), &format!("c{i}")))
            .collect();
        n
    }

    #[test]
    fn full_nodes_are_dropped() {
        let full = with_slots("full", "2", 2);
        let free = with_slots("free", "2", 1);
        let unlimited = with_slots("unlimited", "x", 50);
        let mut nolabel = node("nolabel");
        nolabel.containers = vec![container("a", "a")];
        let got = filter(vec![&full, &free, &unlimited, &nolabel]).unwrap();
        assert_eq!(names(&got), ["free", "unlimited", "nolabel"]);
        assert_eq!(
            filter(vec![&full]).unwrap_err().to_string(),
            "No node with enough open slots available in the cluster"
        );
        let zero = with_slots("zero", "0", 0);
        assert!(filter(vec![&zero]).is_err());
    }
}
