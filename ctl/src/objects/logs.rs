//! `shoalctl logs POD [-c C] [-f] [--previous]`: a container's output, read
//! from the logs endpoint of the agent on the pod's node (recorded on the
//! Node), as `kubectl logs` reads it from the kubelet.

use clap::Args;
use shoal_client::{Api, Store};
use shoal_proto::objects::node::LOGS_ADDRESS_ANNOTATION;
use shoal_proto::objects::{Node, Pod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{server_error, Scope};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pub pod: String,
    /// The container (needed when the pod has more than one).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming the output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The output of the container's previous instance (before its last restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    #[command(flatten)]
    pub scope: Scope,
}

fn bad_request(message: String) -> anyhow::Error {
    anyhow::anyhow!("Error from server (BadRequest): {message}")
}

pub async fn logs(store: &Store, args: LogsArgs) -> anyhow::Result<()> {
    let name = args.pod.strip_prefix("pod/").or_else(|| args.pod.strip_prefix("pods/")).unwrap_or(&args.pod);
    let pod = Api::<Pod>::new(store.clone()).get(args.scope.namespace(), name).await.map_err(server_error)?;
    let names: Vec<&str> = pod.spec.containers.iter().map(|c| c.name.as_str()).collect();
    let container = match (&args.container, names.as_slice()) {
        (Some(c), _) if names.contains(&c.as_str()) => c.clone(),
        (Some(c), _) => return Err(bad_request(format!("container {c} is not valid for pod {name}"))),
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )))
        }
    };
    let Some(node_name) = pod.spec.node_name.clone() else {
        return Err(bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    };
    let node = Api::<Node>::new(store.clone()).get("", &node_name).await.map_err(server_error)?;
    let Some(address) = node.metadata.annotations.get(LOGS_ADDRESS_ANNOTATION) else {
        return Err(bad_request(format!("node {node_name} serves no logs (is its shoal-agent running?)")));
    };
    let mut query = Vec::new();
    if args.follow {
        query.push("follow=true");
    }
    if args.previous {
        query.push("previous=true");
    }
    let path = format!("/logs/{}/{container}?{}", pod.metadata.uid, query.join("&"));
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the agent of node {node_name} at {address}: {e}"))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    read_response(&mut stream, &container, name, args.previous).await
}

/// Copies the response body to stdout as it arrives; a refusal becomes the error.
async fn read_response(stream: &mut TcpStream, container: &str, pod: &str, previous: bool) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            anyhow::bail!("the agent closed the connection");
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head);
    let ok = status.split_whitespace().nth(1) == Some("200");
    if !ok {
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        return Err(bad_request(if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            body.trim().to_string()
        }));
    }
    let mut out = tokio::io::stdout();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(out.flush().await?);
        }
        out.write_all(&buffer[..n]).await?;
        out.flush().await?;
    }
}
