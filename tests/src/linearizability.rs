//! A linearizability checker for key-value histories: the Wing–Gong
//! algorithm with Lowe's memoization (as porcupine implements it), run per
//! key, since operations on different keys never constrain each other.
//!
//! Each key is a register holding a value or nothing. A history is the
//! list of operations clients invoked, each with its invocation and
//! completion time and what it returned. An operation whose outcome is
//! unknown (a timeout) is recorded as completing "at infinity" (`ret` =
//! `u64::MAX`): it may take effect at any point after its invocation, or
//! never. Each such operation doubles the space the search may have to
//! walk, so [`settle`] first uses the store's complete event log to drop the
//! ones that never took effect and to bound when the others did.

use std::collections::{BTreeMap, HashSet};

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Read,
    Write(u64),
    Delete,
    /// Delete the key if it holds `expect`.
    DeleteIf {
        expect: u64,
    },
    /// Write `new` if the key holds `expect` (None: the key is absent).
    Cas {
        expect: Option<u64>,
        new: u64,
    },
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A read's value.
    Value(Option<u64>),
    /// A write or delete that was acknowledged.
    Done,
    /// A compare-and-swap (or conditional delete): whether it swapped.
    Swapped(bool),
    /// No answer (timeout, lost connection): it may or may not have happened.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Operation {
    pub key: String,
    pub input: Input,
    pub output: Output,
    /// Invocation and completion, in any monotonic unit (e.g. nanoseconds).
    pub call: u64,
    pub ret: u64,
}

/// The register's next state if `output` is a possible result of `input`
/// in `state`, or None.
fn step(state: Option<u64>, input: &Input, output: &Output) -> Option<Option<u64>> {
    match (input, output) {
        (Input::Read, Output::Value(v)) => (*v == state).then_some(state),
        (Input::Read, Output::Unknown) => Some(state),
        (Input::Write(v), Output::Done | Output::Unknown) => Some(Some(*v)),
        (Input::Delete, Output::Done | Output::Unknown) => Some(None),
        (Input::DeleteIf { expect }, Output::Swapped(true)) => (state == Some(*expect)).then_some(None),
        (Input::DeleteIf { expect }, Output::Swapped(false)) => (state != Some(*expect)).then_some(state),
        (Input::DeleteIf { expect }, Output::Unknown) => Some(if state == Some(*expect) { None } else { state }),
        (Input::Cas { expect, new }, Output::Swapped(true)) => (state == *expect).then_some(Some(*new)),
        (Input::Cas { expect, .. }, Output::Swapped(false)) => (state != *expect).then_some(state),
        (Input::Cas { expect, new }, Output::Unknown) => Some(if state == *expect { Some(*new) } else { state }),
        _ => None,
    }
}

/// The revision at which `op`'s change shows in the log: where its value
/// was written, or where the value it deletes was deleted.
fn effect_in_log(
    op: &Operation,
    written: &impl Fn(&str, u64) -> Option<i64>,
    deleted: &impl Fn(&str, u64) -> Option<i64>,
) -> Option<i64> {
    match op.input {
        Input::Write(v) | Input::Cas { new: v, .. } => written(&op.key, v),
        Input::DeleteIf { expect } => deleted(&op.key, expect),
        _ => None,
    }
}

/// Settles unanswered operations with what the store's complete event log
/// says, given where each value was written and where each value was
/// deleted (by revision):
/// - a write, compare-and-swap or conditional delete whose effect is not in
///   the log never took effect: it is dropped;
/// - one whose effect is at revision `r` took effect before any answered
///   operation whose own effect has a higher revision returned (the store
///   applies revisions in order): that return time becomes its completion,
///   and a write or compare-and-swap becomes answered (it happened).
///
/// Unconditional deletes cannot be told apart in the log and stay unsettled.
pub fn settle(
    history: &[Operation],
    written: impl Fn(&str, u64) -> Option<i64>,
    deleted: impl Fn(&str, u64) -> Option<i64>,
) -> Vec<Operation> {
    let effect = |op: &Operation| effect_in_log(op, &written, &deleted);
    // (revision, return) of answered operations with a visible effect, and
    // from each position on, the earliest return.
    let mut answered: Vec<(i64, u64)> = history
        .iter()
        .filter(|op| matches!(op.output, Output::Done | Output::Swapped(true)))
        .filter_map(|op| Some((effect(op)?, op.ret)))
        .collect();
    answered.sort();
    let mut earliest_after = vec![u64::MAX; answered.len() + 1];
    for i in (0..answered.len()).rev() {
        earliest_after[i] = earliest_after[i + 1].min(answered[i].1);
    }
    let bound = |revision: i64| earliest_after[answered.partition_point(|(r, _)| *r <= revision)];
    let settled: Vec<Operation> = history
        .iter()
        .filter_map(|op| {
            if op.output != Output::Unknown || matches!(op.input, Input::Read | Input::Delete) {
                return Some(op.clone());
            }
            let revision = effect(op)?;
            let mut settled = op.clone();
            settled.ret = bound(revision).min(op.ret).max(op.call);
            settled.output = match op.input {
                Input::Write(_) => Output::Done,
                Input::Cas { .. } => Output::Swapped(true),
                _ => Output::Unknown,
            };
            Some(settled)
        })
        .collect();
    merge_unanswered_conditional_deletes(settled)
}

