//! Executing one write command (put, delete, txn) against the store: changes
//! are staged in an overlay that later reads of the same transaction see, and
//! written out together once the whole command has succeeded.

use shoal_proto::etcdserverpb::{
    request_op, response_op, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use shoal_proto::mvccpb::KeyValue;

use super::compare::txn_path;
use super::key_index::KeyIndex;
use super::range::{range, ReadView};
use super::reader::{KeyRange, KvReader, Overlay};
use super::record::Record;
use super::revision::Revision;
use super::MvccError;
use crate::storage::columns;

/// One staged change: the new version of `key` at `revision`.
#[derive(Clone, Debug)]
pub struct Change {
    pub key: Vec<u8>,
    pub revision: Revision,
    pub record: Record,
    /// The lease the key was attached to before this change (0 for none).
    pub prev_lease: i64,
}

pub struct WriteTxn<'a> {
    reader: &'a KvReader<'a>,
    /// The newest live version of every key, when `reader` reads the live
    /// database (the applier); reads through a snapshot go without.
    index: Option<&'a KeyIndex>,
    /// The store's revision before this command.
    base: i64,
    compacted: i64,
    overlay: Overlay,
    changes: Vec<Change>,
}

impl<'a> WriteTxn<'a> {
    pub fn new(reader: &'a KvReader<'a>, base: i64, compacted: i64) -> WriteTxn<'a> {
        WriteTxn { reader, index: None, base, compacted, overlay: Overlay::new(), changes: Vec::new() }
    }

    /// Looks keys up in `index` instead of seeking for them; `index` must
    /// describe the store at `base`.
    pub fn with_index(mut self, index: &'a KeyIndex) -> WriteTxn<'a> {
        self.index = Some(index);
        self
    }

    /// The revision as this transaction sees it: one more than the base once
    /// it has changed anything.
    pub fn current(&self) -> i64 {
        if self.changes.is_empty() {
            self.base
        } else {
            self.base + 1
        }
    }

    pub fn into_changes(self) -> Vec<Change> {
        self.changes
    }

    fn view(&self) -> ReadView<'_> {
        ReadView {
            reader: self.reader,
            overlay: Some(&self.overlay),
            current: self.current(),
            compacted: self.compacted,
        }
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision: self.current(), ..Default::default() })
    }

    /// The live version of `key` as this transaction sees it; its value only
    /// `with_value`.
    fn latest(&self, key: &[u8], with_value: bool) -> Result<Option<(Revision, Record)>, MvccError> {
        if let Some((rev, record)) = self.overlay.get(key) {
            return Ok((!record.tombstone).then(|| (*rev, record.clone())));
        }
        let Some(index) = self.index else {
            return self.reader.live_at(key, self.base, with_value).map_err(MvccError::Storage);
        };
        let Some(meta) = index.get(key) else {
            return Ok(None);
        };
        let value =
            if with_value { self.reader.value_at(key, meta.revision).map_err(MvccError::Storage)? } else { Vec::new() };
        let record = Record {
            tombstone: false,
            create_revision: meta.create_revision,
            version: meta.version,
            lease: meta.lease,
            value,
        };
        Ok(Some((meta.revision, record)))
    }

    fn stage(&mut self, key: Vec<u8>, record: Record, prev_lease: i64) -> Revision {
        let revision = Revision::new(self.base + 1, self.changes.len() as i64);
        self.overlay.insert(key.clone(), (revision, record.clone()));
        self.changes.push(Change { key, revision, record, prev_lease });
        revision
    }

    pub fn lease_exists(&self, lease: i64) -> Result<bool, MvccError> {
        Ok(self.reader.get(columns::LEASES, &lease.to_be_bytes()).map_err(MvccError::Storage)?.is_some())
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        range(&self.view(), req)
    }

    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        let prev = self.latest(&req.key, req.prev_kv || req.ignore_value)?;
        let (value, lease) = match &prev {
            None if req.ignore_value || req.ignore_lease => return Err(MvccError::KeyNotFound),
            Some((_, old)) => (
                if req.ignore_value { old.value.clone() } else { req.value.clone() },
                if req.ignore_lease { old.lease } else { req.lease },
            ),
            None => (req.value.clone(), req.lease),
        };
        let record = Record {
            tombstone: false,
            create_revision: prev.as_ref().map_or(self.base + 1, |(_, old)| old.create_revision),
            version: prev.as_ref().map_or(1, |(_, old)| old.version + 1),
            lease,
            value,
        };
        self.stage(req.key.clone(), record, prev.as_ref().map_or(0, |(_, old)| old.lease));
        let prev_kv = match prev {
            Some((rev, old)) if req.prev_kv => Some(old.into_key_value(req.key.clone(), rev.main)),
            _ => None,
        };
        Ok(PutResponse { header: self.header(), prev_kv })
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        let mut doomed: Vec<KeyValue> = Vec::new();
        let current = self.current();
        self.view().scan(KeyRange::new(&req.key, &req.range_end), current, req.prev_kv, |key, rev, record| {
            doomed.push(record.into_key_value(key.to_vec(), rev.main))
        })?;
        for kv in &doomed {
            self.stage(kv.key.clone(), Record::tombstone(), kv.lease);
        }
        Ok(DeleteRangeResponse {
            header: self.header(),
            deleted: doomed.len() as i64,
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        })
    }

    /// Deletes every live key attached to `lease`, in key order, in this revision.
    pub fn delete_lease_keys(&mut self, lease: i64) -> Result<(), MvccError> {
        let keys = super::lease_keys::attached(self.reader, lease).map_err(MvccError::Storage)?;
        for key in keys {
            if let Some((_, record)) = self.latest(&key, false)? {
                self.stage(key, Record::tombstone(), record.lease);
            }
        }
        Ok(())
    }

    /// Runs a transaction: compares and the checks etcd makes up front, then
    /// the operations of the taken branch, in order.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let path = txn_path(&self.view(), req)?;
        let mut taken = Vec::new();
        collect_taken_ops(req, &mut path.iter().copied(), &mut taken);
        for op in &taken {
            self.check_put(op)?;
        }
        for op in &taken {
            self.check_range(op)?;
        }
        let mut path = path.into_iter();
        let mut resp = self.run_txn(req, &mut path)?;
        resp.header = self.header();
        Ok(resp)
    }

    fn run_txn(&mut self, req: &TxnRequest, path: &mut impl Iterator<Item = bool>) -> Result<TxnResponse, MvccError> {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(r)) => response_op::Response::ResponseRange(self.range(r)?),
                Some(request_op::Request::RequestPut(r)) => response_op::Response::ResponsePut(self.put(r)?),
                Some(request_op::Request::RequestDeleteRange(r)) => {
                    response_op::Response::ResponseDeleteRange(self.delete_range(r)?)
                }
                Some(request_op::Request::RequestTxn(r)) => {
                    let mut nested = self.run_txn(r, path)?;
                    nested.header = Some(ResponseHeader::default());
                    response_op::Response::ResponseTxn(nested)
                }
                None => return Err(MvccError::KeyNotFound),
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }

    /// etcd's `checkPut`: the key must exist for `ignore_value`/`ignore_lease`,
    /// and a given lease must exist.
    fn check_put(&self, op: &RequestOp) -> Result<(), MvccError> {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            return Ok(());
        };
        if (put.ignore_value || put.ignore_lease) && self.latest(&put.key, false)?.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        if put.lease != 0 && !self.lease_exists(put.lease)? {
            return Err(MvccError::LeaseNotFound);
        }
        Ok(())
    }

    /// etcd's `checkRange`: an explicit revision must be retained and not in the future.
    fn check_range(&self, op: &RequestOp) -> Result<(), MvccError> {
        let Some(request_op::Request::RequestRange(r)) = &op.request else {
            return Ok(());
        };
        if r.revision == 0 {
            return Ok(());
        }
        if r.revision > self.current() {
            return Err(MvccError::FutureRevision);
        }
        if r.revision < self.compacted {
            return Err(MvccError::Compacted);
        }
        Ok(())
    }
}

/// Flattens the operations of the taken branches, nested ones included.
fn collect_taken_ops<'r>(req: &'r TxnRequest, path: &mut impl Iterator<Item = bool>, out: &mut Vec<&'r RequestOp>) {
    let ops = if path.next().unwrap_or(false) { &req.success } else { &req.failure };
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestTxn(nested)) => collect_taken_ops(nested, path, out),
            _ => out.push(op),
        }
    }
}
