//! The control plane's own metrics (reconciles, queue depth, container
//! starts and restarts), in Prometheus' text format on `--metrics-addr`:
//! `GET /metrics` and `GET /healthz`. One registry per process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every family: name, type, help.
const FAMILIES: [(&str, &str, &str); 6] = [
    ("shoal_controller_reconcile_total", "counter", "Reconciles by controller and result (success, error, requeue)."),
    ("shoal_controller_reconcile_duration_seconds", "summary", "Time spent in reconciles, by controller."),
    ("shoal_controller_queue_depth", "gauge", "Keys waiting in a controller's work queue."),
    ("shoal_agent_container_starts_total", "counter", "Containers the agent started, first runs and restarts."),
    ("shoal_agent_container_restarts_total", "counter", "Containers the agent restarted after they exited."),
    ("shoal_agent_pods", "gauge", "Pods the agent runs."),
];

/// Samples by family, then by label set (`a="b",c="d"`).
type Samples = BTreeMap<&'static str, BTreeMap<String, f64>>;

static SAMPLES: LazyLock<Mutex<Samples>> = LazyLock::new(Default::default);

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

fn update(name: &'static str, suffix: &'static str, pairs: &[(&str, &str)], f: impl FnOnce(&mut f64)) {
    let mut samples = SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
    let key = format!("{suffix}\u{0}{}", labels(pairs));
    f(samples.entry(name).or_default().entry(key).or_default());
}

pub fn inc(name: &'static str, pairs: &[(&str, &str)]) {
    update(name, "", pairs, |v| *v += 1.0);
}

pub fn set(name: &'static str, pairs: &[(&str, &str)], value: f64) {
    update(name, "", pairs, |v| *v = value);
}

/// Adds one observation to a summary (its `_sum` and `_count`).
pub fn observe(name: &'static str, pairs: &[(&str, &str)], took: Duration) {
    update(name, "_sum", pairs, |v| *v += took.as_secs_f64());
    update(name, "_count", pairs, |v| *v += 1.0);
}

/// Every family with samples, in Prometheus' text format.
pub fn render() -> String {
    let samples = SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    for (name, kind, help) in FAMILIES {
        let Some(family) = samples.get(name) else { continue };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (key, value) in family {
            let (suffix, labels) = key.split_once('\u{0}').unwrap_or(("", key));
            let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let _ = writeln!(out, "{name}{suffix}{braces} {value}");
        }
    }
    out
}

/// Serves `/metrics` and `/healthz` on `addr`, one request per connection.
pub async fn serve(addr: SocketAddr) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
                        Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buffer[..n]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let target = text.split_whitespace().nth(1).unwrap_or_default();
                let (status, body) = match target {
                    "/metrics" => ("200 OK", render()),
                    "/healthz" => ("200 OK", "ok".to_string()),
                    _ => ("404 Not Found", "404 page not found\n".to_string()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_render_with_their_family_and_labels() {
        inc("shoal_controller_reconcile_total", &[("controller", "test"), ("result", "success")]);
        observe("shoal_controller_reconcile_duration_seconds", &[("controller", "test")], Duration::from_millis(5));
        let text = render();
        assert!(text.contains("# TYPE shoal_controller_reconcile_total counter\n"), "{text}");
        assert!(text.contains("shoal_controller_reconcile_total{controller=\"test\",result=\"success\"} "), "{text}");
        assert!(text.contains("shoal_controller_reconcile_duration_seconds_count{controller=\"test\"} "), "{text}");
    }
}
