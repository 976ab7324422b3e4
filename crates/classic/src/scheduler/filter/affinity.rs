//! Affinity filter: place by what is already on a node. `container` matches the IDs
//! and names of its containers, `image` its images (ID, `repo:tag` and bare repo),
//! any other key the labels of its containers (a container without the label offers
//! the empty string). A node with no container offers nothing, so `container!=x` holds.

use super::{FilterError, filter_exprs};
use crate::scheduler::expr::{Expr, ExprError};
use crate::scheduler::extract;
use crate::scheduler::model::{Node, Request};

pub(super) fn filter<'a>(
    req: &Request,
    nodes: Vec<&'a Node>,
    soft: bool,
) -> Result<Vec<&'a Node>, FilterError> {
    let exprs = Expr::parse_all(&extract::affinities(req))?;
    filter_exprs(exprs, nodes, soft, accepts, FilterError::Affinity)
}

fn accepts(e: &Expr, n: &Node) -> bool {
    let offered: Vec<&str> = match e.key.as_str() {
        "container" => n
            .containers
            .iter()
            .filter_map(|c| {
                let name = c.names.first()?;
                Some([c.id.as_str(), name.trim_start_matches('/')])
            })
            .flatten()
            .collect(),
        "image" => n
            .images
            .iter()
            .flat_map(|i| {
                std::iter::once(i.id.as_str())
                    .chain(i.repo_tags.iter().map(String::as_str))
                    .chain(i.repo_tags.iter().map(|t| repository(t)))
            })
            .collect(),
        key => n
            .containers
            .iter()
            .map(|c| c.labels.get(key).map_or("", String::as_str))
            .collect(),
    };
    e.matches(&offered)
}

/// The repository part of `repo:tag` or `repo@digest` (a `:` inside a registry
/// address such as `host:5000/img` is not a tag).
fn repository(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

pub(super) fn describe(req: &Request) -> Result<Vec<String>, ExprError> {
    Ok(Expr::parse_all(&extract::affinities(req))?
        .iter()
        .map(|e| format!("{e} (soft={})", e.soft))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Image;
    use crate::scheduler::testutil::*;

    fn pool() -> Vec<Node> {
        let mut a = node("a");
        let mut redis = container("0123456789abcdef", "redis");
        redis
            .labels
            .insert("com.example.type".into(), "frontend".into());
        a.containers = vec![redis];
        a.images = vec![Image {
            id: "sha256:abc".into(),
            repo_tags: vec!["redis:7".into(), "reg:5000/team/app:1".into()],
        }];
        let mut b = node("b");
        b.containers = vec![container("fedcba9876543210", "web")];
        let c = node("c");
        vec![a, b, c]
    }

    fn run(env: &[&str], soft: bool) -> Result<Vec<String>, FilterError> {
        let pool = pool();
        let got = filter(&request(env), pool.iter().collect(), soft)?;
        Ok(names(&got).into_iter().map(String::from).collect())
    }

    #[test]
    fn container_affinity_by_name_and_id() {
        assert_eq!(run(&["affinity:container==redis"], false).unwrap(), ["a"]);
        assert_eq!(run(&["affinity:container==fedcba*"], false).unwrap(), ["b"]);
        assert_eq!(
            run(&["affinity:container!=redis"], false).unwrap(),
            ["b", "c"]
        );
    }

    #[test]
    fn image_affinity_by_tag_repo_and_id() {
        assert_eq!(run(&["affinity:image==redis"], false).unwrap(), ["a"]);
        assert_eq!(run(&["affinity:image==redis:7"], false).unwrap(), ["a"]);
        assert_eq!(
            run(&["affinity:image==reg:5000/team/app"], false).unwrap(),
            ["a"]
        );
        assert_eq!(run(&["affinity:image==sha256:abc"], false).unwrap(), ["a"]);
        assert!(run(&["affinity:image==nginx"], false).is_err());
    }

    #[test]
    fn label_affinity_matches_container_labels() {
        assert_eq!(
            run(&["affinity:com.example.type==frontend"], false).unwrap(),
            ["a"]
        );
        // b's container lacks the label and offers "", c offers nothing at all.
        assert_eq!(
            run(&["affinity:com.example.type!=frontend"], false).unwrap(),
            ["b", "c"]
        );
    }

    #[test]
    fn soft_affinity_and_error_wording() {
        assert_eq!(
            run(&["affinity:container==~nope"], true)
                .unwrap_err()
                .to_string(),
            "unable to find a node that satisfies the affinity container==nope"
        );
        assert_eq!(run(&["affinity:container==~nope"], false).unwrap().len(), 3);
        let req = request(&["affinity:container==~redis", "affinity:image!=x1"]);
        assert_eq!(
            describe(&req).unwrap(),
            ["container==redis (soft=true)", "image!=x1 (soft=false)"]
        );
    }

    #[test]
    fn repository_strips_tag_or_digest() {
        assert_eq!(repository("redis:7"), "redis");
        assert_eq!(repository("redis@sha256:1"), "redis");
        assert_eq!(repository("host:5000/img"), "host:5000/img");
        assert_eq!(repository("redis"), "redis");
    }
}
