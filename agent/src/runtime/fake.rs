//! A runtime that runs nothing: containers "run" until the test says they
//! exit. For the pod sync's tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shoal_proto::objects::time;

use super::{ContainerSpec, Run, Runtime, StartError};

#[derive(Default)]
pub struct FakeRuntime {
    containers: Mutex<HashMap<String, (String, String, Run)>>,
    next: Mutex<u32>,
}

impl FakeRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, String, Run)>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a running container exit with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        if let Some((_, _, run)) = self.lock().get_mut(id) {
            if let Run::Running { started_at, .. } = run.clone() {
                *run = Run::Exited { code, signal: None, oom: false, started_at, finished_at: time::now() };
            }
        }
    }

    /// The ids of running containers of a pod.
    pub fn running(&self, pod_uid: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, (uid, _, run))| uid == pod_uid && matches!(run, Run::Running { .. }))
            .map(|(id, _)| id.clone())
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
        self.lock().insert(id.clone(), (spec.pod_uid.clone(), spec.container.name.clone(), run));
        Ok(id)
    }

    fn state(&self, id: &str) -> Run {
        self.lock().get(id).map_or(Run::Gone, |(_, _, run)| run.clone())
    }

    async fn stop(&self, id: &str, _grace: Duration) {
        self.exit(id, 137);
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn list(&self) -> Vec<(String, String, String)> {
        self.lock().iter().map(|(id, (uid, name, _))| (id.clone(), uid.clone(), name.clone())).collect()
    }
}
