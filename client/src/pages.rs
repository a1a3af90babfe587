//! Lists in pages, as the Kubernetes API server reads them from etcd: the
//! first page is read at the store's current revision, and each next one
//! from just after the previous page's last key *at that same revision*, so
//! that the pages together are one consistent list however many writes
//! happen between them. The continue token carries the revision and the
//! next key; once the store has compacted that revision away, the token is
//! refused as Kubernetes refuses it (410 Gone) and the list must start
//! again.
//!
//! [`Api::list`] reads in pages of [`LIST_CHUNK`], so that the first list of
//! an informer over 50,000 pods is not one huge response.

use serde::{Deserialize, Serialize};
use shoal_proto::etcdserverpb::RangeRequest;
use shoal_proto::objects::Object;

use crate::api::{decode, prefix_end, Api, ObjectList};
use crate::error::{Error, Result};

/// Objects per page of [`Api::list`] (kubectl's default chunk size).
pub const LIST_CHUNK: i64 = 500;

/// What a continue token holds.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Continue {
    /// The revision of the list's first page.
    rv: i64,
    /// The key to start the next page at.
    start: String,
}

/// One page, and the token for the next when there is more.
pub struct Page<K> {
    pub list: ObjectList<K>,
    pub next: Option<String>,
}

/// Bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn encode_token(token: &Continue) -> String {
    hex(&serde_json::to_vec(token).unwrap_or_default())
}

fn decode_token(text: &str, prefix: &str) -> Result<Continue> {
    let bad = |why: &str| Error::BadRequest(format!("continue key is not valid: {why}"));
    let bytes = unhex(text).ok_or_else(|| bad("not a token this server gave"))?;
    let token: Continue = serde_json::from_slice(&bytes).map_err(|_| bad("not a token this server gave"))?;
    if token.rv <= 0 {
        return Err(bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"));
    }
    if !token.start.starts_with(prefix) {
        return Err(bad("the token is for another list"));
    }
    Ok(token)
}

impl<K: Object> Api<K> {
    /// Up to `limit` objects of `namespace` (every namespace when None), from
    /// where `token` says (the start when None). `limit` 0 reads them all.
    pub async fn list_page(&self, namespace: Option<&str>, limit: i64, token: Option<&str>) -> Result<Page<K>> {
        let prefix = K::prefix(namespace);
        let (start, pinned) = match token {
            Some(text) => {
                let token = decode_token(text, &prefix)?;
                (token.start.into_bytes(), token.rv)
            }
            None => (prefix.clone().into_bytes(), 0),
        };
        let request = RangeRequest {
            key: start,
            range_end: prefix_end(prefix.as_bytes()),
            limit: limit.max(0),
            revision: pinned,
            ..Default::default()
        };
        let response = match self.range(request).await {
            Err(Error::Store(status)) if status.code() == tonic::Code::OutOfRange => {
                return Err(Error::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ))
            }
            other => other?,
        };
        let revision = if pinned > 0 { pinned } else { response.header.as_ref().map_or(0, |h| h.revision) };
        let mut list = ObjectList { items: Vec::with_capacity(response.kvs.len()), revision, malformed: Vec::new() };
        for kv in &response.kvs {
            match decode::<K>(kv) {
                Ok(object) => list.items.push(object),
                Err(e) => list.malformed.push((String::from_utf8_lossy(&kv.key).into_owned(), e.to_string())),
            }
        }
        let next = match response.kvs.last() {
            Some(last) if response.more => {
                let mut start = String::from_utf8_lossy(&last.key).into_owned();
                start.push('\0');
                Some(encode_token(&Continue { rv: revision, start }))
            }
            _ => None,
        };
        Ok(Page { list, next })
    }

    /// Every object of `namespace` (every namespace when None) at one
    /// revision, read `chunk` at a time (0: in one read).
    pub async fn list_chunked(&self, namespace: Option<&str>, chunk: i64) -> Result<ObjectList<K>> {
        let mut page = self.list_page(namespace, chunk, None).await?;
        let mut list = page.list;
        while let Some(token) = page.next.take() {
            page = self.list_page(namespace, chunk, Some(&token)).await?;
            list.items.append(&mut page.list.items);
            list.malformed.append(&mut page.list.malformed);
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let token = Continue { rv: 42, start: "/registry/pods/default/web-1\0".into() };
        let text = encode_token(&token);
        assert_eq!(decode_token(&text, "/registry/pods/").expect("a good token"), token);
        for bad in ["", "zz", "abc", &hex(b"{}"), &hex(b"{\"rv\":0,\"start\":\"/registry/pods/x\"}")] {
            let error = decode_token(bad, "/registry/pods/").expect_err(bad).to_string();
            assert!(error.starts_with("continue key is not valid"), "{error}");
        }
        let other = decode_token(&text, "/registry/services/").expect_err("another list's token").to_string();
        assert!(other.contains("another list"), "{other}");
    }
}
