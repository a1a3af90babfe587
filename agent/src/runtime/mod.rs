//! The container runtime, behind a trait so that the pod sync can be tested
//! without root. The real one (namespaces, cgroups, images) implements the
//! same trait.

pub mod fake;

use std::future::Future;
use std::time::Duration;

use shoal_client::ObjectKey;
use shoal_proto::objects::pod::Container;

/// One container to start.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub pod: ObjectKey,
    pub pod_uid: String,
    pub container: Container,
    /// The pod name: the container's hostname.
    pub hostname: String,
}

/// A container's life as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run {
    Running {
        pid: u32,
        started_at: String,
    },
    Exited {
        code: i32,
        signal: Option<i32>,
        oom: bool,
        started_at: String,
        finished_at: String,
    },
    /// The runtime has no such container (it was never started, or is forgotten).
    Gone,
}

/// Why a container could not start: shown as the waiting reason's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartError {
    /// `CreateContainerError`, `ErrImagePull`, ...
    pub reason: String,
    pub message: String,
}

pub trait Runtime: Send + Sync + 'static {
    /// Starts a container; returns its id.
    fn start(&self, spec: &ContainerSpec) -> Result<String, StartError>;

    fn state(&self, id: &str) -> Run;

    /// SIGTERM, then SIGKILL after `grace`; returns once nothing of it runs.
    fn stop(&self, id: &str, grace: Duration) -> impl Future<Output = ()> + Send;

    /// Forgets an exited container.
    fn remove(&self, id: &str);

    /// Every container the runtime knows: (id, pod uid, container name).
    fn list(&self) -> Vec<(String, String, String)>;
}
