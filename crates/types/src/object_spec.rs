//! What `secret create` / `config create` carry, shared by the API that decodes it and
//! the manager that validates and stores it.

use std::collections::HashMap;

/// A secret's or config's spec as the API decoded it (base64 data already decoded).
/// Plain data rather than bollard's `SecretSpec`, so the manager never sees base64 and the
/// bytes are never formatted into an error message by accident.
#[derive(Clone, Default, PartialEq)]
pub struct ObjectSpec {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub data: Vec<u8>,
    /// Secrets only: an external secret store's driver name (data must then be empty).
    pub driver: Option<String>,
    /// `--template-driver` (`golang`), recorded as given.
    pub templating: Option<String>,
    /// The templating driver's options, kept so they read back as sent.
    pub templating_options: HashMap<String, String>,
}

/// Never prints the data: specs end up in debug logs and error chains.
impl std::fmt::Debug for ObjectSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSpec")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("data_len", &self.data.len())
            .field("driver", &self.driver)
            .field("templating", &self.templating)
            .field("templating_options", &self.templating_options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_data() {
        let s = ObjectSpec {
            name: "pw".into(),
            data: b"hunter2".to_vec(),
            ..Default::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("data_len: 7"), "{shown}");
    }
}
