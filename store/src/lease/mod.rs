//! Leases, as etcd has them: granted and revoked through Raft, so every
//! member holds the same leases and attachments; expiry is owned by the
//! leader, which proposes the revocation of what expired.
//!
//! - [`lessor`]: the in-memory expiry clock of every lease.
//! - [`id`]: lease ids picked by a member when the client leaves it to the server.

pub mod id;
pub mod lessor;

pub use lessor::Lessor;

/// etcd's largest lease TTL, in seconds.
pub const MAX_TTL: i64 = 9_000_000_000;
