//! Where a write's time goes: one histogram per stage of its path.
//!
//! On the leader a write is queued in the batcher, proposed to Raft,
//! appended to the log writer's queue, fsynced, committed (a quorum has it),
//! applied, and answered. On a follower an AppendEntries is received, its
//! entries appended and fsynced, and the leader answered; a client write
//! made at a follower is forwarded to the leader and answered once this
//! member has applied it too.
//!
//! The storage callbacks stamp each log index as it passes a stage, in a ring
//! of atomics (no lock, no allocation on the write path). Whoever sees the
//! write last (the batcher on the leader, the peer service on a follower)
//! reads its index's stamps and observes every stage at once. A stamp that
//! was overwritten (the ring wrapped, or a follower's log was truncated) is
//! skipped, never misattributed: each slot carries its index.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::Histogram;

/// The stages, each a label value of `shoal_write_stage_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Leader: from the request handler's call to the batcher to the batch's proposal.
    Queued,
    /// Leader: from the proposal to Raft until the log store was handed the entry.
    ProposedToAppended,
    /// Leader and follower: from the log store's append to the end of its fsync.
    AppendedToFsynced,
    /// Leader: from the append to the commit (a quorum has the entry on disk).
    AppendedToCommitted,
    /// Leader: from the commit to the end of the state machine's apply.
    CommittedToApplied,
    /// Leader: from the apply to the batcher handing the answer back.
    AppliedToAnswered,
    /// Leader: from the call to the batcher to the answer, all stages together.
    LeaderTotal,
    /// Follower: from an AppendEntries' arrival to the log store's append.
    ReceivedToAppended,
    /// Follower: from the end of the fsync to the AppendEntries' answer.
    FsyncedToAnswered,
    /// Follower: a client write sent to the leader, until its answer.
    Forwarded,
    /// Follower: from the leader's answer until this member applied the write.
    ForwardedToAppliedHere,
    /// Follower: how long before the leader's answer arrived this member had
    /// applied the write itself (the writes it applied after are not counted).
    AppliedHereBeforeAnswer,
}

const STAGES: [(Stage, &str, &str); 12] = [
    (Stage::Queued, "leader", "queued"),
    (Stage::ProposedToAppended, "leader", "proposed_to_appended"),
    (Stage::AppendedToFsynced, "any", "appended_to_fsynced"),
    (Stage::AppendedToCommitted, "leader", "appended_to_committed"),
    (Stage::CommittedToApplied, "leader", "committed_to_applied"),
    (Stage::AppliedToAnswered, "leader", "applied_to_answered"),
    (Stage::LeaderTotal, "leader", "total"),
    (Stage::ReceivedToAppended, "follower", "received_to_appended"),
    (Stage::FsyncedToAnswered, "follower", "fsynced_to_answered"),
    (Stage::Forwarded, "follower", "forwarded"),
    (Stage::ForwardedToAppliedHere, "follower", "forwarded_to_applied_here"),
    (Stage::AppliedHereBeforeAnswer, "follower", "applied_here_before_answer"),
];

/// 10 µs to about 1.3 s.
fn stage_buckets() -> Histogram {
    Histogram::exponential(0.000_01, 2.0, 18)
}

/// 1 to 4096.
fn size_buckets() -> Histogram {
    Histogram::counts(13)
}

static STAGE_HISTOGRAMS: LazyLock<Vec<Histogram>> = LazyLock::new(|| STAGES.iter().map(|_| stage_buckets()).collect());
/// Raft entries made durable by one fsync of the log.
pub static FSYNC_BATCH_ENTRIES: LazyLock<Histogram> = LazyLock::new(size_buckets);
/// Raft entries applied by one call of the state machine.
pub static APPLY_BATCH_ENTRIES: LazyLock<Histogram> = LazyLock::new(size_buckets);
/// Client writes carried by one Raft entry (the batcher's group).
pub static ENTRY_WRITES: LazyLock<Histogram> = LazyLock::new(size_buckets);

