//! `shoalctl exec POD [-c C] [-i] -- COMMAND...`: runs a command in a
//! running container, as `kubectl exec` does. It writes a one-use grant for
//! the pod's node into the store, then asks that node's agent to run it
//! (see `shoal_client::exec`), streams the output, and exits with the
//! command's exit code.

use clap::Args;
use shoal_client::exec::{read_frame, write_frame, write_grant, Channel, Grant};
use shoal_client::Store;
use std::io::Read;

use tokio::io::AsyncWriteExt;

use super::logs::{connect, locate, read_head};
use super::{server_error, Scope};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The pod (or pod/NAME).
    pub pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass standard input to the command.
    #[arg(short = 'i', long = "stdin")]
    pub stdin: bool,
    /// Accepted for kubectl's `-it`; there is no terminal support.
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub scope: Scope,
}

/// The command ended with a non-zero exit code: shoalctl exits with it.
#[derive(Debug)]
pub struct Exited(pub i32);

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command terminated with exit code {}", self.0)
    }
}

impl std::error::Error for Exited {}

pub async fn exec(store: &Store, args: ExecArgs) -> anyhow::Result<()> {
    if args.tty {
        eprintln!("Unable to use a TTY - shoalctl exec has no terminal support; running without one");
    }
    let located = locate(store, &args.pod, args.container.as_deref(), true, &args.scope).await?;
    let (pod, container) = (&located.pod, &located.container);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase == "Succeeded" || phase == "Failed" {
        anyhow::bail!("cannot exec into a container in a completed pod; current phase is {phase}");
    }
    let running =
        pod.status.iter().flat_map(|s| &s.container_statuses).any(|status| {
            status.name == *container && status.state.as_ref().is_some_and(|state| state.running.is_some())
        });
    if !running {
        anyhow::bail!("unable to upgrade connection: container not found ({container:?})");
    }
    let grant = Grant {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        pod: pod.metadata.name.clone(),
        pod_uid: pod.metadata.uid.clone(),
        container: container.clone(),
        command: args.command.clone(),
        stdin: args.stdin,
        secret_sha256: String::new(),
    };
    let (id, secret) = write_grant(store, &located.node, grant).await.map_err(server_error)?;
    let mut stream = connect(&located).await?;
    let request =
        format!("POST /exec/{id} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {secret}\r\n\r\n", located.address);
    stream.write_all(request.as_bytes()).await?;
    if let Err(refusal) = read_head(&mut stream).await? {
        anyhow::bail!("unable to upgrade connection: {refusal}");
    }
    let (mut from_agent, mut to_agent) = stream.into_split();
    // The input is read on a thread of its own, left behind when the command
    // ends (a blocked read of a terminal could not be cancelled).
    let (input_tx, mut input) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    if args.stdin {
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 32 * 1024];
            loop {
                let n = std::io::stdin().read(&mut buffer).unwrap_or(0);
                if input_tx.blocking_send(buffer[..n].to_vec()).is_err() || n == 0 {
                    break;
                }
            }
        });
    } else {
        drop(input_tx);
    }
    tokio::spawn(async move {
        while let Some(chunk) = input.recv().await {
            if write_frame(&mut to_agent, Channel::Stdin, &chunk).await.is_err() {
                break;
            }
        }
        // Kept open until the end: closing it would tell the agent the caller is gone.
        std::future::pending::<()>().await;
    });
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    loop {
        match read_frame(&mut from_agent).await? {
            Some((Channel::Stdout, data)) => {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
            }
            Some((Channel::Stderr, data)) => {
                stderr.write_all(&data).await?;
                stderr.flush().await?;
            }
            Some((Channel::Exit, code)) => {
                let code = <[u8; 4]>::try_from(code.as_slice()).map(i32::from_be_bytes).unwrap_or(1);
                return if code == 0 { Ok(()) } else { Err(Exited(code).into()) };
            }
            Some((Channel::Error, message)) => {
                anyhow::bail!("error executing command in container: {}", String::from_utf8_lossy(&message))
            }
            Some((Channel::Stdin, _)) => {}
            None => anyhow::bail!("the agent closed the connection before the command ended"),
        }
    }
}
