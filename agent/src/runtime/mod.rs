//! The container runtime, behind a trait so that the pod sync can be tested
//! without root: [`linux`] runs real isolated processes, [`fake`] runs
//! nothing.

pub mod fake;
pub mod linux;

use std::future::Future;
use std::process::Command;
use std::time::Duration;

use shoal_client::ObjectKey;
use shoal_proto::objects::pod::{Container, ContainerPort};

/// One container to start.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub pod: ObjectKey,
    pub pod_uid: String,
    pub container: Container,
    /// The pod name: the container's hostname.
    pub hostname: String,
    /// The restart count this instance starts with.
    pub restarts: i32,
    /// Whether the container shares the node's network; else it joins its
    /// pod's own network namespace.
    pub host_network: bool,
    /// The container's ports, each 0 replaced by the port the node gave it.
    pub ports: Vec<ContainerPort>,
    /// The node's address, for `SHOAL_NODE_IP`.
    pub node_ip: String,
    /// The variables of the namespace's Services, before the container's own.
    pub service_env: Vec<(String, String)>,
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
        /// Why the command never ran, when it did not.
        message: Option<String>,
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

/// A container the runtime knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub pod_uid: String,
    pub container: String,
    pub restarts: i32,
    /// The ports it was given.
    pub ports: Vec<ContainerPort>,
}

pub trait Runtime: Send + Sync + 'static {
    /// Starts a container; returns its id.
    fn start(&self, spec: &ContainerSpec) -> Result<String, StartError>;

    fn state(&self, id: &str) -> Run;

    /// SIGTERM, then SIGKILL after `grace`; returns once nothing of it runs.
    fn stop(&self, id: &str, grace: Duration) -> impl Future<Output = ()> + Send;

    /// Forgets an exited container.
    fn remove(&self, id: &str);

    /// Forgets what is left of a pod (its network too) once all its
    /// containers are removed.
    fn remove_pod(&self, _pod_uid: &str) {}

    /// The address of a pod with a network of its own.
    fn pod_ip(&self, _pod_uid: &str) -> Option<std::net::IpAddr> {
        None
    }

    /// Every container the runtime knows.
    fn list(&self) -> Vec<Listed>;

    /// A command that, given `-- COMMAND...` or `--tcp PORT`, probes inside
    /// the container whose first process is `pid`; None when probes run on
    /// the host.
    fn exec_probe(&self, _pid: u32) -> Option<Command> {
        None
    }
}
