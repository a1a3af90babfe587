//! The pod sync, level triggered: given what a pod asks for (or that it
//! must not run here), start what is missing, restart what exited as its
//! restart policy says (with backoff), stop what must go, and say what the
//! pod's status is now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::ObjectKey;
use shoal_proto::objects::pod::ContainerPort;
use shoal_proto::objects::{time, Pod};

use crate::ports::Ports;
use crate::runtime::{ContainerSpec, Listed, Run, Runtime};
use crate::service_env::ServiceEnv;
use crate::status::Seen;

/// Restart delays double up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts its backoff afresh.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, Default)]
struct Tracked {
    id: Option<String>,
    restarts: i32,
    backoff: Duration,
    retry_at: Option<Instant>,
    started: Option<Instant>,
    /// Why it is not running, while it waits.
    waiting: Option<(String, String)>,
    /// Its last exit, kept to report while it waits to restart.
    last: Option<Run>,
    /// The ports it was given, once it has been.
    ports: Option<Vec<ContainerPort>>,
}

pub struct PodSync<R> {
    runtime: Arc<R>,
    base_backoff: Duration,
    ports: Arc<Ports>,
    service_env: ServiceEnv,
    /// By (pod uid, container name).
    tracked: Mutex<HashMap<(String, String), Tracked>>,
    /// Readiness probe results by container id; a container without an
    /// entry has not passed its probe yet.
    ready: Mutex<HashMap<String, bool>>,
    /// Containers whose startup probe has not passed yet, by id.
    starting: Mutex<std::collections::HashSet<String>>,
}