/// A value is written once, so of the conditional deletes that expect it,
/// at most one finds it; the others change nothing. Unanswered ones are
/// therefore dropped where an answered one deleted the value, and merged
/// where their intervals overlap: "one of them deleted it, somewhere in its
/// own interval" is "it was deleted somewhere in their union". Without this,
/// a client retrying the same delete through an outage leaves dozens of
/// them in flight, and the search would try every subset.
fn merge_unanswered_conditional_deletes(history: Vec<Operation>) -> Vec<Operation> {
    let unanswered_delete_if = |op: &Operation| match (&op.input, &op.output) {
        (Input::DeleteIf { expect }, Output::Unknown) => Some((op.key.clone(), *expect)),
        _ => None,
    };
    let found: HashSet<(String, u64)> = history
        .iter()
        .filter_map(|op| match (&op.input, &op.output) {
            (Input::DeleteIf { expect }, Output::Swapped(true)) => Some((op.key.clone(), *expect)),
            _ => None,
        })
        .collect();
    let mut groups: BTreeMap<(String, u64), Vec<Operation>> = BTreeMap::new();
    let mut rest = Vec::with_capacity(history.len());
    for op in history {
        match unanswered_delete_if(&op) {
            Some(group) if found.contains(&group) => {}
            Some(group) => groups.entry(group).or_default().push(op),
            None => rest.push(op),
        }
    }
    for mut ops in groups.into_values() {
        ops.sort_by_key(|op| op.call);
        let mut merged: Vec<Operation> = Vec::new();
        for op in ops {
            match merged.last_mut() {
                Some(last) if op.call <= last.ret => last.ret = last.ret.max(op.ret),
                _ => merged.push(op),
            }
        }
        rest.extend(merged);
    }
    rest
}

/// A violation: the key whose history cannot be linearized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub operations: usize,
}

/// Checks every key's history; returns the keys that are not linearizable.
pub fn check(history: &[Operation]) -> Vec<Violation> {
    check_with(history, |_, _| None, |_, _| None)
}

/// Like [`check`], with the complete event log as a witness (where each
/// value was written and where each was deleted, as for [`settle`]). Where
/// a segment's changes all show in the log, the value it leaves is the
/// result of the latest of them, and only that value is searched for.
pub fn check_with(
    history: &[Operation],
    written: impl Fn(&str, u64) -> Option<i64>,
    deleted: impl Fn(&str, u64) -> Option<i64>,
) -> Vec<Violation> {
    let effect = |op: &Operation| effect_in_log(op, &written, &deleted);
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        // A read that never answered tells nothing.
        if op.input == Input::Read && op.output == Output::Unknown {
            continue;
        }
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    by_key
        .into_iter()
        .filter(|(_, ops)| !check_key(ops, &effect))
        .map(|(key, ops)| Violation { key: key.to_string(), operations: ops.len() })
        .collect()
}

/// One event of the doubly linked list the search walks.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    matching: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Events {
    list: Vec<Event>,
    head: Option<usize>,
}

