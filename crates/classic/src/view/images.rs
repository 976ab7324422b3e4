//! `GET /images/json` over the pool (classic's `getImagesJSON`): an image present on
//! several engines is listed once, under its ID, with the tags and digests it has
//! anywhere (each once, in the order met); newest first. The router forwards every
//! filter but `node` (the engines apply `dangling`, `label`, `reference`, `before`,
//! `since`); `node` keeps the images of the engines named exactly, by name or ID.

use std::collections::HashMap;

use bollard_stubs::models::ImageSummary;

use super::EngineAnswer;

/// Merges the engines' listings; `node` holds the `node` filter's values.
pub fn merge(node: &[String], answers: &[EngineAnswer<Vec<ImageSummary>>]) -> Vec<ImageSummary> {
    let mut out: Vec<ImageSummary> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let accepted = |a: &&EngineAnswer<Vec<ImageSummary>>| {
        node.is_empty()
            || node
                .iter()
                .any(|n| *n == a.engine.name || *n == a.engine.id)
    };
    for image in answers.iter().filter(accepted).flat_map(|a| &a.answer) {
        match index.get(&image.id) {
            Some(&i) => {
                let seen = &mut out[i];
                append_new(&mut seen.repo_tags, &image.repo_tags);
                append_new(&mut seen.repo_digests, &image.repo_digests);
            }
            None => {
                index.insert(image.id.clone(), out.len());
                let mut first = image.clone();
                first.repo_tags.clear();
                first.repo_digests.clear();
                append_new(&mut first.repo_tags, &image.repo_tags);
                append_new(&mut first.repo_digests, &image.repo_digests);
                out.push(first);
            }
        }
    }
    out.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
    out
}

fn append_new(into: &mut Vec<String>, from: &[String]) {
    for v in from {
        if !into.contains(v) {
            into.push(v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testutil::engine;

    fn image(id: &str, created: i64, tags: &[&str], digests: &[&str]) -> ImageSummary {
        serde_json::from_value(serde_json::json!({
            "Id": id, "ParentId": "", "RepoTags": tags, "RepoDigests": digests,
            "Created": created, "Size": 4_000_000, "SharedSize": -1, "Labels": {},
            "Containers": -1
        }))
        .unwrap()
    }

    fn pool() -> Vec<EngineAnswer<Vec<ImageSummary>>> {
        vec![
            EngineAnswer {
                engine: engine("node-1", "10.0.0.1"),
                answer: vec![
                    image("sha256:bb", 200, &["busybox:latest"], &["busybox@sha256:1"]),
                    image("sha256:old", 100, &["app:1"], &[]),
                ],
            },
            EngineAnswer {
                engine: engine("node-2", "10.0.0.2"),
                answer: vec![
                    image(
                        "sha256:bb",
                        200,
                        &["busybox:latest", "busybox:1.36"],
                        &["busybox@sha256:1"],
                    ),
                    image("sha256:new", 300, &["app:2"], &[]),
                ],
            },
        ]
    }

    #[test]
    fn one_entry_per_id_with_every_tag_once() {
        let list = merge(&[], &pool());
        let ids: Vec<&str> = list.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["sha256:new", "sha256:bb", "sha256:old"]);
        assert_eq!(list[1].repo_tags, ["busybox:latest", "busybox:1.36"]);
        assert_eq!(list[1].repo_digests, ["busybox@sha256:1"]);
    }

    #[test]
    fn node_filter_by_exact_name_or_id() {
        let only = |n: &str| {
            merge(&[n.to_string()], &pool())
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(only("node-2"), ["sha256:new", "sha256:bb"]);
        assert_eq!(only("ID-node-1|10.0.0.1:2375"), ["sha256:bb", "sha256:old"]);
        assert!(only("node-").is_empty(), "no pattern matching for images");
        let bb = &merge(&["node-1".to_string()], &pool())[0];
        assert_eq!(
            bb.repo_tags,
            ["busybox:latest"],
            "tags of the named engine only"
        );
    }
}
