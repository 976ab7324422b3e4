//! Container names as the virtual host shows them: classic's aggregated `docker ps`
//! prefixes each name with its engine's name, so `/web` on `node1` lists as
//! `/node1/web` and containers of the same name on two engines stay apart.

/// `/<node>/<name>` for each engine-reported name (which already starts with `/`).
pub fn aggregated_names(node_name: &str, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| aggregated_name(node_name, n))
        .collect()
}

/// One name; a name the engine reported without its leading `/` gets one.
pub fn aggregated_name(node_name: &str, name: &str) -> String {
    if name.starts_with('/') {
        format!("/{node_name}{name}")
    } else {
        format!("/{node_name}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_engine_prefix() {
        let names = vec!["/web".to_string(), "/db/alias".to_string()];
        assert_eq!(
            aggregated_names("node1", &names),
            ["/node1/web", "/node1/db/alias"]
        );
        assert_eq!(aggregated_name("node2", "web"), "/node2/web");
        assert!(aggregated_names("n", &[]).is_empty());
    }
}