pub fn observe(stage: Stage, took: Duration) {
    let i = STAGES.iter().position(|(s, _, _)| *s == stage).expect("invariant: every stage is listed");
    STAGE_HISTOGRAMS[i].observe(took);
}

/// A point a log index passes, stamped by the storage callbacks.
#[derive(Clone, Copy, Debug)]
pub enum Stamp {
    Appended = 0,
    Fsynced = 1,
    Committed = 2,
    Applied = 3,
}

const RING: usize = 1 << 13;

#[derive(Default)]
struct Slot {
    index: AtomicU64,
    /// Nanoseconds since [`EPOCH`] plus one; zero is "not stamped".
    at: [AtomicU64; 4],
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
static SLOTS: LazyLock<Vec<Slot>> = LazyLock::new(|| (0..RING).map(|_| Slot::default()).collect());
/// The highest index stamped committed so far.
static COMMITTED: AtomicU64 = AtomicU64::new(0);

fn slot(index: u64) -> &'static Slot {
    &SLOTS[(index % RING as u64) as usize]
}

fn now_nanos() -> u64 {
    EPOCH.elapsed().as_nanos() as u64 + 1
}

/// Stamps `index` as appended now, starting its record afresh.
pub fn appended(index: u64) {
    let slot = slot(index);
    for at in &slot.at {
        at.store(0, Ordering::Relaxed);
    }
    slot.index.store(index, Ordering::Release);
    slot.at[Stamp::Appended as usize].store(now_nanos(), Ordering::Release);
}

/// Stamps `index` as having passed `stamp` now, if its record is still here.
pub fn stamp(index: u64, stamp: Stamp) {
    let slot = slot(index);
    if slot.index.load(Ordering::Acquire) == index {
        slot.at[stamp as usize].store(now_nanos(), Ordering::Release);
    }
}

/// Stamps every index above the last committed one, up to `upto`, as committed.
pub fn committed(upto: u64) {
    let previous = COMMITTED.fetch_max(upto, Ordering::AcqRel);
    let from = (previous + 1).max(upto.saturating_sub(RING as u64 - 1));
    for index in from..=upto {
        stamp(index, Stamp::Committed);
    }
}

/// The stamps of `index`, as instants, where they are still its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stamps {
    pub appended: Option<Instant>,
    pub fsynced: Option<Instant>,
    pub committed: Option<Instant>,
    pub applied: Option<Instant>,
}

pub fn stamps(index: u64) -> Stamps {
    let slot = slot(index);
    let read = |stamp: Stamp| match slot.at[stamp as usize].load(Ordering::Acquire) {
        0 => None,
        nanos => Some(*EPOCH + Duration::from_nanos(nanos - 1)),
    };
    let found = Stamps {
        appended: read(Stamp::Appended),
        fsynced: read(Stamp::Fsynced),
        committed: read(Stamp::Committed),
        applied: read(Stamp::Applied),
    };
    // Read the index last: if it still matches, the stamps were its own.
    if slot.index.load(Ordering::Acquire) == index {
        found
    } else {
        Stamps::default()
    }
}

/// Observes `stage` as the time from `from` to `to`, where both are known.
fn between(stage: Stage, from: Option<Instant>, to: Option<Instant>) {
    if let (Some(from), Some(to)) = (from, to) {
        observe(stage, to.saturating_duration_since(from));
    }
}

/// A write slower than this on the leader is logged with its stages, as etcd
/// warns of an apply slower than its expected duration (100 ms).
pub const SLOW_WRITE: Duration = Duration::from_millis(100);
/// At most one slow-write warning per this long, so that a stalled member
/// does not also flood its log.
const SLOW_WRITE_LOG_EVERY: Duration = Duration::from_secs(1);
static SLOW_WRITE_LOGGED: AtomicU64 = AtomicU64::new(0);
/// Slow writes seen since the last warning: the next one says how many.
static SLOW_WRITES_UNLOGGED: AtomicU64 = AtomicU64::new(0);
/// Every write slower than [`SLOW_WRITE`]: on the leader, and forwarded from this follower.
static SLOW_WRITES_LEADER: AtomicU64 = AtomicU64::new(0);
static SLOW_WRITES_FORWARDED: AtomicU64 = AtomicU64::new(0);

