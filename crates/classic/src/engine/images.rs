//! `GET /images/json` -> the node's images, which `affinity:image==` matches against.
//! Classic replaces the whole list on every refresh (an image event only says that
//! something changed), so this is a plain conversion.

use bollard_stubs::models::ImageSummary;

use crate::scheduler::model::{Image, Node};

impl Node {
    /// Replaces the node's images with the engine's listing. Untagged images (engine
    /// 20.10 lists `<none>:<none>` for dangling ones) keep their ID, so they can still
    /// be matched by ID, but no tag.
    pub fn set_images(&mut self, listing: &[ImageSummary]) {
        self.images = listing
            .iter()
            .map(|i| Image {
                id: i.id.clone(),
                repo_tags: i
                    .repo_tags
                    .iter()
                    .filter(|t| *t != "<none>:<none>")
                    .cloned()
                    .collect(),
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from engine 20.10's `/images/json`.
    const LISTING: &str = r#"[
        {"Containers":-1,"Created":1701000000,"Id":"sha256:a8758716bb6a","Labels":null,
         "ParentId":"","RepoDigests":["nginx@sha256:10d1f5b5"],"RepoTags":["nginx:1.25","nginx:latest"],
         "SharedSize":-1,"Size":187000000,"VirtualSize":187000000},
        {"Containers":-1,"Created":1700000000,"Id":"sha256:0b1c2d3e4f5a","Labels":null,
         "ParentId":"","RepoDigests":["<none>@<none>"],"RepoTags":["<none>:<none>"],
         "SharedSize":-1,"Size":5000000,"VirtualSize":5000000}
    ]"#;

    #[test]
    fn listing_replaces_images_and_drops_placeholder_tags() {
        let listing: Vec<ImageSummary> = serde_json::from_str(LISTING).unwrap();
        let mut n = Node {
            images: vec![Image {
                id: "sha256:old".into(),
                repo_tags: vec!["old:1".into()],
            }],
            ..Default::default()
        };
        n.set_images(&listing);
        assert_eq!(n.images.len(), 2);
        assert_eq!(n.images[0].id, "sha256:a8758716bb6a");
        assert_eq!(n.images[0].repo_tags, ["nginx:1.25", "nginx:latest"]);
        assert_eq!(n.images[1].id, "sha256:0b1c2d3e4f5a");
        assert!(n.images[1].repo_tags.is_empty());
    }
}
