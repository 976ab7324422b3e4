//! Docker's service templates (swarmkit's `template` package), expanded on the node that
//! runs the task, as Docker does:
//!
//! - in the container spec: `--env`, `--hostname` and mount sources/targets, e.g.
//!   `--hostname '{{.Node.Hostname}}-{{.Task.Slot}}'`;
//! - in the data of secrets and configs created with `--template-driver golang`, which may
//!   also call `env "VAR"` (the task's environment), `secret "target"` and
//!   `config "target"` (another file of the same task, by its target).
//!
//! The context is swarmkit's: `.Service.{ID,Name,Labels}`, `.Node.{ID,Hostname,Platform.
//! {Architecture,OS}}`, `.Task.{ID,Name,Slot}`. Templates are Go templates (gtmpl).

use std::cell::RefCell;
use std::collections::HashMap;

use bollard_stubs::models::TaskSpecContainerSpec;
use gtmpl::{Context, FuncError, Template, Value};
use swarmd_types::{NodeDescription, Task};

/// What templates can refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateContext {
    value: Value,
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

impl TemplateContext {
    /// The context of `task` on a node described by `node` (hostname and platform are
    /// empty until the node has described itself).
    pub fn new(task: &Task, node: Option<&NodeDescription>) -> Self {
        let labels: HashMap<String, Value> = task
            .service_labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        // swarmkit: a task without a slot (global services) uses its node ID.
        let slot = if task.slot != 0 {
            task.slot.to_string()
        } else {
            task.node_id.clone()
        };
        let s = |v: &str| Value::from(v.to_string());
        let value = object([
            (
                "Service",
                object([
                    ("ID", s(&task.service_id)),
                    ("Name", s(&task.service_name)),
                    ("Labels", Value::Map(labels)),
                ]),
            ),
            (
                "Node",
                object([
                    ("ID", s(&task.node_id)),
                    ("Hostname", s(node.map_or("", |n| n.hostname.as_str()))),
                    (
                        "Platform",
                        object([
                            (
                                "Architecture",
                                s(node.map_or("", |n| n.architecture.as_str())),
                            ),
                            ("OS", s(node.map_or("", |n| n.os.as_str()))),
                        ]),
                    ),
                ]),
            ),
            (
                "Task",
                object([
                    ("ID", s(&task.id)),
                    // Docker's task name is the container's: service.slot.taskid.
                    ("Name", s(&task.container_name())),
                    ("Slot", Value::from(slot)),
                ]),
            ),
        ]);
        TemplateContext { value }
    }