fn restarts_after(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

impl<R: Runtime> PodSync<R> {
    pub fn new(runtime: Arc<R>, base_backoff: Duration, ports: Arc<Ports>, service_env: ServiceEnv) -> PodSync<R> {
        PodSync {
            runtime,
            base_backoff,
            ports,
            service_env,
            tracked: Mutex::new(HashMap::new()),
            ready: Mutex::new(HashMap::new()),
            starting: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Takes over the containers the runtime already has (after an agent
    /// restart): the latest instance of each pod's container is tracked
    /// again, with its restart count; older ones are forgotten.
    pub fn adopt(&self, listed: Vec<Listed>) {
        let mut latest: HashMap<(String, String), Listed> = HashMap::new();
        for container in listed {
            let key = (container.pod_uid.clone(), container.container.clone());
            match latest.get(&key) {
                Some(kept) if kept.restarts >= container.restarts => self.runtime.remove(&container.id),
                _ => {
                    if let Some(older) = latest.insert(key, container) {
                        self.runtime.remove(&older.id);
                    }
                }
            }
        }
        let mut tracked = self.lock();
        for (key, container) in latest {
            let started = matches!(self.runtime.state(&container.id), Run::Running { .. }).then(Instant::now);
            self.ports.adopt(&container.pod_uid, &container.ports);
            let ports = Some(container.ports);
            tracked.insert(
                key,
                Tracked { id: Some(container.id), restarts: container.restarts, started, ports, ..Default::default() },
            );
        }
    }

    /// Records a readiness probe's verdict on container `id`.
    pub fn set_ready(&self, id: &str, ready: bool) {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), ready);
    }

    /// Marks container `id` as starting (true) or started (false): while it
    /// starts, its other probes wait and it is not ready.
    pub fn set_starting(&self, id: &str, starting: bool) {
        let mut set = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if starting {
            set.insert(id.to_string());
        } else {
            set.remove(id);
        }
    }

    pub fn is_starting(&self, id: &str) -> bool {
        self.starting.lock().unwrap_or_else(|p| p.into_inner()).contains(id)
    }

    fn is_ready(&self, id: &str) -> bool {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied().unwrap_or(false)
    }

    /// The running containers of pod `uid`: (container name, id, pid).
    pub fn running(&self, uid: &str) -> Vec<(String, String, u32)> {
        self.lock()
            .iter()
            .filter(|((u, _), _)| u == uid)
            .filter_map(|((_, name), t)| {
                let id = t.id.clone()?;
                match self.runtime.state(&id) {
                    Run::Running { pid, .. } if pid > 0 => Some((name.clone(), id, pid)),
                    _ => None,
                }
            })
            .collect()
    }

    /// The ports container `name` of pod `uid` was given.
    pub fn ports(&self, uid: &str, name: &str) -> Vec<ContainerPort> {
        self.lock().get(&(uid.to_string(), name.to_string())).and_then(|t| t.ports.clone()).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every container of pod `uid` (it was deleted, or bound elsewhere).
    pub async fn remove(&self, uid: &str, grace: Duration) {
        let ids: Vec<String> = {
            let mut tracked = self.lock();
            let keys: Vec<(String, String)> = tracked.keys().filter(|(u, _)| u == uid).cloned().collect();
            keys.iter().filter_map(|k| tracked.remove(k)).filter_map(|t| t.id).collect()
        };
        for id in ids {
            self.runtime.stop(&id, grace).await;
            self.runtime.remove(&id);
            self.ready.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
        self.runtime.remove_pod(uid);
        self.ports.release(uid);
    }

    /// Brings the runtime in line with `pod`; returns each container's state
    /// and, when something waits on a timer, how soon to look again.
    pub fn sync(&self, pod: &Pod) -> (Vec<Seen>, Option<Duration>) {
        let uid = pod.metadata.uid.clone();
        let policy = pod.spec.restart_policy().to_string();
        let key = ObjectKey::of(pod);
        let mut seen = Vec::new();
        let mut next: Option<Duration> = None;
        let mut tracked = self.lock();
        for container in &pod.spec.containers {
            let t = tracked.entry((uid.clone(), container.name.clone())).or_default();
            let run = t.id.as_deref().map_or(Run::Gone, |id| self.runtime.state(id));
            let mut will_run = true;
            let start_now = match &run {
                Run::Running { .. } => {
                    t.waiting = None;
                    false
                }
                Run::Exited { code, .. } if !restarts_after(&policy, *code) => {
                    will_run = false;
                    false
                }
                Run::Exited { code, message, .. } => {
                    let ran_long = t.started.is_some_and(|s| s.elapsed() >= BACKOFF_RESET);
                    if t.retry_at.is_none() {
                        t.backoff = if t.backoff.is_zero() || ran_long {
                            self.base_backoff
                        } else {
                            (t.backoff * 2).min(MAX_BACKOFF)
                        };
                        t.retry_at = Some(Instant::now() + t.backoff);
                        t.last = Some(run.clone());
                        t.waiting = Some(match message {
                            // It never ran: say why, as Kubernetes' RunContainerError does.
                            Some(why) => ("RunContainerError".into(), why.clone()),
                            None => (
                                "CrashLoopBackOff".into(),
                                format!(
                                    "back-off {:?} restarting failed container={} pod={} (exit code {code})",
                                    t.backoff, container.name, key.name
                                ),
                            ),
                        });
                    }
                    t.retry_at.is_some_and(|at| Instant::now() >= at)
                }
                Run::Gone => t.retry_at.is_none_or(|at| Instant::now() >= at),
            };
            if start_now {
                if let Some(old) = t.id.take() {
                    self.runtime.remove(&old);
                    t.restarts += 1;
                    shoal_client::metrics::inc("shoal_agent_container_restarts_total", &[]);
                }
                let ports = match &t.ports {
                    Some(ports) => Ok(ports.clone()),
                    // A pod with an address of its own takes no port of the node's.
                    None if !pod.spec.host_network() => Ok(container.ports.clone()),
                    None => self.ports.allocate(&uid, &container.ports).map_err(|message| crate::runtime::StartError {
                        reason: "CreateContainerError".into(),
                        message,
                    }),
                };
                t.ports = ports.as_ref().ok().cloned();
                let started = ports.and_then(|ports| {
                    self.runtime.start(&ContainerSpec {
                        pod: key.clone(),
                        pod_uid: uid.clone(),
                        container: container.clone(),
                        hostname: key.name.clone(),
                        restarts: t.restarts,
                        host_network: pod.spec.host_network(),
                        ports,
                        node_ip: self.ports.address().to_string(),
                        service_env: (self.service_env)(&key.namespace),
                    })
                });
                match started {
                    Ok(id) => {
                        shoal_client::metrics::inc("shoal_agent_container_starts_total", &[]);
                        t.id = Some(id);
                        t.retry_at = None;
                        t.waiting = None;
                        t.started = Some(Instant::now());
                    }
                    Err(e) => {
                        t.backoff =
                            if t.backoff.is_zero() { self.base_backoff } else { (t.backoff * 2).min(MAX_BACKOFF) };
                        t.retry_at = Some(Instant::now() + t.backoff);
                        t.waiting = Some((e.reason, e.message));
                    }
                }
            }
            if let Some(at) = t.retry_at {
                let wait = at.saturating_duration_since(Instant::now());
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
            let run = t.id.as_deref().map_or(Run::Gone, |id| self.runtime.state(id));
            let shown = match (&run, &t.last) {
                (Run::Gone, Some(last)) if t.waiting.is_some() => last.clone(),
                _ => run,
            };
            let started = t.id.as_deref().is_none_or(|id| !self.is_starting(id));
            let probed_ready =
                started && (container.readiness_probe.is_none() || t.id.as_deref().is_some_and(|id| self.is_ready(id)));
            seen.push(Seen {
                name: container.name.clone(),
                probed_ready,
                run: shown,
                restarts: t.restarts,
                waiting: t.waiting.clone(),
                will_run,
                ports: t.ports.clone().unwrap_or_default(),
            });
        }
        (seen, next)
    }

    /// Pod uids with containers, for finding pods that must no longer run.
    pub fn pods(&self) -> Vec<String> {
        let mut uids: Vec<String> = self.lock().keys().map(|(u, _)| u.clone()).collect();
        uids.sort();
        uids.dedup();
        uids
    }
}

/// The status to write for `pod` after a sync; `pod_ip` is its own
/// address, None for a pod on the host's network.
pub fn status_of(
    pod: &Pod,
    seen: &[Seen],
    host_ip: &str,
    pod_ip: Option<String>,
) -> shoal_proto::objects::pod::PodStatus {
    crate::status::compute(pod, seen, host_ip, pod_ip, &time::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    fn pod(policy: &str, command: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "nodeName": "n1", "containers": [{"name": "main", "command": [command]}]}
        }))
        .expect("pod")
    }

    fn sync_with(base: Duration) -> (Arc<FakeRuntime>, PodSync<FakeRuntime>) {
        let runtime = Arc::new(FakeRuntime::default());
        let ports = Arc::new(Ports::new("127.0.93.18".parse().expect("ip"), 29180..=29189));
        (runtime.clone(), PodSync::new(runtime, base, ports, crate::service_env::none()))
    }

    #[test]
    fn a_pod_starts_once_however_often_it_is_synced() {
        let (runtime, sync) = sync_with(Duration::from_millis(10));
        let p = pod("Always", "/bin/true");
        for _ in 0..3 {
            sync.sync(&p);
        }
        assert_eq!(runtime.running("u1").len(), 1);
        let (seen, _) = sync.sync(&p);
        assert_eq!(crate::status::phase(&seen), "Running");
    }

    #[test]
    fn a_crashed_container_restarts_after_a_growing_backoff() {
        let (runtime, sync) = sync_with(Duration::from_millis(50));
        let p = pod("Always", "/bin/true");
        sync.sync(&p);
        let first = runtime.running("u1")[0].clone();
        runtime.exit(&first, 1);
        let (seen, next) = sync.sync(&p);
        assert_eq!(seen[0].waiting.as_ref().map(|w| w.0.as_str()), Some("CrashLoopBackOff"));
        assert!(next.is_some_and(|n| n <= Duration::from_millis(50)));
        assert!(runtime.running("u1").is_empty(), "not before the backoff");
        std::thread::sleep(Duration::from_millis(60));
        let (seen, _) = sync.sync(&p);
        assert_eq!(seen[0].restarts, 1);
        let second = runtime.running("u1")[0].clone();
        runtime.exit(&second, 1);
        let (_, next) = sync.sync(&p);
        assert!(next.is_some_and(|n| n > Duration::from_millis(50)), "the backoff doubled: {next:?}");
    }

    #[test]
    fn restart_policies_decide_what_an_exit_means() {
        for (policy, code, phase) in [("Never", 1, "Failed"), ("OnFailure", 0, "Succeeded"), ("Never", 0, "Succeeded")]
        {
            let (runtime, sync) = sync_with(Duration::from_millis(10));
            let p = pod(policy, "/bin/true");
            sync.sync(&p);
            runtime.exit(&runtime.running("u1")[0], code);
            let (seen, next) = sync.sync(&p);
            assert_eq!(crate::status::phase(&seen), phase, "{policy} exit {code}");
            assert_eq!(next, None);
        }
    }

    #[test]
    fn a_container_that_cannot_start_waits_with_the_reason() {
        let (runtime, sync) = sync_with(Duration::from_millis(10));
        let (seen, next) = sync.sync(&pod("Always", "/nonexistent"));
        assert_eq!(seen[0].waiting.as_ref().map(|w| w.0.as_str()), Some("CreateContainerError"));
        assert!(next.is_some());
        assert!(runtime.list().is_empty());
    }

    #[tokio::test]
    async fn removing_a_pod_stops_its_containers() {
        let (runtime, sync) = sync_with(Duration::from_millis(10));
        sync.sync(&pod("Always", "/bin/true"));
        assert_eq!(sync.pods(), ["u1"]);
        sync.remove("u1", Duration::from_secs(1)).await;
        assert!(runtime.list().is_empty());
        assert!(sync.pods().is_empty());
    }
}
