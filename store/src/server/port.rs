//! Serving one listener: plain or TLS, gRPC and HTTP on the same port.
//!
//! Each connection is told apart once: over TLS by ALPN (`h2` or not), in
//! the clear by its first bytes (HTTP/2's preface or not). HTTP/2
//! connections go through the `authority` fix and are served by hyper; each
//! request goes to the gRPC routes when its content type is gRPC, else to the
//! HTTP routes (client ports only). HTTP/1.1 connections only carry HTTP.
//!
//! With `--client-cert-auth`, the verified client certificate's common name
//! rides along each request as a [`CertUser`] extension.
//!
//! At stop, the listener closes and open connections are asked to finish
//! (HTTP/2 GOAWAY) and given `DRAIN_TIMEOUT`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_service::Service;

use super::authority::ClientStream;
use super::coalesce::CoalescedWrites;
use super::node::Node;
use crate::tls::{common_name, Reloading};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish at stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The user a verified client certificate names (its subject CN).
#[derive(Clone, Debug)]
pub struct CertUser(pub String);

/// What a port serves.
pub struct Port<G> {
    pub grpc: G,
    /// The HTTP routes (metrics, health, gateway); None on peer ports.
    pub http: Option<Arc<Node>>,
    pub tls: Option<Arc<Reloading>>,
}

/// The gRPC side: tonic's routes, possibly wrapped in layers.
pub trait Grpc:
    Service<Request<Incoming>, Response = Response<tonic::body::Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<G> Grpc for G where
    G: Service<Request<Incoming>, Response = Response<tonic::body::Body>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Accepts connections on `listener` until `stop`, then drains them.
pub fn serve<G: Grpc>(listener: TcpListener, port: Arc<Port<G>>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let graceful = Arc::new(GracefulShutdown::new());
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream, port.clone(), graceful.clone()));
        }
        drop(listener);
        if let Some(graceful) = Arc::into_inner(graceful) {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
        }
    })
}

async fn connection<G: Grpc>(stream: TcpStream, port: Arc<Port<G>>, graceful: Arc<GracefulShutdown>) {
    match &port.tls {
        None => match super::http::is_http2(&stream).await {
            Some(true) => serve_h2(ClientStream::new(stream), port.clone(), None, &graceful).await,
            Some(false) => serve_h1(stream, port.clone(), &graceful).await,
            None => {}
        },
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let session = stream.get_ref().1;
            // As in etcd, a certificate names the user only under --client-cert-auth.
            let user = session
                .peer_certificates()
                .and_then(|c| c.first())
                .filter(|_| tls.client_cert_auth())
                .and_then(|c| common_name(c));
            if session.alpn_protocol() == Some(b"h2") {
                serve_h2(ClientStream::new(stream), port.clone(), user.map(CertUser), &graceful).await
            } else {
                serve_h1(stream, port.clone(), &graceful).await
            }
        }
    }
}

async fn serve_h2<G: Grpc, S>(io: S, port: Arc<Port<G>>, user: Option<CertUser>, graceful: &GracefulShutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let (port, user) = (port.clone(), user.clone());
        async move {
            if let Some(user) = user {
                request.extensions_mut().insert(user);
            }
            let is_grpc = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            match (&port.http, is_grpc) {
                (Some(node), false) => Ok::<_, Infallible>(http_answer(request, node.clone()).await),
                _ => {
                    let mut grpc = port.grpc.clone();
                    let response = match grpc.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    Ok(response.map(|b| b.map_err(BoxError::from).boxed_unsync()))
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // As tonic's server sets it up: no stream limit, and a timer for hyper's own deadlines.
    builder.timer(TokioTimer::new()).max_concurrent_streams(u32::MAX);
    let connection = builder.serve_connection(TokioIo::new(CoalescedWrites::new(io)), service);
    if let Err(e) = graceful.watch(connection).await {
        tracing::debug!(error = %e, "http/2 connection ended");
    }
}

async fn serve_h1<G: Grpc, S>(io: S, port: Arc<Port<G>>, graceful: &GracefulShutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(node) = port.http.clone() else { return };
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let node = node.clone();
        async move { Ok::<_, Infallible>(http_answer(request, node).await) }
    });
    // With a timer, hyper gives a client 30 s to send its request headers.
    let connection =
        hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(io), service);
    if let Err(e) = graceful.watch(connection).await {
        tracing::debug!(error = %e, "http/1 connection ended");
    }
}

async fn http_answer(request: Request<Incoming>, node: Arc<Node>) -> Response<Body> {
    super::http::route(request, node).await.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}
