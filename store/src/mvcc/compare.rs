//! Evaluating a transaction's compares, and the path of branches a (nested)
//! transaction takes, decided before any of its writes.

use std::cmp::Ordering;

use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{request_op, Compare, TxnRequest};
use shoal_proto::mvccpb::KeyValue;

use super::range::ReadView;
use super::reader::KeyRange;
use super::MvccError;

/// The branch taken by `txn` and by every nested transaction on the taken
/// branches, depth first, as etcd computes it: all before the first write.
pub fn txn_path(view: &ReadView<'_>, txn: &TxnRequest) -> Result<Vec<bool>, MvccError> {
    let mut path = Vec::new();
    push_path(view, txn, &mut path)?;
    Ok(path)
}

fn push_path(view: &ReadView<'_>, txn: &TxnRequest, path: &mut Vec<bool>) -> Result<(), MvccError> {
    let mut succeeded = true;
    for compare in &txn.compare {
        if !holds(view, compare)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    let ops = if succeeded { &txn.success } else { &txn.failure };
    for op in ops {
        if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
            push_path(view, nested, path)?;
        }
    }
    Ok(())
}

fn holds(view: &ReadView<'_>, compare: &Compare) -> Result<bool, MvccError> {
    let mut kvs = Vec::new();
    let with_value = compare.target == CompareTarget::Value as i32;
    view.scan(KeyRange::new(&compare.key, &compare.range_end), view.current, with_value, |key, rev, record| {
        kvs.push(record.into_key_value(key.to_vec(), rev.main))
    })?;
    if kvs.is_empty() {
        // A value cannot be compared on a missing key; other targets compare
        // against a zero key-value, as in etcd.
        if compare.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(compare, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(compare, kv)))
}

fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    let int = |wanted: Option<i64>, actual: i64| actual.cmp(&wanted.unwrap_or(0));
    let union = compare.target_union.as_ref();
    let ordering = match CompareTarget::try_from(compare.target) {
        Ok(CompareTarget::Value) => {
            let wanted: &[u8] = match union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(wanted)
        }
        Ok(CompareTarget::Create) => {
            int(as_int(union, |u| matches!(u, TargetUnion::CreateRevision(_))), kv.create_revision)
        }
        Ok(CompareTarget::Mod) => int(as_int(union, |u| matches!(u, TargetUnion::ModRevision(_))), kv.mod_revision),
        Ok(CompareTarget::Version) => int(as_int(union, |u| matches!(u, TargetUnion::Version(_))), kv.version),
        Ok(CompareTarget::Lease) => int(as_int(union, |u| matches!(u, TargetUnion::Lease(_))), kv.lease),
        Err(_) => return false,
    };
    match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => false,
    }
}

/// The integer in the union when it is of the kind the target expects, as
/// etcd reads it (a mismatched kind compares against zero).
fn as_int(union: Option<&TargetUnion>, matches_target: impl Fn(&TargetUnion) -> bool) -> Option<i64> {
    match union {
        Some(u) if matches_target(u) => match u {
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v) => Some(*v),
            TargetUnion::Value(_) => None,
        },
        _ => None,
    }
}
