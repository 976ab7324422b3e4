//! End to end, process executor: replicated and global jobs run to completion, at most
//! MaxConcurrent at a time; failed runs follow the restart policy; `service ls` shows the
//! completion count as Docker's CLI does; `service update` runs a job again.

mod common;

use common::*;

use swarmd_testkit::{Daemon, unique_name, wait_for};

fn node() -> Daemon {
    let n = process_node("jnode");
    n.docker(&["swarm", "init"]).ok();
    n
}

/// `CurrentState` of every task of the service.
fn task_states(n: &Daemon, name: &str) -> Vec<String> {
    n.docker(&["service", "ps", "--format", "{{.CurrentState}}", name])
        .ok()
        .lines()
        .into_iter()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

fn wait_replicas(n: &Daemon, name: &str, want: &str) {
    wait_for(T, POLL, &format!("service ls shows {want}"), || {
        let r = replicas(n, name);
        if r == want { Ok(()) } else { Err(r) }
    });
}

#[test]
fn replicated_job_runs_to_completion_and_update_reruns_it() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("job");
    // Attached: the CLI's job progress display follows the tasks' slots to completion.
    n.docker(&[
        "service",
        "create",
        "--name",
        &name,
        "--mode",
        "replicated-job",
        "--replicas",
        "3",
        "--max-concurrent",
        "2",
        "busybox",
        "sleep",
        "0.5",
    ])
    .ok();
    assert_eq!(
        service_field(&n, &name, "{{json .Spec.Mode.ReplicatedJob}}"),
        r#"{"MaxConcurrent":2,"TotalCompletions":3}"#
    );
    // Done after three completions (the attached create returned once they were).
    wait_for(T, POLL, "job complete", || {
        let r = replicas(&n, &name);
        if r == "0/2 (3/3 completed)" {
            Ok(())
        } else {
            Err(r)
        }
    });
    let states = task_states(&n, &name);
    assert_eq!(
        states,
        vec!["Complete"; 3],
        "completed tasks are never restarted"
    );
    let first = service_field(&n, &name, "{{.JobStatus.JobIteration.Index}}");

    // An update runs the job again: a new iteration, three more completions.
    let first_ids = n.docker(&["service", "ps", "-q", &name]).ok().stdout;
    n.docker(&["service", "update", "-d", "--env-add", "RUN=2", &name])
        .ok();
    let second = service_field(&n, &name, "{{.JobStatus.JobIteration.Index}}");
    assert_ne!(first, second, "a new job iteration");
    // Three new tasks complete, never more than MaxConcurrent at once; the first run's
    // stay in the history.
    wait_for(T, POLL, "second run complete", || {
        let states = task_states(&n, &name);
        let running = states.iter().filter(|s| *s == "Running").count();
        assert!(running <= 2, "at most 2 running: {states:?}");
        let ids = n.docker(&["service", "ps", "-q", &name]).ok().stdout;
        let fresh = ids.lines().filter(|id| !first_ids.contains(id)).count();
        let r = replicas(&n, &name);
        if fresh == 3 && states == vec!["Complete"; 6] && r == "0/2 (3/3 completed)" {
            Ok(())
        } else {
            Err(format!("{r} {states:?}"))
        }
    });
}

#[test]
fn failed_job_task_is_retried_by_the_restart_policy() {
    let n = node();
    let _l = Leave(&n);
    let dir = std::env::temp_dir().join(unique_name("jobflag"));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("tried");
    let name = unique_name("retry");
    // Fails the first time, succeeds the second.
    let script = format!(
        "test -f {f} || {{ touch {f}; exit 3; }}",
        f = flag.display()
    );
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--mode",
        "replicated-job",
        "--restart-delay",
        "100ms",
        "busybox",
        "sh",
        "-c",
        &script,
    ])
    .ok();
    wait_replicas(&n, &name, "0/1 (1/1 completed)");
    let mut states = task_states(&n, &name);
    states.sort();
    assert_eq!(states, vec!["Complete", "Failed"]);
    let err = n
        .docker(&["service", "ps", "--format", "{{.Error}}", &name])
        .ok()
        .stdout;
    assert!(err.contains("task: non-zero exit (3)"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn global_job_runs_once_per_node() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("gjob");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--mode",
        "global-job",
        "busybox",
        "true",
    ])
    .ok();
    wait_replicas(&n, &name, "0/0 (1/1 completed)");
    assert_eq!(task_states(&n, &name), vec!["Complete"]);
    assert_eq!(service_field(&n, &name, "{{.Spec.Mode.GlobalJob}}"), "{}");
}
