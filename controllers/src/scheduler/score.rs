//! Scores: among the nodes that fit, prefer the least allocated, and spread
//! the replicas of one owner across nodes.

use shoal_proto::objects::node::allocatable;
use shoal_proto::objects::Node;

use super::filter::Usage;

/// 0..=100: the free share of CPU and memory after placing the pod, averaged.
pub fn least_allocated(node: &Node, usage: &Usage, (cpu, memory): (i64, i64)) -> i64 {
    let (cpu_total, memory_total, _) = allocatable(node);
    let free = |total: Option<i64>, used: i64| match total {
        Some(total) if total > 0 => ((total - used).max(0) * 100 / total).min(100),
        _ => 50,
    };
    (free(cpu_total, usage.cpu + cpu) + free(memory_total, usage.memory + memory)) / 2
}

/// 0..=100: fewer pods of the same owner on this node scores higher.
pub fn spread(same_owner_here: usize, most_on_any_node: usize) -> i64 {
    if most_on_any_node == 0 {
        return 100;
    }
    (100 * (most_on_any_node - same_owner_here.min(most_on_any_node)) / most_on_any_node) as i64
}

/// Spreading weighs twice as much as free room: replicas of one Deployment
/// should land on different nodes first.
pub fn total(least_allocated: i64, spread: i64) -> i64 {
    least_allocated + 2 * spread
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpu: &str, memory: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": cpu, "memory": memory}}
        }))
        .expect("node")
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let n = node("4", "8Gi");
        let empty = least_allocated(&n, &Usage::default(), (1000, 1 << 30));
        let busy =
            least_allocated(&n, &Usage { cpu: 2000, memory: 4 << 30, pods: 2, ..Default::default() }, (1000, 1 << 30));
        assert_eq!(empty, (75 + 87) / 2);
        assert!(empty > busy);
    }

    #[test]
    fn spreading_prefers_nodes_without_siblings() {
        assert_eq!(spread(0, 0), 100);
        assert_eq!(spread(0, 2), 100);
        assert_eq!(spread(1, 2), 50);
        assert_eq!(spread(2, 2), 0);
        assert!(total(40, 100) > total(90, 50));
    }
}
