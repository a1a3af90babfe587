//! `Maintenance.Downgrade`, answered as etcd 3.5 answers it.
//!
//! etcd checks the target's format, then (after a linearizable read) that
//! it is the cluster version's previous minor, then that no downgrade is in
//! flight. Shoal runs those checks and answers VALIDATE as etcd does, but it
//! never enables a downgrade: the members that would replace Shoal's are
//! etcd 3.4 binaries, and those cannot join a Shoal cluster. So ENABLE of a
//! valid target is refused, and CANCEL finds no job in flight.

use shoal_proto::etcdserverpb::downgrade_request::DowngradeAction;
use shoal_proto::etcdserverpb::{DowngradeRequest, DowngradeResponse};
use tonic::Status;

use crate::config::ETCD_CLUSTER_VERSION;
use crate::server::Node;

const WRONG_FORMAT: &str = "etcdserver: wrong downgrade target version format";
const INVALID_TARGET: &str = "etcdserver: invalid downgrade target version";
const NO_INFLIGHT: &str = "etcdserver: no inflight downgrade job";
/// Shoal's own refusal of a downgrade etcd would enable.
pub const NOT_SUPPORTED: &str =
    "etcdserver: downgrade is not supported: etcd 3.4 members cannot replace the members of a Shoal cluster";

/// Answers a Downgrade request from a caller already allowed to send it.
pub async fn answer(node: &Node, req: &DowngradeRequest) -> Result<DowngradeResponse, Status> {
    let action = DowngradeAction::try_from(req.action).map_err(|_| Status::unknown("etcdserver: unknown method"))?;
    let cluster = semver(ETCD_CLUSTER_VERSION).ok_or_else(|| Status::internal("etcdserver: cluster version"))?;
    if action != DowngradeAction::Cancel {
        let target = target_version(&req.version).ok_or_else(|| Status::invalid_argument(WRONG_FORMAT))?;
        node.linearizable_barrier().await?;
        if target != (cluster.0, cluster.1 - 1) {
            return Err(Status::invalid_argument(INVALID_TARGET));
        }
    } else {
        node.linearizable_barrier().await?;
    }
    match action {
        DowngradeAction::Validate => Ok(DowngradeResponse {
            header: Some(node.header(node.kv.current_revision())),
            version: format!("{}.{}.0", cluster.0, cluster.1),
        }),
        DowngradeAction::Enable => Err(Status::failed_precondition(NOT_SUPPORTED)),
        DowngradeAction::Cancel => Err(Status::failed_precondition(NO_INFLIGHT)),
    }
}

/// The major and minor version a downgrade targets: etcd takes "x.y.z" (its
/// patch ignored) or "x.y".
fn target_version(text: &str) -> Option<(i64, i64)> {
    let (major, minor, _) = semver(text).or_else(|| semver(&format!("{text}.0")))?;
    Some((major, minor))
}

/// Parses a semantic version as etcd's semver package does: "x.y.z", then an
/// optional "-prerelease" and "+metadata" of dot-separated identifiers.
fn semver(text: &str) -> Option<(i64, i64, i64)> {
    let (rest, metadata) = text.split_once('+').unwrap_or((text, ""));
    let (core, prerelease) = rest.split_once('-').unwrap_or((rest, ""));
    if !identifiers(prerelease) || !identifiers(metadata) {
        return None;
    }
    let mut parts = core.splitn(3, '.');
    let mut number = || {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse::<i64>().ok()
    };
    Some((number()?, number()?, number()?))
}

/// Empty, or dot-separated non-empty runs of ASCII letters, digits and '-'.
fn identifiers(text: &str) -> bool {
    text.is_empty()
        || text.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::{semver, target_version};

    #[test]
    fn versions_parse_as_etcds_semver_package_parses_them() {
        assert_eq!(semver("3.5.0"), Some((3, 5, 0)));
        assert_eq!(semver("3.4.23-rc.1+build-7"), Some((3, 4, 23)));
        assert_eq!(semver("03.4.1"), Some((3, 4, 1)));
        assert_eq!(semver("3.4.0-"), Some((3, 4, 0)), "an empty prerelease is allowed");
        for bad in
            ["", "3", "3.4", "3.4.5.6", "v3.4.0", "3.4.x", "3.4.0-a_b", "3.4.0+a..b", "3..4", " 3.4.0", "3.4.0_1"]
        {
            assert_eq!(semver(bad), None, "{bad:?}");
        }
        assert_eq!(target_version("3.4"), Some((3, 4)));
        assert_eq!(target_version("3.4.99"), Some((3, 4)));
        assert_eq!(target_version("3.4-rc"), None, "the \".0\" goes after the prerelease");
        assert_eq!(target_version("3"), None);
        assert_eq!(target_version("3.4.0.0"), None);
    }
}