impl Events {
    fn new(ops: &[&Operation]) -> Events {
        // Calls sort before returns at the same instant: touching operations
        // count as concurrent, which never rejects a correct history.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.call, false, i));
            order.push((op.ret, true, i));
        }
        order.sort();
        let mut call_at = vec![0; ops.len()];
        let mut list: Vec<Event> = Vec::with_capacity(order.len());
        for (pos, (_, is_return, op)) in order.iter().enumerate() {
            list.push(Event {
                op: *op,
                is_call: !is_return,
                matching: 0,
                prev: pos.checked_sub(1),
                next: (pos + 1 < order.len()).then_some(pos + 1),
            });
            if *is_return {
                list[call_at[*op]].matching = pos;
            } else {
                call_at[*op] = pos;
            }
        }
        Events { head: (!list.is_empty()).then_some(0), list }
    }

    fn unlink(&mut self, at: usize) {
        let Event { prev, next, .. } = self.list[at];
        match prev {
            Some(p) => self.list[p].next = next,
            None => self.head = next,
        }
        if let Some(n) = next {
            self.list[n].prev = prev;
        }
    }

    fn relink(&mut self, at: usize) {
        let Event { prev, next, .. } = self.list[at];
        match prev {
            Some(p) => self.list[p].next = Some(at),
            None => self.head = Some(at),
        }
        if let Some(n) = next {
            self.list[n].prev = Some(at);
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.list[call].matching);
    }

    /// Puts them back, in the reverse order.
    fn unlift(&mut self, call: usize) {
        self.relink(self.list[call].matching);
        self.relink(call);
    }
}

/// A random 128-bit tag per operation: the set of linearized operations is
/// remembered as the XOR of their tags, so each step of the search costs the
/// same however long the history is. Two different sets collide with
/// probability 2^-128.
fn tag(op: usize) -> u128 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let op = op as u64;
    (u128::from(mix(op)) << 64) | u128::from(mix(op ^ 0xA5A5_A5A5_A5A5_A5A5))
}

/// Checks one key's history in segments. Wherever every operation invoked
/// so far has returned before the next one is invoked, the history can be
/// cut: the first part may end in a few possible values, and the rest is
/// checked from each of them. Long histories thus cost the sum of their
/// segments, not the product.
fn check_key(ops: &[&Operation], effect: &impl Fn(&Operation) -> Option<i64>) -> bool {
    let mut sorted: Vec<&Operation> = ops.to_vec();
    sorted.sort_by_key(|op| op.call);
    let mut states: HashSet<Option<u64>> = HashSet::from([None]);
    let mut start = 0;
    let mut latest_return = 0;
    for i in 0..sorted.len() {
        latest_return = latest_return.max(sorted[i].ret);
        let last = i + 1 == sorted.len();
        if !last && latest_return >= sorted[i + 1].call {
            continue;
        }
        let segment = &sorted[start..=i];
        if last {
            return states.iter().any(|from| search(segment, *from, None));
        }
        let candidates = witnessed_end(segment, effect).map_or_else(
            || candidate_ends(segment, &states),
            |end| {
                // Nothing changed the value here: it is still what it was.
                end.map_or_else(|| states.clone(), |value| HashSet::from([value]))
            },
        );
        let mut ends = HashSet::new();
        for end in candidates {
            if states.iter().any(|from| search(segment, *from, Some(end))) {
                ends.insert(end);
            }
        }
        if ends.is_empty() {
            return false;
        }
        states = ends;
        start = i + 1;
        latest_return = 0;
    }
    true
}

/// What a segment's value change result is, when every operation that may
/// change the value has a known effect revision: Some(None) when none
/// changes it, Some(Some(value)) for the latest change's result; None when
/// something is uncertain.
fn witnessed_end(segment: &[&Operation], effect: &impl Fn(&Operation) -> Option<i64>) -> Option<Option<Option<u64>>> {
    let mut latest: Option<(i64, Option<u64>)> = None;
    for op in segment {
        let result = match (&op.input, &op.output) {
            (Input::Write(v), Output::Done) => Some(*v),
            (Input::Cas { new, .. }, Output::Swapped(true)) => Some(*new),
            (Input::DeleteIf { .. }, Output::Swapped(true)) | (Input::Delete, Output::Done) => None,
            (Input::Read, _) | (Input::Cas { .. } | Input::DeleteIf { .. }, Output::Swapped(false)) => continue,
            // An unanswered change: whether and when it took effect is uncertain.
            _ => return None,
        };
        let revision = effect(op)?;
        if latest.is_none_or(|(r, _)| revision > r) {
            latest = Some((revision, result));
        }
    }
    Some(latest.map(|(_, value)| value))
}

