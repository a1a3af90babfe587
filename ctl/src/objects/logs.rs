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

pub fn bad_request(message: String) -> anyhow::Error {
    anyhow::anyhow!("Error from server (BadRequest): {message}")
}

/// A pod's container, and the agent that runs it.
pub struct Located {
    pub pod: Pod,
    pub container: String,
    pub node: String,
    /// The agent's logs address, from its Node.
    pub address: String,
}

/// Finds `pod` (or `pod/NAME`), its container (`container`, else the one
/// it has, else its first when `default_first`), and its node's agent.
pub async fn locate(
    store: &Store,
    pod: &str,
    container: Option<&str>,
    default_first: bool,
    scope: &Scope,
) -> anyhow::Result<Located> {
    let name = pod.strip_prefix("pod/").or_else(|| pod.strip_prefix("pods/")).unwrap_or(pod);
    let pod = Api::<Pod>::new(store.clone()).get(scope.namespace(), name).await.map_err(server_error)?;
    let names: Vec<&str> = pod.spec.containers.iter().map(|c| c.name.as_str()).collect();
    let container = match (container, names.as_slice()) {
        (Some(c), _) if names.contains(&c) => c.to_string(),
        (Some(c), _) => return Err(bad_request(format!("container {c} is not valid for pod {name}"))),
        (None, [only]) => only.to_string(),
        (None, [first, ..]) if default_first => {
            eprintln!("Defaulted container \"{first}\" out of: {}", names.join(", "));
            first.to_string()
        }
        (None, _) => {
            return Err(bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )))
        }
    };
    let Some(node) = pod.spec.node_name.clone() else {
        return Err(bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    };
    let node_object = Api::<Node>::new(store.clone()).get("", &node).await.map_err(server_error)?;
    let Some(address) = node_object.metadata.annotations.get(LOGS_ADDRESS_ANNOTATION).cloned() else {
        return Err(bad_request(format!("node {node} serves no logs (is its shoal-agent running?)")));
    };
    Ok(Located { pod, container, node, address })
}

/// Connects to the agent that runs `located`.
pub async fn connect(located: &Located) -> anyhow::Result<TcpStream> {
    TcpStream::connect(&located.address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the agent of node {} at {}: {e}", located.node, located.address))
}

pub async fn logs(store: &Store, args: LogsArgs) -> anyhow::Result<()> {
    let located = locate(store, &args.pod, args.container.as_deref(), false, &args.scope).await?;
    let (name, container, address) = (&located.pod.metadata.name, &located.container, &located.address);
    let mut query = Vec::new();
    if args.follow {
        query.push("follow=true");
    }
    if args.previous {
        query.push("previous=true");
    }
    let path = format!("/logs/{}/{container}?{}", located.pod.metadata.uid, query.join("&"));
    let mut stream = connect(&located).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    read_response(&mut stream, container, name, args.previous).await
}

/// Reads the agent's answer head: Ok for 200, else the refusal's text.
pub async fn read_head(stream: &mut TcpStream) -> anyhow::Result<Result<(), String>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            anyhow::bail!("the agent closed the connection");
        }
        head.push(byte[0]);
    }
    if String::from_utf8_lossy(&head).split_whitespace().nth(1) == Some("200") {
        return Ok(Ok(()));
    }
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(Err(body.trim().to_string()))
}

/// Copies the response body to stdout as it arrives; a refusal becomes the error.
async fn read_response(stream: &mut TcpStream, container: &str, pod: &str, previous: bool) -> anyhow::Result<()> {
    if let Err(refusal) = read_head(stream).await? {
        return Err(bad_request(if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            refusal
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
