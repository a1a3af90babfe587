//! Batched entries: every command at its own revision, and an entry cut
//! short resumes after its last applied command.

use futures::stream;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, LogId};
use rocksdb::WriteBatch;
use shoal_proto::etcdserverpb::{PutRequest, RangeRequest};
use shoal_proto::peerpb::{internal_request::Request, InternalRequest, RequestBatch};

use super::state_machine::StateMachine;
use super::{Command, Entry, LeaderId};
use crate::storage::{self, columns};

fn put(key: &str) -> InternalRequest {
    InternalRequest {
        request: Some(Request::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() })),
        auth_revision: 0,
        ..Default::default()
    }
}

fn batch_entry(index: u64, keys: &[&str]) -> Entry {
    let requests = keys.iter().map(|k| put(k)).collect();
    Entry {
        log_id: LogId::new(LeaderId { term: 1, node_id: 0 }, index),
        payload: EntryPayload::Normal(Command(InternalRequest {
            request: Some(Request::Batch(RequestBatch { requests })),
            auth_revision: 0,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_commands_get_their_own_revisions_and_resume_after_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let (mut sm, kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("open");
    sm.apply(stream::iter(vec![Ok((batch_entry(1, &["a", "b", "c"]), None))])).await.expect("apply");
    assert_eq!(kv.current_revision(), 4, "three commands, three revisions");

    drop((sm, kv));
    let (sm, kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("reopen");
    assert_eq!(kv.current_revision(), 4, "the revision written with the entry");

    // Entry 2 was cut short after its first command, and the member
    // restarted: only the rest is applied.
    let mut progress = WriteBatch::default();
    progress.put_cf(storage::cf(&db, columns::META), columns::APPLY_PROGRESS, storage::encode_bincode(&(2u64, 1u64)));
    storage::write_buffered(&db, progress).expect("write");
    drop((sm, kv));
    let (mut sm, kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("restart");
    sm.apply(stream::iter(vec![Ok((batch_entry(2, &["x", "y"]), None))])).await.expect("apply");
    assert_eq!(kv.current_revision(), 5, "only y was applied");
    let x = kv.range(&RangeRequest { key: b"x".to_vec(), ..Default::default() }).expect("range");
    assert!(x.kvs.is_empty(), "x counted as applied before the crash");
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied.map(|l| l.index), Some(2));
    let progress: Option<(u64, u64)> = storage::get_bincode(&db, columns::META, columns::APPLY_PROGRESS).expect("get");
    assert_eq!(progress, None, "the finished entry cleared the progress");

    // Entries after that one neither need nor leave a progress record.
    sm.apply(stream::iter(vec![Ok((batch_entry(3, &["p", "q"]), None)), Ok((batch_entry(4, &["r"]), None))]))
        .await
        .expect("apply");
    drop((sm, kv));
    let (_sm, kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("reopen");
    assert_eq!(kv.current_revision(), 8, "p, q and r after y");
}

/// A batch whose puts share writes, mixed with commands that read what
/// earlier ones in the same batch wrote: every answer is what applying the
/// commands one by one gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_one_batch_see_what_the_earlier_ones_wrote() {
    use shoal_proto::etcdserverpb::{DeleteRangeRequest, LeaseGrantRequest};
    use shoal_proto::peerpb::internal_response::Response;

    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let (_sm, kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("open");
    let put_with = |key: &str, value: &str, edit: fn(&mut PutRequest)| {
        let mut put = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        edit(&mut put);
        InternalRequest { request: Some(Request::Put(put)), auth_revision: 0, ..Default::default() }
    };
    let requests = vec![
        put_with("a", "1", |_| {}),               // rev 2
        put_with("b", "1", |_| {}),               // rev 3
        put_with("a", "2", |p| p.prev_kv = true), // rev 4, prev a=1
        InternalRequest {
            request: Some(Request::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 })),
            auth_revision: 0,
            ..Default::default()
        },
        put_with("c", "1", |p| p.lease = 7), // rev 5
        put_with("b", "", |p| {
            p.ignore_value = true;
            p.prev_kv = true
        }), // rev 6, keeps b=1
        InternalRequest {
            request: Some(Request::DeleteRange(DeleteRangeRequest { key: b"b".to_vec(), ..Default::default() })),
            auth_revision: 0,
            ..Default::default()
        }, // rev 7
        put_with("b", "3", |_| {}),          // rev 8, a new b
        put_with("d", "1", |p| p.lease = 8), // no such lease
    ];
    let log_id = LogId::new(LeaderId { term: 1, node_id: 0 }, 1);
    let answer = super::state_machine::apply_batch(&db, &kv, None, log_id, &requests, &mut true).expect("apply");
    let Some(Response::Batch(batch)) = answer.response else { panic!("not a batch answer: {answer:?}") };
    let responses: Vec<Option<Response>> = batch.responses.into_iter().map(|r| r.response).collect();
    assert_eq!(responses.len(), requests.len());

    let Some(Response::Put(third)) = &responses[2] else { panic!("{:?}", responses[2]) };
    let prev = third.prev_kv.as_ref().expect("a's previous value, written earlier in the batch");
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
    let Some(Response::Put(sixth)) = &responses[5] else { panic!("{:?}", responses[5]) };
    assert_eq!(sixth.prev_kv.as_ref().map(|kv| kv.value.as_slice()), Some(&b"1"[..]));
    assert!(matches!(responses[8], Some(Response::Error(_))), "a put with a missing lease fails: {:?}", responses[8]);
    assert_eq!(kv.current_revision(), 8);

    let get = |key: &str| {
        let range = kv.range(&RangeRequest { key: key.into(), ..Default::default() }).expect("range");
        range.kvs.into_iter().next()
    };
    let a = get("a").expect("a");
    assert_eq!((a.value.as_slice(), a.create_revision, a.mod_revision, a.version), (&b"2"[..], 2, 4, 2));
    let b = get("b").expect("b");
    assert_eq!((b.value.as_slice(), b.create_revision, b.mod_revision, b.version), (&b"3"[..], 8, 8, 1));
    let c = get("c").expect("c");
    assert_eq!((c.lease, c.mod_revision), (7, 5));
    assert!(get("d").is_none());
    let progress: Option<(u64, u64)> = storage::get_bincode(&db, columns::META, columns::APPLY_PROGRESS).expect("get");
    assert_eq!(progress, None, "a finished entry leaves no progress behind");
}

/// What the state machine tells about forwarded commands, by their origin.
#[derive(Default)]
struct Forwarded(std::sync::Mutex<Vec<(u64, u64, u64, i64)>>);

impl super::state_machine::ApplyListener for Forwarded {
    fn applied(&self, _: &crate::mvcc::Applied) {}
    fn reset(&self) {}
    fn forwarded_applied(&self, member: u64, id: u64, response: &shoal_proto::peerpb::InternalResponse, index: u64) {
        use shoal_proto::peerpb::internal_response::Response;
        let revision = match &response.response {
            Some(Response::Put(put)) => put.header.as_ref().map_or(0, |h| h.revision),
            _ => -1,
        };
        self.0.lock().expect("lock").push((member, id, index, revision));
    }
}

/// Forwarded commands, batched or alone, are reported with their own answer
/// and entry; commands nobody forwarded are not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_commands_are_reported_with_their_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let (mut sm, _kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("open");
    let seen = std::sync::Arc::new(Forwarded::default());
    sm.set_listener(seen.clone());
    let tag = |mut request: InternalRequest, member, id| {
        request.origin_member = member;
        request.origin_id = id;
        request
    };
    let batched = vec![put("a"), tag(put("b"), 9, 100), tag(put("c"), 8, 200)];
    let mut entry = batch_entry(1, &[]);
    entry.payload = EntryPayload::Normal(Command(InternalRequest {
        request: Some(Request::Batch(RequestBatch { requests: batched })),
        ..Default::default()
    }));
    let single = Entry {
        log_id: LogId::new(LeaderId { term: 1, node_id: 0 }, 2),
        payload: EntryPayload::Normal(Command(tag(put("d"), 9, 101))),
    };
    sm.apply(stream::iter(vec![Ok((entry, None)), Ok((single, None))])).await.expect("apply");
    let seen = seen.0.lock().expect("lock").clone();
    assert_eq!(seen, vec![(9, 100, 1, 3), (8, 200, 1, 4), (9, 101, 2, 5)]);
}
