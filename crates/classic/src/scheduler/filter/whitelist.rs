//! Whitelist filter: the value lists engine names separated by `|`; only those take
//! the container. Classic compares names exactly, whatever the key, and treats `!=`
//! like `==` (it never looks at the operator), which this keeps.

use super::{FilterError, filter_exprs};
use crate::scheduler::expr::{Expr, ExprError};
use crate::scheduler::extract;
use crate::scheduler::model::{Node, Request};

pub(super) fn filter<'a>(
    req: &Request,
    nodes: Vec<&'a Node>,
    soft: bool,
) -> Result<Vec<&'a Node>, FilterError> {
    let exprs = Expr::parse_all(&extract::whitelists(req))?;
    filter_exprs(
        exprs,
        nodes,
        soft,
        |e, n| e.value.split('|').any(|w| w == n.name),
        FilterError::Whitelist,
    )
}

pub(super) fn describe(req: &Request) -> Result<Vec<String>, ExprError> {
    Ok(Expr::parse_all(&extract::whitelists(req))?
        .iter()
        .map(|e| format!("{e} (soft={})", e.soft))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::*;

    fn run(env: &[&str], soft: bool) -> Result<Vec<String>, FilterError> {
        let pool = [node("n1"), node("n2"), node("n3")];
        let got = filter(&request(env), pool.iter().collect(), soft)?;
        Ok(names(&got).into_iter().map(String::from).collect())
    }

    #[test]
    fn only_listed_names_exactly() {
        assert_eq!(
            run(&["whitelist:node==n1|n3"], false).unwrap(),
            ["n1", "n3"]
        );
        assert_eq!(run(&["whitelist:anykey==n2"], false).unwrap(), ["n2"]);
        assert_eq!(run(&["whitelist:node!=n2"], false).unwrap(), ["n2"]);
        assert_eq!(
            run(&["whitelist:node==n*"], false).unwrap_err().to_string(),
            "unable to find a node that satisfies the whitelist node==n*"
        );
    }

    #[test]
    fn soft_whitelist_is_skipped_on_hard_pass() {
        assert!(run(&["whitelist:node==~n9"], true).is_err());
        assert_eq!(run(&["whitelist:node==~n9"], false).unwrap().len(), 3);
        let req = request(&["whitelist:node==~n1|n2"]);
        assert_eq!(describe(&req).unwrap(), ["node==n1|n2 (soft=true)"]);
    }
}
