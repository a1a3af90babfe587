//! A runtime that runs nothing: containers "run" until the test says they
//! exit. For the pod sync's tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shoal_proto::objects::time;

use super::{ContainerSpec, Listed, Run, Runtime, StartError};

#[derive(Default)]
pub struct FakeRuntime {
    containers: Mutex<HashMap<String, Listed>>,
    runs: Mutex<HashMap<String, Run>>,
    next: Mutex<u32>,
}

impl FakeRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Listed>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a running container exit with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        if let Some(run) = self.lock().get_mut(id) {
            if let Run::Running { started_at, .. } = run.clone() {
                *run =
                    Run::Exited { code, signal: None, oom: false, started_at, finished_at: time::now(), message: None };
            }
        }
    }

    /// The ids of running containers of a pod.
    pub fn running(&self, pod_uid: &str) -> Vec<String> {
        let runs = self.lock();
        self.known()
            .values()
            .filter(|c| c.pod_uid == pod_uid && matches!(runs.get(&c.id), Some(Run::Running { .. })))
            .map(|c| c.id.clone())
            .collect()
    }
}

impl Runtime for FakeRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<String, StartError> {
        if spec.container.command.first().is_some_and(|c| c == "/nonexistent") {
            return Err(StartError {
                reason: "CreateContainerError".into(),
                message: "no such file: /nonexistent".into(),
            });
        }
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        let id = format!("c{next}");
        let run = Run::Running { pid: 1000 + *next, started_at: time::now() };
        self.lock().insert(id.clone(), run);
        let listed = Listed {
            id: id.clone(),
            pod_uid: spec.pod_uid.clone(),
            container: spec.container.name.clone(),
            restarts: spec.restarts,
            ports: spec.ports.clone(),
        };
        self.known().insert(id.clone(), listed);
        Ok(id)
    }

    fn state(&self, id: &str) -> Run {
        self.lock().get(id).cloned().unwrap_or(Run::Gone)
    }

    async fn stop(&self, id: &str, _grace: Duration) {
        self.exit(id, 137);
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
        self.known().remove(id);
    }

    fn list(&self) -> Vec<Listed> {
        self.known().values().cloned().collect()
    }
}
