//! `POST /exec/<grant id>` on the agent's logs port, with the grant's
//! secret as `Authorization: Bearer <secret>`: runs the command the grant
//! names in the running instance of its container, as exec probes run
//! theirs (`shoal-agent enter PID --in RECORD -- COMMAND...`, from
//! [`LinuxRuntime::enter`]), then streams its output back in
//! frames and ends with its exit code. See [`shoal_client::exec`] for who
//! may exec and the framing. A caller that goes away takes the command
//! with it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use shoal_client::exec::{read_frame, take_grant, write_frame, Channel};
use shoal_client::Store;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::runtime::linux::LinuxRuntime;
use crate::runtime::{Run, Runtime};

/// What an exec needs from the agent.
#[derive(Clone)]
pub struct Exec {
    pub store: Store,
    pub node: String,
    pub runtime: Arc<LinuxRuntime>,
}

/// Reads from `pipe` while it is open; never finishes once it is closed.
async fn read_open<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buffer: &mut [u8]) -> usize {
    match pipe {
        Some(reader) => reader.read(buffer).await.unwrap_or(0),
        None => std::future::pending().await,
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Kills a process group when dropped, unless emptied first.
struct KillGroup(Option<Pid>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// Copies the caller's input frames to the command (an empty one closes
/// its input) until the caller goes away, then says so on `gone`.
async fn feed_input(
    mut from_caller: tokio::net::tcp::OwnedReadHalf,
    mut stdin: Option<tokio::process::ChildStdin>,
    gone: tokio::sync::oneshot::Sender<()>,
) {
    loop {
        match read_frame(&mut from_caller).await {
            Ok(Some((Channel::Stdin, data))) if data.is_empty() => stdin = None,
            Ok(Some((Channel::Stdin, data))) => {
                if let Some(input) = stdin.as_mut() {
                    if input.write_all(&data).await.is_err() {
                        stdin = None;
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let _ = gone.send(());
}

impl Exec {
    /// The record and first process of a container's newest instance, while
    /// it runs.
    fn running(&self, pod_uid: &str, container: &str) -> Option<(PathBuf, u32)> {
        let newest = self
            .runtime
            .list()
            .into_iter()
            .filter(|c| c.pod_uid == pod_uid && c.container == container)
            .max_by_key(|c| c.restarts)?;
        // The runtime's state may wait a moment for an exit being written.
        match tokio::task::block_in_place(|| self.runtime.state(&newest.id)) {
            Run::Running { pid, .. } if pid != 0 => Some((self.runtime.record(&newest.id).dir, pid)),
            _ => None,
        }
    }

    /// Answers one exec request whose head has been read.
    pub async fn answer(&self, mut stream: TcpStream, id: &str, secret: &str) -> std::io::Result<()> {
        let grant = match take_grant(&self.store, &self.node, id, secret).await {
            Ok(grant) => grant,
            Err(e @ shoal_client::Error::Forbidden(_)) => {
                return crate::logs::respond(&mut stream, "403 Forbidden", &format!("{e}\n")).await
            }
            Err(e) => {
                let message = format!("cannot read the grant from the store: {e}\n");
                return crate::logs::respond(&mut stream, "503 Service Unavailable", &message).await;
            }
        };
        let Some((record, pid)) = self.running(&grant.pod_uid, &grant.container) else {
            let message = format!("container not found ({:?})\n", grant.container);
            return crate::logs::respond(&mut stream, "404 Not Found", &message).await;
        };
        tracing::info!(pod = %grant.pod, namespace = %grant.namespace, container = %grant.container,
            command = ?grant.command, "exec");
        let mut command = Command::from(self.runtime.enter(pid, Some(&record)));
        command.arg("--").args(&grant.command);
        command.stdin(if grant.stdin { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return crate::logs::respond(&mut stream, "500 Internal Server Error", &format!("cannot exec: {e}\n"))
                    .await
            }
        };
        crate::logs::respond(&mut stream, "200 OK", "").await?;
        // Whatever ends this exec early ends the command too.
        let mut group = KillGroup(child.id().map(|id| Pid::from_raw(id as i32)));
        let (from_caller, mut to_caller) = stream.into_split();
        // Frames from the caller are read on a task of their own (reading one
        // is not cancel-safe) that also feeds the command's input, so that a
        // command not reading its input never holds up its output.
        let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
        let caller = AbortOnDrop(tokio::spawn(feed_input(from_caller, child.stdin.take(), gone_tx)));
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        let (mut out_buffer, mut err_buffer) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
        let outcome = loop {
            tokio::select! {
                n = read_open(&mut stdout, &mut out_buffer) => match n {
                    0 => stdout = None,
                    n => write_frame(&mut to_caller, Channel::Stdout, &out_buffer[..n]).await?,
                },
                n = read_open(&mut stderr, &mut err_buffer) => match n {
                    0 => stderr = None,
                    n => write_frame(&mut to_caller, Channel::Stderr, &err_buffer[..n]).await?,
                },
                // The caller is gone: so is the command.
                _ = &mut gone => break None,
                status = child.wait(), if stdout.is_none() && stderr.is_none() => break Some(status),
            }
        };
        match outcome {
            Some(Ok(status)) => {
                // Reaped: its group id may be anyone's now.
                group.0 = None;
                use std::os::unix::process::ExitStatusExt;
                let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                write_frame(&mut to_caller, Channel::Exit, &code.to_be_bytes()).await?;
                to_caller.shutdown().await?;
                // Closing with input unread would reset the connection and
                // could lose the exit code: the caller closes first.
                let _ = tokio::time::timeout(Duration::from_secs(5), gone).await;
                drop(caller);
                Ok(())
            }
            Some(Err(e)) => write_frame(&mut to_caller, Channel::Error, e.to_string().as_bytes()).await,
            None => {
                drop(group);
                let _ = child.wait().await;
                Ok(())
            }
        }
    }
}
