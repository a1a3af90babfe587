//! What the Raft log carries: [`Command`] (an `InternalRequest`, stored as its
//! protobuf bytes) and the [`MemberNode`] attached to each member id.

use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shoal_proto::peerpb::{InternalRequest, InternalResponse};

/// A command of the state machine. Serialized as protobuf so that the log
/// stays readable by any later version that knows the same messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Command(pub InternalRequest);

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.request {
            Some(request) => write!(f, "{}", request_name(request)),
            None => f.write_str("empty"),
        }
    }
}

/// The kind of a request, for logs.
fn request_name(request: &shoal_proto::peerpb::internal_request::Request) -> &'static str {
    use shoal_proto::peerpb::internal_request::Request;
    match request {
        Request::Put(_) => "put",
        Request::DeleteRange(_) => "delete-range",
        Request::Txn(_) => "txn",
        Request::Compaction(_) => "compaction",
        Request::LeaseGrant(_) => "lease-grant",
        Request::LeaseRevoke(_) => "lease-revoke",
        Request::Batch(_) => "batch",
        _ => "other",
    }
}

/// The state machine's answer to a [`Command`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandResponse(pub InternalResponse);

/// A member as Raft knows it: where its peers reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl std::fmt::Display for MemberNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

macro_rules! protobuf_serde {
    ($wrapper:ident, $message:ty) => {
        impl Serialize for $wrapper {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0.encode_to_vec())
            }
        }

        impl<'de> Deserialize<'de> for $wrapper {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let bytes = deserializer.deserialize_byte_buf(BytesVisitor)?;
                <$message>::decode(bytes.as_slice()).map($wrapper).map_err(serde::de::Error::custom)
            }
        }
    };
}

protobuf_serde!(Command, InternalRequest);
protobuf_serde!(CommandResponse, InternalResponse);

struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("protobuf bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::etcdserverpb::PutRequest;
    use shoal_proto::peerpb::internal_request::Request;

    #[test]
    fn command_round_trips_through_bincode() {
        let cmd = Command(InternalRequest {
            request: Some(Request::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() })),
            auth_revision: 0,
            ..Default::default()
        });
        let bytes = crate::storage::encode_bincode(&cmd);
        let back: Command = crate::storage::decode_bincode("test", &bytes).expect("decodes");
        assert_eq!(back, cmd);
    }
}
