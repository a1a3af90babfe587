//! Every shape Shoal puts on the wire.
//!
//! # Layout
//! - [`mvccpb`], [`authpb`], [`etcdserverpb`]: the etcd v3 client API, generated
//!   from `.proto` files that we keep ourselves, with etcd's package, message and
//!   field names and field numbers. We chose our own files over the server side
//!   of a client crate: the API is stable, the files are short, every message and
//!   enum is reachable under its own name, and the build needs no system `protoc`
//!   (a vendored one compiles them).
//! - [`v3lockpb`], [`v3electionpb`]: etcd's Lock and Election services.
//! - [`peerpb`]: the member-to-member protocol (Raft messages, forwarded writes,
//!   read index) and [`peerpb::InternalRequest`], the command stored in the Raft log.
//! - [`keys`]: etcd's key-range conventions (the end of a prefix range).
//! - [`tls`]: the verifier for TLS Shoal dials without authenticating the server.
//! - [`objects`]: the control plane's objects (Node, Pod, ReplicaSet,
//!   Deployment) as serde types, with their keys and their validation.

#[allow(clippy::all, clippy::pedantic)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

pub mod keys;
pub mod objects;
pub mod tls;

#[allow(clippy::all, clippy::pedantic)]
pub mod peerpb {
    tonic::include_proto!("peerpb");
}
