//! The verdict of a run: the checkers over the history (registers, the set, the task
//! invariants), unavailability per fault kind, and the one summary line CI greps.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::check::register::Register;
use crate::check::set::{SetReport, check_set};
use crate::check::tasks::{TaskReport, TaskViolation, check_tasks};
use crate::check::{Verdict, check_linearizable};
use crate::nemesis::Injected;
use crate::workload::History;
use crate::workload::registers::{Kind, RegisterId};

/// What a run found.
pub struct Report {
    pub ops: usize,
    pub acknowledged: usize,
    pub unknown: usize,
    pub set: SetReport,
    /// Registers whose history is not linearizable, with the checker's verdict.
    pub violations: BTreeMap<RegisterId, Verdict>,
    /// The task invariants (nothing checked when the run had no workers).
    pub tasks: TaskReport,
    /// Scales and forced updates of the task services that were acknowledged.
    pub task_changes: u64,
    /// Register operations recorded, per kind of object.
    pub register_ops: BTreeMap<Kind, usize>,
    pub faults: Vec<Injected>,
}

impl Report {
    /// Checks `history`; `final_sets` is the set as each manager listed it after healing.
    pub fn new(
        history: &History,
        final_sets: &[BTreeSet<String>],
        faults: Vec<Injected>,
    ) -> Report {
        let mut by_key: BTreeMap<RegisterId, Vec<_>> = BTreeMap::new();
        for r in &history.registers {
            by_key.entry(r.register).or_default().push(r.op.clone());
        }
        let violations = by_key
            .into_iter()
            .filter_map(|(k, ops)| {
                let v = check_linearizable(Register(0), &ops);
                (!v.is_linearizable()).then_some((k, v))
            })
            .collect();
        // Lost on any manager is lost: each one must list every acknowledged create.
        let mut set = SetReport::default();
        for listed in final_sets {
            let r = check_set(&history.set_acknowledged, &history.set_unknown, listed);
            set.acknowledged = r.acknowledged;
            set.unknown_present = set.unknown_present.max(r.unknown_present);
            for l in r.lost {
                if !set.lost.contains(&l) {
                    set.lost.push(l);
                }
            }
            for u in r.unexpected {
                if !set.unexpected.contains(&u) {
                    set.unexpected.push(u);
                }
            }
        }
        Report {
            ops: history.ops(),
            acknowledged: history.acknowledged(),
            unknown: history.unknown(),
            set,
            violations,
            tasks: check_tasks(&history.tasks.observations, &history.tasks.orders),
            task_changes: history.tasks.changes,
            register_ops: history.registers.iter().fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.register.kind).or_default() += 1;
                m
            }),
            faults,
        }
    }

    pub fn lost(&self) -> usize {
        self.set.lost.len()
    }

    pub fn passed(&self) -> bool {
        self.lost() == 0
            && self.violations.is_empty()
            && self.set.unexpected.is_empty()
            && self.tasks.violations.is_empty()
    }

    /// What the checkers looked at (register operations per kind, the task listings), then
    /// each task violation, a line each.
    pub fn checked_summary(&self) -> String {
        let t = &self.tasks;
        let mut out = format!(
            "chaos: register operations per kind: {:?}\n",
            self.register_ops
        );
        out += &format!(
            "chaos: tasks: {} scales and updates; {} nodes and {} tasks listings, {} tasks; \
             checked {} running slots, {} state changes, {} assignments; violations: {} too \
             many running, {} backwards, {} on a down node\n",
            self.task_changes,
            t.nodes_listings,
            t.task_listings,
            t.tasks,
            t.slots_checked,
            t.transitions_checked,
            t.assignments_checked,
            self.task_violations(|v| matches!(v, TaskViolation::TooManyRunning { .. })),
            self.task_violations(|v| matches!(v, TaskViolation::Backwards { .. })),
            self.task_violations(|v| matches!(v, TaskViolation::AssignedToDownNode { .. })),
        );
        for v in &t.violations {
            let _ = writeln!(out, "chaos: task invariant broken: {v:?}");
        }
        out
    }

    fn task_violations(&self, kind: impl Fn(&TaskViolation) -> bool) -> usize {
        self.tasks.violations.iter().filter(|v| kind(v)).count()
    }

    /// The summary line.
    pub fn line(&self) -> String {
        format!(
            "chaos: ops={} acknowledged={} unknown={} lost={} violations={} faults={}",
            self.ops,
            self.acknowledged,
            self.unknown,
            self.lost(),
            self.violations.len() + self.tasks.violations.len(),
            self.faults.len()
        )
    }

    /// The table of fault kinds: how many, and the time from each fault's start to the first
    /// write invoked after it that succeeded (p50, p99, max).
    pub fn faults_table(&self, history: &History) -> String {
        let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for f in &self.faults {
            let first_ok = history
                .writes_ok
                .iter()
                .filter(|(invoked, _)| *invoked >= f.started)
                .map(|(_, returned)| *returned)
                .min();
            let secs = first_ok.map_or(f64::INFINITY, |t| (t - f.started) as f64 / 1e9);
            by_kind.entry(f.fault.kind()).or_default().push(secs);
        }
        let mut out =
            String::from("fault kind       count  first write after it (s): p50    p99    max\n");
        for (kind, mut v) in by_kind {
            v.sort_by(|a, b| a.total_cmp(b));
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            let _ = writeln!(
                out,
                "{kind:<16} {:>5}  {:>31.2} {:>6.2} {:>6.2}",
                v.len(),
                q(0.5),
                q(0.99),
                v[v.len() - 1]
            );
        }
        out
    }
}
