//! A Deployment's status: counts summed over its ReplicaSets, and the
//! Available and Progressing conditions with Kubernetes' reasons.

use std::time::Duration;

use shoal_proto::objects::meta::{condition, set_condition};
use shoal_proto::objects::workload::DeploymentStatus;
use shoal_proto::objects::{time, Condition, Deployment, ReplicaSet};

use super::rolling::{available, spec};

/// Kubernetes' default progress deadline.
const PROGRESS_DEADLINE: i32 = 600;

fn counts(all: &[&ReplicaSet], pick: fn(&shoal_proto::objects::workload::ReplicaSetStatus) -> i32) -> i32 {
    all.iter().filter_map(|rs| rs.status.as_ref()).map(pick).sum()
}

/// Whether every replica runs the current template and is available.
pub fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = d.replicas();
    status.updated_replicas == replicas
        && status.replicas == replicas
        && status.available_replicas == replicas
        && status.observed_generation >= d.metadata.generation
}

/// The status to write, and when to look again for the progress deadline.
pub fn compute(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: &str,
) -> (DeploymentStatus, Option<Duration>) {
    let (_, max_unavailable) = d.surge_and_unavailable();
    let replicas = d.replicas();
    let total: i32 = all.iter().map(|rs| spec(rs)).sum();
    let available_now: i32 = all.iter().map(|rs| available(rs)).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: counts(all, |s| s.replicas),
        updated_replicas: new.and_then(|rs| rs.status.as_ref()).map_or(0, |s| s.replicas),
        ready_replicas: counts(all, |s| s.ready_replicas),
        available_replicas: available_now,
        unavailable_replicas: (total - available_now).max(0),
        conditions: old.conditions.clone(),
    };
    let availability = if available_now >= replicas - max_unavailable {
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    set_condition(
        &mut status.conditions,
        Condition {
            type_: "Available".into(),
            status: availability.0.into(),
            reason: Some(availability.1.into()),
            message: Some(availability.2.into()),
            ..Default::default()
        },
        now,
    );
    let name = new.map(|rs| rs.metadata.name.clone()).unwrap_or_default();
    let moved = (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas)
        != (old.replicas, old.updated_replicas, old.ready_replicas, old.available_replicas)
        || old.observed_generation != status.observed_generation;
    let previous = condition(&old.conditions, "Progressing").cloned();
    let deadline = d.spec.progress_deadline_seconds.unwrap_or(PROGRESS_DEADLINE);
    let mut check_again = None;
    let progressing = if complete(d, &status) {
        Some(("True", "NewReplicaSetAvailable", format!("ReplicaSet \"{name}\" has successfully progressed.")))
    } else if moved || previous.is_none() {
        check_again = Some(Duration::from_secs(deadline.max(0) as u64));
        Some(("True", "ReplicaSetUpdated", format!("ReplicaSet \"{name}\" is progressing.")))
    } else {
        // No movement: has the deadline passed since the last progress?
        let since =
            previous.as_ref().and_then(|c| c.last_update_time.as_deref()).and_then(time::age).unwrap_or_default();
        let limit = Duration::from_secs(deadline.max(0) as u64);
        if since >= limit {
            Some(("False", "ProgressDeadlineExceeded", format!("ReplicaSet \"{name}\" has timed out progressing.")))
        } else {
            check_again = Some(limit - since);
            None
        }
    };
    if let Some((state, reason, message)) = progressing {
        let unchanged = previous.as_ref().is_some_and(|p| p.status == state && p.reason.as_deref() == Some(reason));
        let keep = |f: fn(&Condition) -> Option<String>| previous.as_ref().and_then(f);
        let condition = Condition {
            type_: "Progressing".into(),
            status: state.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: if unchanged && !moved { keep(|p| p.last_update_time.clone()) } else { Some(now.into()) },
            last_transition_time: if previous.as_ref().is_some_and(|p| p.status == state) {
                keep(|p| p.last_transition_time.clone())
            } else {
                Some(now.into())
            },
            ..Default::default()
        };
        match status.conditions.iter_mut().find(|c| c.type_ == "Progressing") {
            Some(existing) => *existing = condition,
            None => status.conditions.push(condition),
        }
    }
    (status, check_again)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::objects::workload::ReplicaSetStatus;

    fn deployment(replicas: i32, status: Option<DeploymentStatus>) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = 1;
        d.spec.replicas = Some(replicas);
        d.status = status;
        d
    }

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.name = name.into();
        rs.spec.replicas = Some(replicas);
        rs.status = Some(ReplicaSetStatus {
            replicas,
            ready_replicas: available,
            available_replicas: available,
            ..Default::default()
        });
        rs
    }

    fn reason<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a str> {
        condition(&status.conditions, type_).and_then(|c| c.reason.as_deref())
    }

    #[test]
    fn a_finished_rollout_is_available_and_complete() {
        let new = rs("web-1", 3, 3);
        let (status, again) = compute(&deployment(3, None), &[&new], Some(&new), "2026-01-01T00:00:00Z");
        assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (3, 3, 3));
        assert_eq!(reason(&status, "Available"), Some("MinimumReplicasAvailable"));
        assert_eq!(reason(&status, "Progressing"), Some("NewReplicaSetAvailable"));
        assert_eq!(again, None);
    }

    #[test]
    fn no_progress_past_the_deadline_is_reported() {
        let old = rs("web-1", 3, 3);
        let new = rs("web-2", 1, 0);
        let mut d = deployment(3, None);
        d.spec.progress_deadline_seconds = Some(10);
        let (first, again) = compute(&d, &[&old, &new], Some(&new), "2026-01-01T00:00:00Z");
        assert_eq!(reason(&first, "Progressing"), Some("ReplicaSetUpdated"));
        assert_eq!(again, Some(Duration::from_secs(10)));
        // Nothing moved since long ago.
        let mut stale = first.clone();
        for c in &mut stale.conditions {
            c.last_update_time = Some("2020-01-01T00:00:00Z".into());
        }
        let d = Deployment { status: Some(stale), ..d };
        let (late, _) = compute(&d, &[&old, &new], Some(&new), "2026-01-01T00:00:00Z");
        assert_eq!(reason(&late, "Progressing"), Some("ProgressDeadlineExceeded"));
        assert_eq!(late.unavailable_replicas, 1);
    }
}