/// The values a segment might leave: the results of the operations that
/// may change the value and that no surely-applied change followed in real
/// time; and the values it started from, if nothing surely changed it.
fn candidate_ends(segment: &[&Operation], starts: &HashSet<Option<u64>>) -> HashSet<Option<u64>> {
    let result = |op: &Operation| -> Option<Option<u64>> {
        match (&op.input, &op.output) {
            (Input::Write(v), Output::Done | Output::Unknown) => Some(Some(*v)),
            (Input::Cas { new, .. }, Output::Swapped(true) | Output::Unknown) => Some(Some(*new)),
            (Input::Delete, Output::Done | Output::Unknown) => Some(None),
            (Input::DeleteIf { .. }, Output::Swapped(true) | Output::Unknown) => Some(None),
            _ => None,
        }
    };
    let surely = |op: &Operation| {
        matches!(
            (&op.input, &op.output),
            (Input::Write(_) | Input::Delete, Output::Done)
                | (Input::Cas { .. } | Input::DeleteIf { .. }, Output::Swapped(true))
        )
    };
    let mut ends = HashSet::new();
    for op in segment {
        let Some(value) = result(op) else { continue };
        if !segment.iter().any(|later| surely(later) && op.ret < later.call) {
            ends.insert(value);
        }
    }
    if !segment.iter().any(|op| surely(op)) {
        ends.extend(starts.iter().copied());
    }
    ends
}

