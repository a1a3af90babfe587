//! The checks etcd makes on a request before it is proposed, with the same
//! verdicts: a bad request is refused here and changes nothing.

use shoal_proto::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::error::EtcdError;

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if !(0..=2).contains(&r.sort_order) || !(0..=4).contains(&r.sort_target) {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(p: &PutRequest) -> Result<(), EtcdError> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(d: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if d.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` followed by its duplicate-key checks on both branches.
pub fn check_txn(t: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(t, max_txn_ops)?;
    checked_writes(&t.success)?;
    checked_writes(&t.failure)?;
    Ok(())
}

fn check_txn_ops(t: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => check_range(r)?,
            Some(request_op::Request::RequestPut(p)) => check_put(p)?,
            Some(request_op::Request::RequestDeleteRange(d)) => check_delete(d)?,
            // etcd lowers the limit for nested transactions by the parent's op count.
            Some(request_op::Request::RequestTxn(nested)) => check_txn_ops(nested, max_txn_ops.saturating_sub(ops))?,
            None => return Err(EtcdError::KeyNotFound),
        }
    }
    Ok(())
}

/// A deleted key or range, compared bytewise as etcd's interval tree does.
struct Deleted {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Deleted {
    fn covers(&self, key: &[u8]) -> bool {
        match &self.end {
            None => self.start == key,
            Some(end) => self.start.as_slice() <= key && key < end.as_slice(),
        }
    }
}

/// The keys put and ranges deleted by one branch, nested branches included;
/// refuses a branch that writes a key twice (etcd's `checkIntervals`).
fn checked_writes(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => {
                Some(Deleted { start: d.key.clone(), end: (!d.range_end.is_empty()).then(|| d.range_end.clone()) })
            }
            _ => None,
        })
        .collect();
    let mut puts: Vec<Vec<u8>> = Vec::new();
    let deleted = |dels: &[Deleted], key: &[u8]| dels.iter().any(|d| d.covers(key));
    for op in ops {
        let Some(request_op::Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = checked_writes(&nested.success)?;
        let (puts_else, dels_else) = checked_writes(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&dels, key) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.push(key.clone());
        }
        for key in &puts_else {
            // Then and else never both run, so a key in both is fine.
            if (puts.contains(key) && !puts_then.contains(key)) || deleted(&dels, key) {
                return Err(EtcdError::DuplicateKey);
            }
            if !puts.contains(key) {
                puts.push(key.clone());
            }
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.push(p.key.clone());
    }
    Ok((puts, dels))
}

/// Refuses a proposal larger than `--max-request-bytes`.
pub fn check_size(encoded_len: usize, max_request_bytes: usize) -> Result<(), EtcdError> {
    if encoded_len > max_request_bytes {
        return Err(EtcdError::RequestTooLarge);
    }
    Ok(())
}

/// Whether a transaction only reads (it is then served without Raft).
pub fn is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) => true,
        Some(request_op::Request::RequestTxn(nested)) => is_read_only(nested),
        _ => false,
    })
}

/// Whether every read of a read-only transaction asked to be serializable.
pub fn is_serializable(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(r)) => r.serializable,
        Some(request_op::Request::RequestTxn(nested)) => is_serializable(nested),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest { key: key.into(), ..Default::default() })),
        }
    }

    fn del(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }

    #[test]
    fn duplicate_keys_are_refused_like_etcd() {
        assert_eq!(check_txn(&txn(vec![put("a"), put("a")], vec![]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn(&txn(vec![del("a", "c"), put("b")], vec![]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
        let nested = RequestOp { request: Some(request_op::Request::RequestTxn(txn(vec![put("a")], vec![put("a")]))) };
        assert_eq!(check_txn(&txn(vec![nested.clone()], vec![]), 128), Ok(()));
        assert_eq!(check_txn(&txn(vec![nested, put("a")], vec![]), 128), Err(EtcdError::DuplicateKey));
        // etcd compares a from-key delete's "\0" end bytewise, so it covers nothing.
        assert_eq!(check_txn(&txn(vec![del("a", "\0"), put("b")], vec![]), 128), Ok(()));
    }

    #[test]
    fn op_limits_and_empty_ops() {
        let many = txn((0..129).map(|i| put(&format!("k{i}"))).collect(), vec![]);
        assert_eq!(check_txn(&many, 128), Err(EtcdError::TooManyOps));
        assert_eq!(check_txn(&txn(vec![RequestOp { request: None }], vec![]), 128), Err(EtcdError::KeyNotFound));
        assert_eq!(check_txn(&txn(vec![put("")], vec![]), 128), Err(EtcdError::EmptyKey));
    }
}