    /// Expands one string of the container spec.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        render(text, &self.value, &[])
    }

    /// Expands the data of a templated secret or config. `files` are the task's other
    /// files by target (`secret "target"` / `config "target"`), `env` its environment.
    pub fn expand_payload(&self, data: &[u8], payload: PayloadFiles) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(data).map_err(|_| "the data is not UTF-8".to_string())?;
        PAYLOAD.with(|p| *p.borrow_mut() = Some(payload));
        let out = render(
            text,
            &self.value,
            &[
                ("env", env_func as gtmpl::Func),
                ("secret", secret_func),
                ("config", config_func),
            ],
        );
        PAYLOAD.with(|p| *p.borrow_mut() = None);
        out.map(String::into_bytes)
    }

    /// Expands the fields of a container spec Docker expands: env values, hostname, mount
    /// sources and targets. The first failure is returned, naming the field.
    pub fn expand_spec(&self, spec: &mut TaskSpecContainerSpec) -> Result<(), String> {
        if let Some(env) = spec.env.as_mut() {
            for e in env.iter_mut() {
                *e = self
                    .expand(e)
                    .map_err(|m| format!("expanding env {e}: {m}"))?;
            }
        }
        if let Some(h) = spec.hostname.as_mut() {
            *h = self
                .expand(h)
                .map_err(|m| format!("expanding hostname: {m}"))?;
        }
        for m in spec.mounts.iter_mut().flatten() {
            for field in [&mut m.source, &mut m.target].into_iter().flatten() {
                *field = self
                    .expand(field)
                    .map_err(|e| format!("expanding mount {field}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// What a templated secret or config may read besides the context.
#[derive(Debug, Clone, Default)]
pub struct PayloadFiles {
    /// `KEY=VALUE` entries of the task's environment.
    pub env: Vec<String>,
    /// Target → data of the task's secrets.
    pub secrets: HashMap<String, Vec<u8>>,
    /// Target → data of the task's configs.
    pub configs: HashMap<String, Vec<u8>>,
}

thread_local! {
    /// The payload of the expansion running on this thread. gtmpl's functions are plain
    /// `fn` pointers, so the task's files reach `secret`/`config`/`env` this way; an
    /// expansion is synchronous and sets and clears it around itself.
    static PAYLOAD: RefCell<Option<PayloadFiles>> = const { RefCell::new(None) };
}

fn one_string(name: &str, args: &[Value]) -> Result<String, FuncError> {
    match args {
        [Value::String(s)] => Ok(s.clone()),
        [_] => Err(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::ExactlyXArgs(name.into(), 1)),
    }
}

fn env_func(args: &[Value]) -> Result<Value, FuncError> {
    let var = one_string("env", args)?;
    let found = PAYLOAD.with(|p| {
        p.borrow().as_ref().and_then(|p| {
            p.env.iter().find_map(|e| {
                e.split_once('=')
                    .filter(|(k, _)| *k == var)
                    .map(|(_, v)| v.to_string())
            })
        })
    });
    // swarmkit: an unset variable expands to nothing.
    Ok(Value::from(found.unwrap_or_default()))
}

fn file_func(
    kind: &str,
    args: &[Value],
    pick: fn(&PayloadFiles) -> &HashMap<String, Vec<u8>>,
) -> Result<Value, FuncError> {
    let target = one_string(kind, args)?;
    let data = PAYLOAD.with(|p| {
        p.borrow()
            .as_ref()
            .and_then(|p| pick(p).get(&target).cloned())
    });
    match data {
        Some(d) => Ok(Value::from(String::from_utf8_lossy(&d).into_owned())),
        None => Err(FuncError::Generic(format!(
            "{kind} target {target} not found"
        ))),
    }
}

fn secret_func(args: &[Value]) -> Result<Value, FuncError> {
    file_func("secret", args, |p| &p.secrets)
}

fn config_func(args: &[Value]) -> Result<Value, FuncError> {
    file_func("config", args, |p| &p.configs)
}

fn render(text: &str, value: &Value, funcs: &[(&str, gtmpl::Func)]) -> Result<String, String> {
    let mut t = Template::with_name("expansion");
    t.add_funcs(funcs);
    t.parse(text).map_err(|e| e.to_string())?;
    t.render(&Context::from(value.clone()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::Mount;

    fn task() -> Task {
        Task {
            id: "t1".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            slot: 2,
            node_id: "n1".into(),
            service_labels: HashMap::from([("tier".into(), "front".into())]),
            ..Default::default()
        }
    }

    fn node() -> NodeDescription {
        NodeDescription {
            hostname: "host-a".into(),
            os: "linux".into(),
            architecture: "x86_64".into(),
            ..Default::default()
        }
    }

    #[test]
    fn spec_fields_expand_with_swarmkits_context() {
        let ctx = TemplateContext::new(&task(), Some(&node()));
        let mut spec = TaskSpecContainerSpec {
            env: Some(vec![
                "WHO={{.Service.Name}}.{{.Task.Slot}}@{{.Node.Hostname}}".into(),
                "PLAIN=x".into(),
            ]),
            hostname: Some("{{.Node.ID}}-{{.Task.ID}}-{{.Node.Platform.OS}}".into()),
            mounts: Some(vec![Mount {
                source: Some("/data/{{.Task.Slot}}".into()),
                target: Some("/srv".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        ctx.expand_spec(&mut spec).unwrap();
        assert_eq!(
            spec.env.unwrap(),
            vec!["WHO=web.2@host-a".to_string(), "PLAIN=x".to_string()]
        );
        assert_eq!(spec.hostname.unwrap(), "n1-t1-linux");
        assert_eq!(spec.mounts.unwrap()[0].source.as_deref(), Some("/data/2"));
        assert_eq!(
            ctx.expand("{{index .Service.Labels \"tier\"}} {{.Task.Name}}")
                .unwrap(),
            "front web.2.t1"
        );
    }

    #[test]
    fn global_tasks_use_the_node_id_as_slot() {
        let mut t = task();
        t.slot = 0;
        let ctx = TemplateContext::new(&t, None);
        assert_eq!(ctx.expand("{{.Task.Slot}}").unwrap(), "n1");
    }

    #[test]
    fn payloads_read_env_and_the_tasks_other_files() {
        let ctx = TemplateContext::new(&task(), Some(&node()));
        let files = PayloadFiles {
            env: vec!["MODE=blue".into()],
            secrets: HashMap::from([("db_pw".into(), b"s3cret".to_vec())]),
            configs: HashMap::from([("base.conf".into(), b"x=1".to_vec())]),
        };
        let out = ctx
            .expand_payload(
                b"mode={{env \"MODE\"}} unset=[{{env \"NOPE\"}}] pw={{secret \"db_pw\"}} base={{config \"base.conf\"}} on {{.Node.Hostname}}",
                files.clone(),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "mode=blue unset=[] pw=s3cret base=x=1 on host-a"
        );
        let err = ctx
            .expand_payload(b"{{secret \"other\"}}", files.clone())
            .unwrap_err();
        assert!(err.contains("secret target other not found"), "{err}");
        // Functions exist only for payloads; the thread's payload is cleared afterwards.
        assert!(ctx.expand("{{env \"MODE\"}}").is_err());
    }

    #[test]
    fn bad_templates_are_errors_not_panics() {
        let ctx = TemplateContext::new(&task(), None);
        assert!(ctx.expand("{{.Service.Name").is_err());
        assert!(
            ctx.expand_payload(&[0xff, 0xfe], PayloadFiles::default())
                .is_err()
        );
        assert_eq!(
            ctx.expand("no templates here").unwrap(),
            "no templates here"
        );
    }
}