/// Whether the operations of `ops` can be linearized from `from` (ending
/// with the value `end`, when given): Wing–Gong–Lowe with the memo.
fn search(ops: &[&Operation], from: Option<u64>, end: Option<Option<u64>>) -> bool {
    // The end value is checked by a read after everything else.
    let after = ops.iter().map(|op| op.ret).max().unwrap_or(0).saturating_add(1);
    let probe = end.map(|value| Operation {
        key: String::new(),
        input: Input::Read,
        output: Output::Value(value),
        call: after,
        ret: after.saturating_add(1),
    });
    let mut all: Vec<&Operation> = ops.to_vec();
    if let Some(probe) = &probe {
        all.push(probe);
    }
    let ops = all;
    let mut events = Events::new(&ops);
    let mut linearized: u128 = 0;
    let mut seen: HashSet<(u128, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state = from;
    let mut cursor = events.head;
    while let Some(at) = cursor {
        let event = events.list[at];
        if event.is_call {
            let op = ops[event.op];
            if let Some(next) = step(state, &op.input, &op.output) {
                let after = linearized ^ tag(event.op);
                if seen.insert((after, next)) {
                    stack.push((at, state));
                    linearized = after;
                    state = next;
                    events.lift(at);
                    cursor = events.head;
                    continue;
                }
            }
            cursor = event.next;
        } else {
            // An operation completed before it could be placed: undo the last choice.
            let Some((call, previous)) = stack.pop() else {
                return false;
            };
            linearized ^= tag(events.list[call].op);
            state = previous;
            events.unlift(call);
            cursor = events.list[call].next;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(input: Input, output: Output, call: u64, ret: u64) -> Operation {
        Operation { key: "k".into(), input, output, call, ret }
    }

    #[test]
    fn sequential_register_is_linearizable() {
        let h = [
            op(Input::Write(1), Output::Done, 0, 1),
            op(Input::Read, Output::Value(Some(1)), 2, 3),
            op(Input::Cas { expect: Some(1), new: 2 }, Output::Swapped(true), 4, 5),
            op(Input::Read, Output::Value(Some(2)), 6, 7),
            op(Input::Delete, Output::Done, 8, 9),
            op(Input::Read, Output::Value(None), 10, 11),
        ];
        assert!(check(&h).is_empty());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_not() {
        let h = [
            op(Input::Write(1), Output::Done, 0, 1),
            op(Input::Write(2), Output::Done, 2, 3),
            op(Input::Read, Output::Value(Some(1)), 4, 5),
        ];
        assert_eq!(check(&h), vec![Violation { key: "k".into(), operations: 3 }]);
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // The read overlaps both writes: seeing either value is fine.
        for seen in [1, 2] {
            let h = [
                op(Input::Write(1), Output::Done, 0, 10),
                op(Input::Write(2), Output::Done, 1, 9),
                op(Input::Read, Output::Value(Some(seen)), 2, 8),
            ];
            assert!(check(&h).is_empty(), "seeing {seen}");
        }
    }

    #[test]
    fn reads_may_not_go_back_in_time() {
        // Two reads in sequence, both concurrent with one write: new then old is impossible.
        let h = [
            op(Input::Write(1), Output::Done, 0, 1),
            op(Input::Write(2), Output::Done, 2, 20),
            op(Input::Read, Output::Value(Some(2)), 3, 4),
            op(Input::Read, Output::Value(Some(1)), 5, 6),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    const NEVER: u64 = u64::MAX;

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let happened = [op(Input::Write(1), Output::Unknown, 0, NEVER), op(Input::Read, Output::Value(Some(1)), 5, 6)];
        assert!(check(&happened).is_empty());
        let never_seen = [op(Input::Write(1), Output::Unknown, 0, NEVER), op(Input::Read, Output::Value(None), 5, 6)];
        assert!(check(&never_seen).is_empty());
        // But it cannot take effect before it was invoked.
        let too_early = [op(Input::Read, Output::Value(Some(1)), 0, 1), op(Input::Write(1), Output::Unknown, 5, NEVER)];
        assert_eq!(check(&too_early).len(), 1);
    }

    #[test]
    fn conditional_deletes_delete_only_the_expected_value() {
        let h = [
            op(Input::Write(1), Output::Done, 0, 1),
            op(Input::DeleteIf { expect: 2 }, Output::Swapped(false), 2, 3),
            op(Input::DeleteIf { expect: 1 }, Output::Swapped(true), 4, 5),
            op(Input::Read, Output::Value(None), 6, 7),
        ];
        assert!(check(&h).is_empty());
        let lying =
            [op(Input::Write(1), Output::Done, 0, 1), op(Input::DeleteIf { expect: 1 }, Output::Swapped(false), 2, 3)];
        assert_eq!(check(&lying).len(), 1);
    }

    #[test]
    fn compare_and_swap_results_must_agree_with_the_value() {
        let lying = [
            op(Input::Write(1), Output::Done, 0, 1),
            op(Input::Cas { expect: Some(1), new: 2 }, Output::Swapped(false), 2, 3),
        ];
        assert_eq!(check(&lying).len(), 1);
        let double = [
            op(Input::Write(1), Output::Done, 0, 1),
            op(Input::Cas { expect: Some(1), new: 2 }, Output::Swapped(true), 2, 10),
            op(Input::Cas { expect: Some(1), new: 3 }, Output::Swapped(true), 3, 9),
        ];
        assert_eq!(check(&double).len(), 1, "two swaps from the same value cannot both win");
    }

    #[test]
    fn settling_drops_what_never_applied_and_bounds_what_did() {
        let h = [
            op(Input::Write(1), Output::Unknown, 0, NEVER), // never applied
            op(Input::Cas { expect: None, new: 2 }, Output::Unknown, 0, NEVER), // applied at 10
            op(Input::Write(3), Output::Done, 20, 30),      // applied at 11
            op(Input::DeleteIf { expect: 3 }, Output::Unknown, 31, NEVER), // applied at 12
            op(Input::Write(4), Output::Done, 40, 50),      // applied at 13
            op(Input::Delete, Output::Unknown, 0, NEVER),   // cannot tell
        ];
        let written = |_: &str, v: u64| match v {
            2 => Some(10),
            3 => Some(11),
            4 => Some(13),
            _ => None,
        };
        let deleted = |_: &str, v: u64| (v == 3).then_some(12);
        let settled = settle(&h, written, deleted);
        let summary: Vec<(&Input, &Output, u64)> = settled.iter().map(|o| (&o.input, &o.output, o.ret)).collect();
        assert_eq!(
            summary,
            [
                (&Input::Cas { expect: None, new: 2 }, &Output::Swapped(true), 30),
                (&Input::Write(3), &Output::Done, 30),
                (&Input::Write(4), &Output::Done, 50),
                (&Input::Delete, &Output::Unknown, NEVER),
                (&Input::DeleteIf { expect: 3 }, &Output::Unknown, 50),
            ]
        );
        assert!(check(&settled).is_empty());
    }

    #[test]
    fn retried_conditional_deletes_are_one_and_check_quickly() {
        // A client retries the same delete through an outage, 100 times.
        let mut h = vec![op(Input::Write(5), Output::Done, 0, 1)];
        h.extend((0..100).map(|i| op(Input::DeleteIf { expect: 5 }, Output::Unknown, 2 + i, 200)));
        h.push(op(Input::Read, Output::Value(None), 201, 202));
        let deleted = |_: &str, v: u64| (v == 5).then_some(3);
        let settled = settle(&h, |_, v| (v == 5).then_some(2), deleted);
        assert_eq!(settled.len(), 3, "the retries are one delete spanning them all");
        assert!(check(&settled).is_empty());

        // Where an answered delete found the value, the unanswered ones did not.
        h.push(op(Input::DeleteIf { expect: 5 }, Output::Swapped(true), 150, 160));
        assert_eq!(settle(&h, |_, v| (v == 5).then_some(2), deleted).len(), 3);
    }

    #[test]
    fn unanswered_deletes_apart_in_time_are_not_merged() {
        // The value is still there after the first delete's interval and
        // gone before the second's: merging the two would excuse that.
        let h = [
            op(Input::Write(5), Output::Done, 0, 1),
            op(Input::DeleteIf { expect: 5 }, Output::Unknown, 2, 3),
            op(Input::Read, Output::Value(Some(5)), 4, 5),
            op(Input::Read, Output::Value(None), 6, 7),
            op(Input::DeleteIf { expect: 5 }, Output::Unknown, 20, 21),
        ];
        let settled = settle(&h, |_, v| (v == 5).then_some(2), |_, v| (v == 5).then_some(3));
        assert_eq!(check(&settled).len(), 1);
    }

    #[test]
    fn segments_carry_every_value_the_key_may_hold() {
        // Two concurrent writes, then (after a quiet gap) a read of either is fine...
        for seen in [1, 2] {
            let h = [
                op(Input::Write(1), Output::Done, 0, 10),
                op(Input::Write(2), Output::Done, 1, 9),
                op(Input::Read, Output::Value(Some(seen)), 20, 21),
                op(Input::Read, Output::Value(Some(seen)), 30, 31),
            ];
            assert!(check(&h).is_empty(), "seeing {seen}");
        }
        // ...but the value may not change back across segments.
        let h = [
            op(Input::Write(1), Output::Done, 0, 10),
            op(Input::Write(2), Output::Done, 1, 9),
            op(Input::Read, Output::Value(Some(1)), 20, 21),
            op(Input::Read, Output::Value(Some(2)), 30, 31),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn a_witness_fixes_which_concurrent_write_came_last() {
        let h = [
            op(Input::Write(1), Output::Done, 0, 10),
            op(Input::Write(2), Output::Done, 1, 9),
            op(Input::Read, Output::Value(Some(1)), 20, 21),
        ];
        let nothing_deleted = |_: &str, _: u64| None;
        assert_eq!(check_with(&h, |_, v| Some(v as i64), nothing_deleted).len(), 1, "the log says 2 was written last");
        assert!(check_with(&h, |_, v| Some(10 - v as i64), nothing_deleted).is_empty());
    }

    #[test]
    fn a_long_history_of_many_segments_checks_quickly() {
        let mut h = Vec::new();
        for i in 0..20_000u64 {
            let t = i * 10;
            h.push(op(Input::Write(i), Output::Done, t, t + 4));
            h.push(op(Input::Read, Output::Value(Some(i)), t + 1, t + 5));
            h.push(op(Input::Cas { expect: Some(i), new: i + 100_000 }, Output::Swapped(false), t + 2, t + 3));
        }
        let started = std::time::Instant::now();
        assert!(check(&h).is_empty());
        // A stale read at the very end is still caught.
        h.push(op(Input::Read, Output::Value(Some(0)), 300_000, 300_001));
        assert_eq!(check(&h).len(), 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut h = vec![op(Input::Write(1), Output::Done, 0, 1)];
        h.push(Operation { key: "other".into(), ..op(Input::Read, Output::Value(None), 2, 3) });
        assert!(check(&h).is_empty());
    }

    #[test]
    fn many_concurrent_writers_check_quickly() {
        // 12 concurrent writes then a read of the last: a search space the cache keeps small.
        let mut h: Vec<Operation> = (0..12).map(|i| op(Input::Write(i), Output::Done, i, 100)).collect();
        h.push(op(Input::Read, Output::Value(Some(7)), 101, 102));
        assert!(check(&h).is_empty());
    }
}
