//! What the registry serves: the repositories, tags, manifests and blobs of an archive
//! `docker save` wrote, read once into memory (the test image is 2 MB).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Schema 2 image manifest.
pub(super) const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// An uncompressed layer tar, as `docker save` keeps it.
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// One repository: its tags (to manifest digests) and manifests (by digest).
#[derive(Debug, Default)]
pub(super) struct Repo {
    pub(super) tags: HashMap<String, String>,
    pub(super) manifests: HashMap<String, Bytes>,
}

/// Everything the registry serves.
#[derive(Debug, Default)]
pub(crate) struct Content {
    pub(super) repos: HashMap<String, Repo>,
    /// Configs and layers, by digest (shared by the repositories).
    pub(super) blobs: HashMap<String, Bytes>,
}

impl Content {
    /// Reads the archive `docker save` wrote at `tar`, extracting it into `scratch` (a
    /// directory to make; removed again).
    pub(crate) fn from_docker_save(tar: &Path, scratch: &Path) -> anyhow::Result<Content> {
        std::fs::create_dir(scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let out = Command::new("tar")
            .arg("-x")
            .arg("-f")
            .arg(tar)
            .arg("-C")
            .arg(scratch)
            .output()
            .context("running tar")?;
        if !out.status.success() {
            bail!(
                "extracting {}: {}",
                tar.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let content = Content::from_save_dir(scratch);
        let _ = std::fs::remove_dir_all(scratch);
        content
    }

    /// Reads an extracted `docker save` archive: `manifest.json` lists, per image, its
    /// config file, its layer tars (bottom first) and its `name:tag`s.
    pub(crate) fn from_save_dir(dir: &Path) -> anyhow::Result<Content> {
        let index = std::fs::read(dir.join("manifest.json")).context("reading manifest.json")?;
        let index: serde_json::Value =
            serde_json::from_slice(&index).context("parsing manifest.json")?;
        let mut content = Content::default();
        for image in index.as_array().context("manifest.json is not a list")? {
            let config = content.add_blob(dir, image["Config"].as_str())?;
            let layers = image["Layers"]
                .as_array()
                .context("an image without Layers")?
                .iter()
                .map(|l| content.add_blob(dir, l.as_str()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": descriptor(CONFIG_TYPE, &config),
                "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
            });
            let manifest = Bytes::from(serde_json::to_vec(&manifest)?);
            let digest = digest_of(&manifest);
            for repo_tag in image["RepoTags"].as_array().into_iter().flatten() {
                let repo_tag = repo_tag.as_str().unwrap_or_default();
                // The tag follows the last ':' after the last '/' (a name may have a port).
                let Some((name, tag)) = repo_tag
                    .rsplit_once(':')
                    .filter(|(_, tag)| !tag.contains('/'))
                else {
                    bail!("manifest.json: {repo_tag:?} is not name:tag");
                };
                let repo = content.repos.entry(name.to_string()).or_default();
                repo.tags.insert(tag.to_string(), digest.clone());
                repo.manifests.insert(digest.clone(), manifest.clone());
            }
        }
        Ok(content)
    }

    /// Reads `file` (relative to `dir`) as a blob; returns its digest and size.
    fn add_blob(&mut self, dir: &Path, file: Option<&str>) -> anyhow::Result<(String, usize)> {
        let file = file.context("manifest.json: a file name is missing")?;
        let bytes =
            Bytes::from(std::fs::read(dir.join(file)).with_context(|| format!("reading {file}"))?);
        let digest = digest_of(&bytes);
        let size = bytes.len();
        self.blobs.insert(digest.clone(), bytes);
        Ok((digest, size))
    }
}

fn descriptor(media_type: &str, (digest, size): &(String, usize)) -> serde_json::Value {
    json!({ "mediaType": media_type, "size": size, "digest": digest })
}

/// `sha256:<hex>`, the registry's content address.
pub(super) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A `docker save` layout made by hand: two tags of one image.
    pub(in crate::registry) fn sample() -> (tempfile::TempDir, Content) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cfg.json"), br#"{"rootfs":{}}"#).unwrap();
        std::fs::create_dir(d.path().join("l1")).unwrap();
        std::fs::write(d.path().join("l1/layer.tar"), b"layer bytes").unwrap();
        std::fs::write(
            d.path().join("manifest.json"),
            br#"[{"Config":"cfg.json","RepoTags":["busybox:latest","tools/bb:1"],"Layers":["l1/layer.tar"]}]"#,
        )
        .unwrap();
        let c = Content::from_save_dir(d.path()).unwrap();
        (d, c)
    }

    #[test]
    fn a_saved_image_becomes_a_schema2_manifest_over_its_blobs() {
        let (_d, c) = sample();
        let repo = &c.repos["busybox"];
        let digest = &repo.tags["latest"];
        let m: serde_json::Value = serde_json::from_slice(&repo.manifests[digest]).unwrap();
        assert_eq!(digest, &digest_of(&repo.manifests[digest]));
        assert_eq!(m["mediaType"], MANIFEST_TYPE);
        assert_eq!(m["config"]["digest"], digest_of(br#"{"rootfs":{}}"#));
        assert_eq!(m["config"]["size"], 13);
        assert_eq!(m["layers"][0]["mediaType"], LAYER_TYPE);
        assert_eq!(m["layers"][0]["digest"], digest_of(b"layer bytes"));
        assert_eq!(c.blobs.len(), 2);
        assert_eq!(c.blobs[&digest_of(b"layer bytes")], &b"layer bytes"[..]);
        assert_eq!(c.repos["tools/bb"].tags["1"], *digest);
    }
}