/// Counts a slow write; returns how many went unlogged before it if a
/// warning may be logged now (and notes that one is).
fn slow_write_log_due(counter: &AtomicU64) -> Option<u64> {
    counter.fetch_add(1, Ordering::Relaxed);
    let now = now_nanos();
    let last = SLOW_WRITE_LOGGED.load(Ordering::Relaxed);
    let due = (last == 0 || now.saturating_sub(last) >= SLOW_WRITE_LOG_EVERY.as_nanos() as u64)
        && SLOW_WRITE_LOGGED.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok();
    if due {
        Some(SLOW_WRITES_UNLOGGED.swap(0, Ordering::Relaxed))
    } else {
        SLOW_WRITES_UNLOGGED.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn millis(from: Option<Instant>, to: Option<Instant>) -> Option<f64> {
    Some(to?.saturating_duration_since(from?).as_secs_f64() * 1e3)
}

/// Logs a leader's write slower than [`SLOW_WRITE`], stage by stage, in milliseconds.
fn warn_if_slow(index: u64, queued: Instant, proposed: Instant, answered: Instant, s: &Stamps) {
    let took = answered.saturating_duration_since(queued);
    if took < SLOW_WRITE {
        return;
    }
    let Some(unlogged) = slow_write_log_due(&SLOW_WRITES_LEADER) else { return };
    tracing::warn!(
        index,
        took_ms = took.as_secs_f64() * 1e3,
        queued_ms = millis(Some(queued), Some(proposed)),
        proposed_to_appended_ms = millis(Some(proposed), s.appended),
        appended_to_fsynced_ms = millis(s.appended, s.fsynced),
        appended_to_committed_ms = millis(s.appended, s.committed),
        committed_to_applied_ms = millis(s.committed, s.applied),
        applied_to_answered_ms = millis(s.applied, Some(answered)),
        expected_ms = SLOW_WRITE.as_millis() as u64,
        slow_writes_not_logged_before = unlogged,
        "write took too long"
    );
}

/// Logs a write forwarded to the leader that took longer than [`SLOW_WRITE`]
/// from this follower's side.
pub fn warn_if_slow_forward(index: u64, forwarded: Duration, applied_here: Duration) {
    if forwarded + applied_here < SLOW_WRITE {
        return;
    }
    let Some(unlogged) = slow_write_log_due(&SLOW_WRITES_FORWARDED) else { return };
    tracing::warn!(
        index,
        forwarded_ms = forwarded.as_secs_f64() * 1e3,
        then_applied_here_ms = applied_here.as_secs_f64() * 1e3,
        expected_ms = SLOW_WRITE.as_millis() as u64,
        slow_writes_not_logged_before = unlogged,
        "forwarded write took too long"
    );
}

/// Observes the leader's stages of the entry at `index`, proposed at
/// `proposed` and answered at `answered`, carrying writes queued at `queued`.
pub fn leader_wrote(index: u64, queued: &[Instant], proposed: Instant, answered: Instant) {
    let s = stamps(index);
    if let Some(first) = queued.iter().min() {
        warn_if_slow(index, *first, proposed, answered, &s);
    }
    for queued in queued {
        observe(Stage::Queued, proposed.saturating_duration_since(*queued));
        observe(Stage::LeaderTotal, answered.saturating_duration_since(*queued));
    }
    between(Stage::ProposedToAppended, Some(proposed), s.appended);
    between(Stage::AppendedToFsynced, s.appended, s.fsynced);
    between(Stage::AppendedToCommitted, s.appended, s.committed);
    between(Stage::CommittedToApplied, s.committed, s.applied);
    between(Stage::AppliedToAnswered, s.applied, Some(answered));
    ENTRY_WRITES.observe_count(queued.len() as u64);
}

/// Observes a follower's stages of an AppendEntries whose last entry is at
/// `last`, received at `received` and answered now.
pub fn follower_appended(last: u64, received: Instant) {
    let s = stamps(last);
    between(Stage::ReceivedToAppended, Some(received), s.appended);
    between(Stage::AppendedToFsynced, s.appended, s.fsynced);
    between(Stage::FsyncedToAnswered, s.fsynced, Some(Instant::now()));
}

/// Every histogram of this module, in Prometheus' text format.
pub fn render(out: &mut String) {
    let name = "shoal_write_stage_duration_seconds";
    super::header(out, name, "histogram", "Time a write spends in each stage of its path, by role and stage.");
    for ((_, role, stage), histogram) in STAGES.iter().zip(STAGE_HISTOGRAMS.iter()) {
        histogram.samples(out, name, &format!("role=\"{role}\",stage=\"{stage}\","));
    }
    for (name, help, histogram) in [
        ("shoal_wal_fsync_batch_entries", "Raft entries made durable by one fsync of the log.", &*FSYNC_BATCH_ENTRIES),
        ("shoal_apply_batch_entries", "Raft entries applied by one call of the state machine.", &*APPLY_BATCH_ENTRIES),
        ("shoal_entry_writes", "Client writes carried by one Raft entry.", &*ENTRY_WRITES),
    ] {
        super::header(out, name, "histogram", help);
        histogram.samples(out, name, "");
    }
    let name = "shoal_slow_writes_total";
    super::header(out, name, "counter", "Writes slower than 100 ms, on the leader and forwarded from this follower.");
    for (role, counter) in [("leader", &SLOW_WRITES_LEADER), ("follower", &SLOW_WRITES_FORWARDED)] {
        let _ = writeln!(out, "{name}{{role=\"{role}\"}} {}", counter.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_belong_to_their_index_and_are_dropped_when_overwritten() {
        let index = 1_000_003;
        appended(index);
        stamp(index, Stamp::Fsynced);
        committed(index);
        let s = stamps(index);
        assert!(s.appended.is_some() && s.fsynced.is_some() && s.committed.is_some());
        assert!(s.applied.is_none());
        assert!(s.appended <= s.fsynced);
        // The same slot, taken by a later index: the old stamps are gone.
        appended(index + RING as u64);
        assert!(stamps(index).appended.is_none());
        stamp(index, Stamp::Applied);
        assert!(stamps(index + RING as u64).applied.is_none());
    }

    #[test]
    fn every_slow_write_is_counted_though_warnings_are_spaced() {
        let before = SLOW_WRITES_FORWARDED.load(Ordering::Relaxed);
        warn_if_slow_forward(7, Duration::from_millis(60), Duration::from_millis(50));
        warn_if_slow_forward(8, Duration::from_millis(150), Duration::ZERO);
        warn_if_slow_forward(9, Duration::from_millis(1), Duration::ZERO);
        assert_eq!(SLOW_WRITES_FORWARDED.load(Ordering::Relaxed) - before, 2);
        let mut out = String::new();
        render(&mut out);
        let line = out.lines().find(|l| l.starts_with("shoal_slow_writes_total{role=\"follower\"}"));
        let shown: u64 = line.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse().ok()).expect("rendered");
        assert!(shown >= before + 2, "{out}");
    }

    #[test]
    fn stages_render_by_role_and_name() {
        observe(Stage::Queued, Duration::from_micros(15));
        FSYNC_BATCH_ENTRIES.observe_count(3);
        let mut out = String::new();
        render(&mut out);
        assert!(
            out.contains("shoal_write_stage_duration_seconds_bucket{role=\"leader\",stage=\"queued\",le=\"0.00002\"}")
        );
        assert!(out.contains("shoal_wal_fsync_batch_entries_bucket{le=\"4\"}"), "{out}");
    }
}
