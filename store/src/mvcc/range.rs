//! etcd's `Range`: revision checks, filters, sorting, `limit`, `more` and
//! `count`, exactly as etcd's applier computes them.

use std::cmp::Ordering;

use shoal_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use shoal_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use shoal_proto::mvccpb::KeyValue;

use super::reader::{scan_with_overlay, KeyRange, KvReader, Overlay};
use super::MvccError;

/// What a read sees: the stored versions, plus the changes staged so far by
/// the enclosing transaction (all at revision `current`).
pub struct ReadView<'a> {
    pub reader: &'a KvReader<'a>,
    pub overlay: Option<&'a Overlay>,
    pub current: i64,
    pub compacted: i64,
}

impl ReadView<'_> {
    /// The revision a request reads at: `requested`, or the newest when it is 0 or less.
    pub fn resolve(&self, requested: i64) -> Result<i64, MvccError> {
        if requested > self.current {
            return Err(MvccError::FutureRevision);
        }
        let rev = if requested <= 0 { self.current } else { requested };
        if rev < self.compacted {
            return Err(MvccError::Compacted);
        }
        Ok(rev)
    }

    /// Visits the live versions of `range` at `rev`.
    pub fn scan(
        &self,
        range: KeyRange<'_>,
        rev: i64,
        with_value: bool,
        visit: impl FnMut(&[u8], super::Revision, super::Record),
    ) -> Result<(), MvccError> {
        // Staged changes are at `current`; older reads must not see them.
        let overlay = if rev == self.current { self.overlay } else { None };
        scan_with_overlay(self.reader, overlay, range, rev, with_value, visit).map_err(MvccError::Storage)
    }
}

pub fn range(view: &ReadView<'_>, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
    let rev = view.resolve(req.revision)?;
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // Like etcd: fetch everything when sorting or filtering, else one more than
    // the limit so that `more` can be told.
    let keep = if req.count_only {
        0
    } else if req.sort_order != SortOrder::None as i32 || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(req.limit).unwrap_or(usize::MAX).saturating_add(1)
    };
    // A sort by value needs the values even when only the keys are answered.
    let by_value = req.sort_target == SortTarget::Value as i32;
    let with_value = !req.count_only && (!req.keys_only || by_value);
    let mut count = 0i64;
    let mut kvs: Vec<KeyValue> = Vec::new();
    view.scan(KeyRange::new(&req.key, &req.range_end), rev, with_value, |key, revision, record| {
        count += 1;
        if kvs.len() < keep {
            kvs.push(record.into_key_value(key.to_vec(), revision.main));
        }
    })?;

    if filtered {
        kvs.retain(|kv| {
            !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
                || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
                || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
                || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
        });
    }
    sort(&mut kvs, req);

    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only && with_value {
        kvs.iter_mut().for_each(|kv| kv.value = Vec::new());
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: view.current, ..Default::default() }),
        kvs,
        more,
        count,
    })
}

fn sort(kvs: &mut [KeyValue], req: &RangeRequest) {
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    // etcd sorts ascending by default whenever the target is not the key.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(by),
        SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
    }
}
