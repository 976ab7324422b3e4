//! A compare-and-set register: the model of one swarm object updated with `?version=`.
//!
//! The harness keeps a value in an object's labels. A read answers the value. A
//! compare-and-set reads the object (value and version) and, if the value is the one
//! expected, updates it with `?version=` of that read; the update is refused when the object
//! changed in between. Every written value is unique, so "the version changed" and "the
//! value changed" are the same event, and the pair acts as one atomic compare-and-set of
//! values, linearized at the update's commit.

use serde::{Deserialize, Serialize};

use super::Model;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterOp {
    Read,
    /// Set `new` if the value is `expected`.
    Cas {
        expected: u64,
        new: u64,
    },
}

/// What it got back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegisterOut {
    Value(u64),
    /// The compare-and-set applied.
    Ok,
    /// Refused: the value was not the one expected (a 409 "update out of sequence", or the
    /// read already showed another value).
    Refused,
}

/// The register's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Register(pub u64);

impl Model for Register {
    type Input = RegisterOp;
    type Output = RegisterOut;

    fn step(&self, input: &RegisterOp, output: Option<&RegisterOut>) -> Option<Register> {
        match (input, output) {
            (RegisterOp::Read, Some(RegisterOut::Value(v))) => (*v == self.0).then_some(*self),
            // A read that never answered observed nothing.
            (RegisterOp::Read, None) => Some(*self),
            (RegisterOp::Cas { expected, new }, Some(RegisterOut::Ok)) => {
                (*expected == self.0).then_some(Register(*new))
            }
            (RegisterOp::Cas { expected, .. }, Some(RegisterOut::Refused)) => {
                (*expected != self.0).then_some(*self)
            }
            // Unknown: if it happened here, it applied when the value matched.
            (RegisterOp::Cas { expected, new }, None) => Some(if *expected == self.0 {
                Register(*new)
            } else {
                *self
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Operation, check_linearizable};

    fn op(
        client: u64,
        at: (u64, Option<u64>),
        input: RegisterOp,
        out: RegisterOut,
    ) -> Operation<RegisterOp, RegisterOut> {
        Operation {
            client,
            invoked: at.0,
            returned: at.1.map(|t| (t, out)),
            input,
        }
    }
    fn cas(expected: u64, new: u64) -> RegisterOp {
        RegisterOp::Cas { expected, new }
    }
    use RegisterOp::Read;
    use RegisterOut::{Ok as Applied, Refused, Value};

    #[test]
    fn sequential_history_is_linearizable_in_order() {
        let h = vec![
            op(1, (0, Some(1)), cas(0, 1), Applied),
            op(1, (2, Some(3)), Read, Value(1)),
            op(2, (4, Some(5)), cas(0, 2), Refused),
            op(2, (6, Some(7)), Read, Value(1)),
        ];
        let v = check_linearizable(Register(0), &h);
        assert_eq!(v, crate::check::Verdict::Linearizable(vec![0, 1, 2, 3]));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        // Client 1's write returned before client 2's read began; the read saw the old value.
        let h = vec![
            op(1, (0, Some(10)), cas(0, 1), Applied),
            op(2, (11, Some(12)), Read, Value(0)),
        ];
        let v = check_linearizable(Register(0), &h);
        assert!(!v.is_linearizable(), "{v:?}");
        let crate::check::Verdict::NotLinearizable { stuck_at, .. } = v else {
            unreachable!()
        };
        assert_eq!(stuck_at, 1);
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        // The read overlaps the write: old or new value are both fine.
        for seen in [0, 1] {
            let h = vec![
                op(1, (0, Some(10)), cas(0, 1), Applied),
                op(2, (5, Some(15)), Read, Value(seen)),
            ];
            assert!(
                check_linearizable(Register(0), &h).is_linearizable(),
                "read {seen}"
            );
        }
    }

    #[test]
    fn two_writers_cannot_both_win_one_compare_and_set() {
        let h = vec![
            op(1, (0, Some(10)), cas(0, 1), Applied),
            op(2, (0, Some(10)), cas(0, 2), Applied),
        ];
        assert!(!check_linearizable(Register(0), &h).is_linearizable());
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        // Timed out; later reads see it applied, or not: both linearizable.
        for seen in [0, 7] {
            let h = vec![
                op(1, (0, None), cas(0, 7), Applied),
                op(2, (20, Some(21)), Read, Value(seen)),
            ];
            assert!(
                check_linearizable(Register(0), &h).is_linearizable(),
                "read {seen}"
            );
        }
        // But not a value nobody wrote.
        let h = vec![
            op(1, (0, None), cas(0, 7), Applied),
            op(2, (20, Some(21)), Read, Value(8)),
        ];
        assert!(!check_linearizable(Register(0), &h).is_linearizable());
    }

    #[test]
    fn an_unknown_write_cannot_take_effect_before_it_was_invoked() {
        let h = vec![
            op(2, (0, Some(1)), Read, Value(7)),
            op(1, (5, None), cas(0, 7), Applied),
        ];
        assert!(!check_linearizable(Register(0), &h).is_linearizable());
    }

    #[test]
    fn a_value_that_flips_back_is_caught() {
        // 0 -> 1 acknowledged, then reads see 1, then 0 again: a lost write.
        let h = vec![
            op(1, (0, Some(1)), cas(0, 1), Applied),
            op(2, (2, Some(3)), Read, Value(1)),
            op(3, (4, Some(5)), Read, Value(0)),
        ];
        assert!(!check_linearizable(Register(0), &h).is_linearizable());
    }

    /// Many clients, long history: a correct register (a mutex-protected value, simulated
    /// with random overlaps) is always linearizable, and the search stays fast.
    #[test]
    fn long_concurrent_histories_of_a_correct_register_pass() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 64,
            ..Config::default()
        });
        runner
            .run(
                &proptest::collection::vec((0u64..5, 0u64..3, 1u64..20, 0u64..10), 1..200),
                |steps| {
                    // Each step: a client does an op that takes effect at `t`, invoked up to
                    // `pre` earlier and returning `post` later.
                    let mut value = 0u64;
                    let mut next_value = 1u64;
                    let mut history = Vec::new();
                    let mut t = 100u64;
                    let mut busy_until = [0u64; 5];
                    for (client, kind, pre, post) in steps {
                        t += 3;
                        let invoked = t.saturating_sub(pre).max(busy_until[client as usize] + 1);
                        if invoked > t {
                            continue;
                        }
                        let returned = t + post;
                        busy_until[client as usize] = returned;
                        let (input, out) = match kind {
                            0 => (RegisterOp::Read, Value(value)),
                            1 => {
                                let new = next_value;
                                next_value += 1;
                                let c = cas(value, new);
                                value = new;
                                (c, Applied)
                            }
                            _ => (cas(value + 1000, next_value), Refused),
                        };
                        history.push(op(client, (invoked, Some(returned)), input, out));
                    }
                    prop_assert!(check_linearizable(Register(0), &history).is_linearizable());
                    Ok(())
                },
            )
            .unwrap();
    }
}
