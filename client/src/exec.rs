//! `exec` into a container, as `kubectl exec` does it through the kubelet.
//!
//! Who may exec is decided by the store, not by the agent: the caller
//! writes a one-use grant under `/registry/execs/<node>/<id>` (on a short
//! lease), naming the pod, the container and the command, and holding the
//! SHA-256 of a secret only the caller knows. It then connects to the
//! node's agent, names the grant and shows the secret. The agent reads the
//! grant back from the store, deletes it (so it is used once), checks the
//! secret, and runs exactly what the grant says. So exec needs the right to
//! write under `/registry/execs/`, which the store's roles can give or
//! withhold, and a reader of that prefix cannot use a grant it sees.
//!
//! After the agent's `HTTP/1.1 200 OK` head, both sides speak in frames: a
//! channel byte (as Kubernetes' exec channels number them), a 4-byte
//! big-endian length, then that many bytes.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shoal_proto::etcdserverpb::compare::{CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{
    request_op, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, TxnRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::api::{compare, op};
use crate::pages::hex;
use crate::{Error, Result, Store};

/// Where grants are written; the node's name and the grant's id follow.
pub const GRANT_PREFIX: &str = "/registry/execs/";
/// How long a grant lives unused.
pub const GRANT_TTL_SECONDS: i64 = 60;

/// What the caller may run, and how to prove it is the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub command: Vec<String>,
    /// Whether the caller sends standard input.
    pub stdin: bool,
    /// The SHA-256 of the secret, in hex.
    pub secret_sha256: String,
}

pub fn grant_key(node: &str, id: &str) -> String {
    format!("{GRANT_PREFIX}{node}/{id}")
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// 16 random bytes from the kernel, in hex.
fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::Internal(format!("cannot read /dev/urandom: {e}")))?;
    Ok(hex(&bytes))
}

/// An id as `write_grant` makes them.
pub fn is_grant_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes a grant for `node` (with its secret's hash filled in) on a lease
/// of [`GRANT_TTL_SECONDS`]; returns its id and the secret.
pub async fn write_grant(store: &Store, node: &str, mut grant: Grant) -> Result<(String, String)> {
    let (id, secret) = (random_hex()?, random_hex()?);
    grant.secret_sha256 = sha256_hex(&secret);
    let lease = store
        .call(|s| async move { s.lease().lease_grant(LeaseGrantRequest { ttl: GRANT_TTL_SECONDS, id: 0 }).await })
        .await?
        .into_inner();
    let value = serde_json::to_vec(&grant).map_err(|e| Error::Internal(e.to_string()))?;
    let put = PutRequest { key: grant_key(node, &id).into_bytes(), value, lease: lease.id, ..Default::default() };
    store
        .call(|s| {
            let put = put.clone();
            async move { s.kv().put(put).await }
        })
        .await?;
    Ok((id, secret))
}

/// Reads grant `id` of `node`, checks `secret` against it, and deletes it
/// so that it is used once. The error says why it cannot be used.
pub async fn take_grant(store: &Store, node: &str, id: &str, secret: &str) -> Result<Grant> {
    let refused = |why: &str| Error::Forbidden(format!("exec refused: {why}"));
    if !is_grant_id(id) {
        return Err(refused("not a grant id"));
    }
    let key = grant_key(node, id);
    let found = store.range(RangeRequest { key: key.clone().into_bytes(), ..Default::default() }).await?;
    let Some(kv) = found.kvs.into_iter().next() else { return Err(refused("no such grant (expired, or used)")) };
    // The secret first: a wrong one must not use the grant up.
    let grant: Grant = serde_json::from_slice(&kv.value).map_err(|_| refused("the grant is malformed"))?;
    if sha256_hex(secret) != grant.secret_sha256 {
        return Err(refused("wrong secret"));
    }
    if grant.command.is_empty() {
        return Err(refused("the grant names no command"));
    }
    let taken = store
        .txn(TxnRequest {
            compare: vec![compare(&key, CompareTarget::Mod, TargetUnion::ModRevision(kv.mod_revision))],
            success: vec![op(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: kv.key.clone(),
                ..Default::default()
            }))],
            failure: Vec::new(),
        })
        .await?;
    if !taken.succeeded {
        return Err(refused("the grant was used already"));
    }
    Ok(grant)
}

/// The channels of the framed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    /// Caller to agent; an empty frame closes the command's input.
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// Agent to caller, last: the exit code, 4 bytes big-endian.
    Exit = 3,
    /// Agent to caller, last: why the command could not run.
    Error = 4,
}

impl Channel {
    fn from_byte(byte: u8) -> Option<Channel> {
        [Channel::Stdin, Channel::Stdout, Channel::Stderr, Channel::Exit, Channel::Error]
            .into_iter()
            .find(|c| *c as u8 == byte)
    }
}

/// The largest frame either side sends or accepts.
pub const MAX_FRAME: usize = 64 * 1024;

pub async fn write_frame<W: AsyncWrite + Unpin>(out: &mut W, channel: Channel, data: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(5 + data.len());
    frame.push(channel as u8);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
    frame.extend_from_slice(data);
    out.write_all(&frame).await?;
    out.flush().await
}

/// The next frame, or None at a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin>(input: &mut R) -> std::io::Result<Option<(Channel, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match input.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let channel = Channel::from_byte(head[0]).ok_or_else(|| bad(format!("unknown exec channel {}", head[0])))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(bad(format!("exec frame of {len} bytes is over the limit of {MAX_FRAME}")));
    }
    let mut data = vec![0u8; len];
    input.read_exact(&mut data).await?;
    Ok(Some((channel, data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_refused() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, Channel::Stdout, b"hello").await.expect("write");
        write_frame(&mut buffer, Channel::Exit, &3i32.to_be_bytes()).await.expect("write");
        let mut reader = buffer.as_slice();
        assert_eq!(read_frame(&mut reader).await.expect("read"), Some((Channel::Stdout, b"hello".to_vec())));
        assert_eq!(read_frame(&mut reader).await.expect("read"), Some((Channel::Exit, vec![0, 0, 0, 3])));
        assert_eq!(read_frame(&mut reader).await.expect("read"), None);
        let unknown = [9u8, 0, 0, 0, 0];
        assert!(read_frame(&mut unknown.as_slice()).await.is_err());
        let huge = [1u8, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge.as_slice()).await.is_err());
        let cut = [1u8, 0, 0, 0, 9, b'x'];
        assert!(read_frame(&mut cut.as_slice()).await.is_err());
    }
}
