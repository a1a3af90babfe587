//! Counts gRPC requests for `grpc_server_started_total` and
//! `grpc_server_handled_total`, as go-grpc-prometheus does for etcd: a tower
//! layer around every client service.
//!
//! The code is read from the response headers: an error is answered with
//! its status there ("trailers-only"); an answer without one is counted as
//! OK when its headers leave (for streams, when the stream starts).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::metrics;

#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // A Uri clone shares its bytes: nothing is copied per request.
        let uri = metrics::grpc_method(request.uri().path()).is_some().then(|| request.uri().clone());
        if let Some(uri) = &uri {
            metrics::grpc_started(uri.path());
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            if let (Some(uri), Ok(response)) = (&uri, &response) {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                metrics::grpc_handled(uri.path(), code);
            }
            response
        })
    }
}
