//! HTTP/1.1 beside gRPC: a client port answers both, as etcd's does. Each
//! connection is told apart by its first bytes (HTTP/2's preface goes to
//! gRPC, anything else here), and --listen-metrics-urls serves the same
//! routes:
//! - `GET /metrics`, `/health`, `/livez`, `/readyz`, `/version`;
//! - `POST /v3/...`: the JSON gateway (see `api::gateway`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::node::Node;
use super::observe;
use crate::config::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION};
use crate::error::EtcdError;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long a client may take to send its first bytes.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP2_PREFACE: &[u8] = b"PRI ";

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

pub fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// Whether a fresh connection speaks HTTP/2 (gRPC): waits for its first
/// four bytes. None if it sent nothing in time.
pub async fn is_http2(stream: &TcpStream) -> Option<bool> {
    let mut first = [0u8; 4];
    let deadline = tokio::time::Instant::now() + SNIFF_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        if n == first.len() || !HTTP2_PREFACE.starts_with(&first[..n]) {
            return Some(first[..n] == *HTTP2_PREFACE);
        }
        // Fewer than four bytes so far, all of them a preface's: wait for more.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Serves HTTP/1.1 requests on `stream` until the client closes it.
pub async fn serve_connection(stream: TcpStream, node: Arc<Node>) {
    let service = hyper::service::service_fn(move |request| {
        let node = node.clone();
        async move { Ok::<_, Infallible>(route(request, node).await) }
    });
    let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "http connection ended");
    }
}

pub async fn route(request: Request<Incoming>, node: Arc<Node>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/metrics") => {
            answer(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", observe::metrics(&node).await)
        }
        (Method::GET, "/health") => {
            let (healthy, reason) = observe::health(&node).await;
            let body = format!("{{\"health\":\"{healthy}\",\"reason\":\"{reason}\"}}");
            let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            answer(status, "application/json", body)
        }
        (Method::GET, "/livez") => observe::probe(&node, "livez", &query).await,
        (Method::GET, "/readyz") => observe::probe(&node, "readyz", &query).await,
        (Method::GET, "/version") => {
            let body =
                format!("{{\"etcdserver\":\"{ETCD_SERVER_VERSION}\",\"etcdcluster\":\"{ETCD_CLUSTER_VERSION}\"}}");
            answer(StatusCode::OK, "application/json", body)
        }
        (Method::POST, p) if p.starts_with("/v3/") => gateway(request, node).await,
        (Method::PUT, p) if crate::failpoints::ENABLED && p.starts_with(FAILPOINTS) => set_failpoint(request).await,
        (Method::GET, p) if p.starts_with("/v3/") => {
            answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "Method Not Allowed\n")
        }
        (Method::GET, _) => answer(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "404 page not found\n"),
        _ => answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "Method Not Allowed\n"),
    }
}

const FAILPOINTS: &str = "/debug/failpoints/";

/// `PUT /debug/failpoints/<point>` with the action as the body (`off`
/// clears it); served only by builds with failpoints.
async fn set_failpoint(request: Request<Incoming>) -> Response<Body> {
    let name = request.uri().path().trim_start_matches(FAILPOINTS).to_string();
    let body = match http_body_util::Limited::new(request.into_body(), 1024).collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_string(),
        Err(e) => return answer(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", format!("{e}\n")),
    };
    let action = match body.as_str() {
        "off" => None,
        text => match text.parse() {
            Ok(action) => Some(action),
            Err(e) => return answer(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", format!("{e}\n")),
        },
    };
    crate::failpoints::set(&name, action);
    answer(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "")
}

/// Reads the body (no larger than the gRPC limit) and hands it to the gateway.
async fn gateway(request: Request<Incoming>, node: Arc<Node>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let limit = node.limits.max_request_bytes + super::GRPC_OVERHEAD_BYTES;
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return crate::api::gateway::error(&EtcdError::RequestTooLarge.into());
        }
        Err(e) => return crate::api::gateway::error(&tonic::Status::invalid_argument(e.to_string())),
    };
    match crate::api::gateway::handle(&node, parts.uri.path(), &parts.headers, &body).await {
        Some(response) => response,
        None => answer(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "Not Found\n"),
    }
}
