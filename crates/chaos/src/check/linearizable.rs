//! Linearizability of a history against a sequential model: the Wing–Gong search as Lowe
//! improved it (a cache of (linearized set, model state) pairs already explored), the
//! algorithm of Porcupine and Knossos's `wgl`.
//!
//! The search walks the invocation and return events in time order. At an invocation it
//! tries to linearize that operation now: if the model accepts its output and the pair
//! (operations linearized, resulting state) is new, the operation is taken out of the list
//! and the walk starts over; otherwise it moves on. Reaching a return event whose operation
//! is not linearized yet means the choices so far are wrong: it backtracks to the last
//! choice. Operations with an unknown outcome return "at infinity": they may be linearized
//! at any point after their invocation, or not at all (last, where nothing observes them).

use std::collections::HashSet;
use std::hash::Hash;

use super::Operation;

/// A sequential object: what one operation does to the state and whether the output seen
/// is one it could give.
pub trait Model: Clone + Eq + Hash {
    type Input;
    type Output;
    /// The state after `input`, if `output` is what the object could answer from `self`.
    /// `output` is `None` for an operation with an unknown outcome: the step must then
    /// accept (the effect, if any, is the operation's effect when it did happen).
    fn step(&self, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self>;
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An order exists: the operations' indexes, in linearization order (operations of
    /// unknown outcome left out when they need not have happened).
    Linearizable(Vec<usize>),
    /// No order exists. `longest` is the longest prefix of an order the search found, and
    /// `stuck_at` an operation (index) that could not be placed after it: where to look.
    NotLinearizable {
        longest: Vec<usize>,
        stuck_at: usize,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable(_))
    }
}

/// A node of the doubly linked event list (index 0 is the head sentinel).
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event (`usize::MAX`: returns at infinity).
    matching: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

struct Events(Vec<Event>);

impl Events {
    /// Takes a call (and its return, if any) out of the list.
    fn lift(&mut self, call: usize) {
        let Event {
            prev,
            next,
            matching,
            ..
        } = self.0[call];
        self.0[prev].next = next;
        if next != NONE {
            self.0[next].prev = prev;
        }
        if matching != NONE {
            let Event { prev, next, .. } = self.0[matching];
            self.0[prev].next = next;
            if next != NONE {
                self.0[next].prev = prev;
            }
        }
    }

    /// Puts a lifted call (and its return) back, in reverse order of lifting.
    fn unlift(&mut self, call: usize) {
        let matching = self.0[call].matching;
        if matching != NONE {
            let Event { prev, next, .. } = self.0[matching];
            self.0[prev].next = matching;
            if next != NONE {
                self.0[next].prev = matching;
            }
        }
        let Event { prev, next, .. } = self.0[call];
        self.0[prev].next = call;
        if next != NONE {
            self.0[next].prev = call;
        }
    }
}

/// Checks `history` against `init`. Exponential in the worst case (the problem is
/// NP-complete); the cache keeps the usual histories (a few clients per key) fast. Check
/// each independent object (register, key) on its own.
pub fn check_linearizable<M: Model>(
    init: M,
    history: &[Operation<M::Input, M::Output>],
) -> Verdict {
    // Events in time order; at equal times returns come before calls (an operation that
    // returned at t did not overlap one invoked at t), except an operation's own return,
    // which always follows its call.
    let mut order: Vec<((u64, u8), bool, usize)> = Vec::with_capacity(history.len() * 2);
    for (i, op) in history.iter().enumerate() {
        order.push(((op.invoked, 1), true, i));
        if let Some((t, _)) = &op.returned {
            let t = (*t).max(op.invoked);
            order.push(((t, if t == op.invoked { 2 } else { 0 }), false, i));
        }
    }
    order.sort_by_key(|&(at, _, i)| (at, i));
    let mut events = vec![Event {
        op: NONE,
        is_call: false,
        matching: NONE,
        prev: NONE,
        next: NONE,
    }];
    let mut call_of = vec![NONE; history.len()];
    for &(_, is_call, op) in &order {
        let at = events.len();
        let prev = at - 1;
        events[prev].next = at;
        events.push(Event {
            op,
            is_call,
            matching: NONE,
            prev,
            next: NONE,
        });
        if is_call {
            call_of[op] = at;
        } else {
            events[call_of[op]].matching = at;
        }
    }
    let mut events = Events(events);

    let words = history.len().div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, M)> = HashSet::new();
    let mut stack: Vec<(usize, M)> = Vec::new();
    let mut state = init;
    let mut longest: Vec<usize> = Vec::new();
    let mut stuck_at = NONE;
    // Operations with a known outcome not linearized yet; done when none is left (the
    // unknown ones may all not have happened).
    let mut unplaced = history.iter().filter(|op| op.returned.is_some()).count();
    let mut entry = events.0[0].next;
    while unplaced > 0 {
        let e = events.0[entry];
        if e.is_call {
            let op = &history[e.op];
            let output = op.returned.as_ref().map(|(_, o)| o);
            if let Some(next) = state.step(&op.input, output) {
                linearized[e.op / 64] |= 1 << (e.op % 64);
                if seen.insert((linearized.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    events.lift(entry);
                    if e.matching != NONE {
                        unplaced -= 1;
                    }
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(c, _)| events.0[*c].op).collect();
                    }
                    entry = events.0[0].next;
                    continue;
                }
                linearized[e.op / 64] &= !(1 << (e.op % 64));
            }
            entry = e.next;
        } else {
            // A return whose operation is not linearized: undo the last choice.
            if stack.len() >= longest.len() {
                stuck_at = e.op;
            }
            let Some((call, prev_state)) = stack.pop() else {
                return Verdict::NotLinearizable { longest, stuck_at };
            };
            let op = events.0[call].op;
            state = prev_state;
            linearized[op / 64] &= !(1 << (op % 64));
            events.unlift(call);
            if events.0[call].matching != NONE {
                unplaced += 1;
            }
            entry = events.0[call].next;
        }
    }
    Verdict::Linearizable(stack.iter().map(|(c, _)| events.0[*c].op).collect())
}
