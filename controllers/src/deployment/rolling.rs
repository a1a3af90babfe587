//! How far a rollout may move in one step, as Kubernetes computes it: the
//! new ReplicaSet grows while the total stays within replicas + maxSurge;
//! old ReplicaSets shrink while availability stays at or above
//! replicas - maxUnavailable, unhealthy replicas first, oldest first.

use shoal_proto::objects::ReplicaSet;

/// The replicas a ReplicaSet asks for.
pub fn spec(rs: &ReplicaSet) -> i32 {
    rs.replicas().max(0)
}

fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// Available replicas, never more than the ReplicaSet now asks for: a set
/// just told to shrink still counts its doomed pods in a status that lags,
/// and those must not be spent twice.
pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.available_replicas).min(spec(rs))
}

/// The pods a ReplicaSet may have right now: what it asks for, or what it
/// still had when last counted, whichever is more.
fn may_have(rs: &ReplicaSet) -> i32 {
    spec(rs).max(status_replicas(rs))
}

/// The new ReplicaSet's next size.
pub fn new_replicas(replicas: i32, max_surge: i32, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    let current = spec(new);
    if current >= replicas {
        return replicas;
    }
    let total: i32 = all.iter().map(|rs| may_have(rs)).sum();
    let room = replicas + max_surge - total;
    if room <= 0 {
        return current;
    }
    current + room.min(replicas - current)
}

/// The size a new ReplicaSet starts with, next to `all` the existing ones.
pub fn first_replicas(replicas: i32, max_surge: i32, all: &[&ReplicaSet]) -> i32 {
    // It asks for nothing yet (an unset size would mean 1).
    let mut unmade = ReplicaSet::default();
    unmade.spec.replicas = Some(0);
    new_replicas(replicas, max_surge, all, &unmade)
}

/// How many old replicas may go now, given what is available.
pub fn old_scale_down_budget(replicas: i32, max_unavailable: i32, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    let all_pods: i32 = all.iter().map(|rs| spec(rs)).sum();
    let min_available = replicas - max_unavailable;
    let new_unavailable = (spec(new) - available(new)).max(0);
    all_pods - min_available - new_unavailable
}

/// Scale-downs for old ReplicaSets (oldest first): first their unhealthy
/// replicas within `budget`, then available ones while availability stays
/// above `min_available`. Returns (index into `old`, new size) pairs.
pub fn old_scale_downs(old: &[&ReplicaSet], budget: i32, min_available: i32, available_now: i32) -> Vec<(usize, i32)> {
    let mut sizes: Vec<i32> = old.iter().map(|rs| spec(rs)).collect();
    let mut budget = budget.max(0);
    for (i, rs) in old.iter().enumerate() {
        let unhealthy = (sizes[i] - available(rs)).max(0);
        let cut = unhealthy.min(budget);
        sizes[i] -= cut;
        budget -= cut;
    }
    let mut removable = (available_now - min_available).max(0);
    for (i, _) in old.iter().enumerate() {
        let cut = sizes[i].min(removable);
        sizes[i] -= cut;
        removable -= cut;
    }
    sizes.into_iter().enumerate().filter(|(i, size)| *size != spec(old[*i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::objects::workload::ReplicaSetStatus;

    fn rs(spec: i32, replicas: i32, available: i32) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.spec.replicas = Some(spec);
        rs.status = Some(ReplicaSetStatus { replicas, available_replicas: available, ..Default::default() });
        rs
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        let old = rs(10, 10, 10);
        let new = rs(0, 0, 0);
        assert_eq!(new_replicas(10, 3, &[&old, &new], &new), 3);
        let new = rs(3, 3, 0);
        assert_eq!(new_replicas(10, 3, &[&old, &new], &new), 3, "no room until old pods go");
        let old = rs(7, 7, 7);
        assert_eq!(new_replicas(10, 3, &[&old, &new], &new), 6);
        let new = rs(12, 12, 12);
        assert_eq!(new_replicas(10, 3, &[&new], &new), 10, "shrinks to replicas when over");
    }

    #[test]
    fn a_set_yet_to_be_made_starts_within_the_surge() {
        let old = rs(10, 10, 10);
        assert_eq!(first_replicas(10, 3, &[&old]), 3);
        assert_eq!(first_replicas(10, 3, &[]), 10);
    }

    #[test]
    fn pods_still_counted_in_status_hold_the_surge_back() {
        // The old set was asked to shrink, but its pods are not gone yet.
        let old = rs(5, 10, 10);
        let new = rs(5, 5, 0);
        assert_eq!(new_replicas(10, 3, &[&old, &new], &new), 5);
    }

    #[test]
    fn a_lagging_status_does_not_count_pods_already_given_up() {
        assert_eq!(available(&rs(6, 10, 10)), 6);
        assert_eq!(available(&rs(10, 10, 7)), 7);
    }

    #[test]
    fn old_sets_shrink_unhealthy_first_then_within_availability() {
        let older = rs(4, 4, 2);
        let old = rs(6, 6, 6);
        let new = rs(3, 3, 0);
        let all = [&older, &old, &new];
        // 13 pods, at least 8 available: up to 13 - 8 - 3 = 2 may go now.
        let budget = old_scale_down_budget(10, 2, &all, &new);
        assert_eq!(budget, 2);
        // Unhealthy first: the older set's 2 unavailable pods. 8 available, minimum 8: nothing more.
        assert_eq!(old_scale_downs(&[&older, &old], budget, 8, 8), vec![(0, 2)]);
        // With 10 available, 2 more may go, oldest first.
        assert_eq!(old_scale_downs(&[&older, &old], budget, 8, 10), vec![(0, 0)]);
    }
}
