//! Taking Swarm's expressions out of a request: `-e constraint:…`, `-e affinity:…`,
//! `-e whitelist:…` (and `-e reschedule:…`) leave the env the engine gets and join the
//! JSON lists in the labels `com.docker.swarm.constraints` / `.affinities` /
//! `.whitelists` / `.reschedule-policies`, which the filters then read. Keeping them in
//! labels is how classic remembers them on the created container.

use std::collections::HashMap;

use super::model::Request;

pub const CONSTRAINTS_LABEL: &str = "com.docker.swarm.constraints";
pub const AFFINITIES_LABEL: &str = "com.docker.swarm.affinities";
pub const WHITELISTS_LABEL: &str = "com.docker.swarm.whitelists";
pub const RESCHEDULE_LABEL: &str = "com.docker.swarm.reschedule-policies";

fn label_for(env_key: &str) -> Option<&'static str> {
    match env_key {
        "constraint" => Some(CONSTRAINTS_LABEL),
        "affinity" => Some(AFFINITIES_LABEL),
        "whitelist" => Some(WHITELISTS_LABEL),
        "reschedule" => Some(RESCHEDULE_LABEL),
        _ => None,
    }
}

/// Reads a label holding a JSON list of strings. Classic ignores a label that is not
/// valid JSON (no expressions), so this does too.
pub fn label_list(labels: &HashMap<String, String>, label: &str) -> Vec<String> {
    labels
        .get(label)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Moves the expressions from `req.env` into the labels: label entries first, then env
/// entries in order. Env entries without a known `key:` prefix stay in the env.
pub fn extract(req: &mut Request) {
    let mut lists: Vec<(&'static str, Vec<String>)> = [
        AFFINITIES_LABEL,
        CONSTRAINTS_LABEL,
        WHITELISTS_LABEL,
        RESCHEDULE_LABEL,
    ]
    .into_iter()
    .map(|l| (l, label_list(&req.labels, l)))
    .collect();
    let mut kept = Vec::with_capacity(req.env.len());
    for entry in req.env.drain(..) {
        let label = entry
            .split_once(':')
            .and_then(|(k, v)| label_for(k).map(|l| (l, v.to_string())));
        match label {
            Some((l, v)) => {
                if let Some((_, list)) = lists.iter_mut().find(|(name, _)| *name == l) {
                    list.push(v);
                }
            }
            None => kept.push(entry),
        }
    }
    req.env = kept;
    for (label, list) in lists {
        if !list.is_empty() {
            let json = serde_json::to_string(&list).expect("strings serialize");
            req.labels.insert(label.to_string(), json);
        }
    }
}

/// The constraint expressions (unparsed) of a request after [`extract`].
pub fn constraints(req: &Request) -> Vec<String> {
    label_list(&req.labels, CONSTRAINTS_LABEL)
}

/// The affinity expressions (unparsed).
pub fn affinities(req: &Request) -> Vec<String> {
    label_list(&req.labels, AFFINITIES_LABEL)
}

/// The whitelist expressions (unparsed).
pub fn whitelists(req: &Request) -> Vec<String> {
    label_list(&req.labels, WHITELISTS_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_move_to_labels_and_leave_env() {
        let mut req = Request {
            env: vec![
                "constraint:region==us-east".into(),
                "FOO=bar".into(),
                "affinity:container==redis".into(),
                "whitelist:node==n1|n2".into(),
                "reschedule:on-node-failure".into(),
                "constraint:storage==ssd".into(),
                "PATH=/bin:/usr/bin".into(),
            ],
            ..Default::default()
        };
        extract(&mut req);
        assert_eq!(req.env, vec!["FOO=bar", "PATH=/bin:/usr/bin"]);
        assert_eq!(constraints(&req), vec!["region==us-east", "storage==ssd"]);
        assert_eq!(affinities(&req), vec!["container==redis"]);
        assert_eq!(whitelists(&req), vec!["node==n1|n2"]);
        assert_eq!(
            req.labels[RESCHEDULE_LABEL],
            r#"["on-node-failure"]"#.to_string()
        );
    }

    #[test]
    fn label_lists_come_first_and_bad_json_is_ignored() {
        let mut req = Request {
            env: vec!["constraint:b==2".into()],
            ..Default::default()
        };
        req.labels
            .insert(CONSTRAINTS_LABEL.into(), r#"["a1==1"]"#.into());
        req.labels
            .insert(AFFINITIES_LABEL.into(), "not json".into());
        extract(&mut req);
        assert_eq!(constraints(&req), vec!["a1==1", "b==2"]);
        assert!(affinities(&req).is_empty());
        assert!(req.env.is_empty());
    }

    #[test]
    fn nothing_to_extract_adds_no_labels() {
        let mut req = Request {
            env: vec!["A=1".into()],
            ..Default::default()
        };
        extract(&mut req);
        assert!(req.labels.is_empty());
        assert_eq!(req.env, vec!["A=1"]);
    }
}
