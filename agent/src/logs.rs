//! Container logs over HTTP: `GET /logs/<pod uid>/<container>` answers with
//! the current instance's output, `?previous=true` with the instance before
//! it, and `?follow=true` keeps streaming what the container writes until
//! the instance ends or the client goes away. The agent records the
//! address on its Node, for `shoalctl logs` and `shoalctl exec` (`POST
//! /exec/<grant id>`, answered by [`crate::exec`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::exec::Exec;
use crate::runtime::linux::supervise::rotated;
use crate::runtime::linux::LinuxRuntime;

pub use shoal_proto::objects::node::LOGS_ADDRESS_ANNOTATION as ADDRESS_ANNOTATION;

/// Serves logs from `data_dir`, and execs, until the listener fails.
pub async fn serve(listener: TcpListener, data_dir: PathBuf, exec: Exec) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (data_dir, exec) = (data_dir.clone(), exec.clone());
        tokio::spawn(async move {
            let _ = answer(stream, &data_dir, &exec).await;
        });
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    pod_uid: String,
    container: String,
    previous: bool,
    follow: bool,
}

fn safe(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains('/') && !part.contains('\0')
}

fn parse(line: &str) -> Option<Request> {
    let mut words = line.split_whitespace();
    if words.next()? != "GET" {
        return None;
    }
    let target = words.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut parts = path.strip_prefix("/logs/")?.split('/');
    let (pod_uid, container) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || !safe(pod_uid) || !safe(container) {
        return None;
    }
    let flag = |name: &str| query.split('&').any(|kv| kv == format!("{name}=true") || kv == format!("{name}=1"));
    Some(Request {
        pod_uid: pod_uid.into(),
        container: container.into(),
        previous: flag("previous"),
        follow: flag("follow"),
    })
}

/// The restart numbers that have logs, oldest first.
fn instances(dir: &Path) -> Vec<i32> {
    let mut found: Vec<i32> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse().ok()).collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found
}

pub(crate) async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

/// The bearer token of an `Authorization` header line.
fn bearer(header: &str) -> Option<&str> {
    let (name, value) = header.split_once(':')?;
    let token = value.trim().strip_prefix("Bearer ")?;
    name.trim().eq_ignore_ascii_case("authorization").then_some(token.trim())
}

/// How long a caller has to send its request head, and how long it may be.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const HEAD_LIMIT: u64 = 16 * 1024;

/// The request line, and the bearer token if any. Read a byte at a time:
/// an exec's frames follow the head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut reader = BufReader::with_capacity(1, stream.take(HEAD_LIMIT));
    let (mut line, mut secret, mut header) = (String::new(), String::new(), String::new());
    reader.read_line(&mut line).await?;
    loop {
        header.clear();
        if reader.read_line(&mut header).await? <= 2 {
            break;
        }
        if let Some(token) = bearer(&header) {
            secret = token.to_string();
        }
    }
    if !line.ends_with('\n') || !header.ends_with('\n') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request head cut short"));
    }
    Ok((line, secret))
}

async fn answer(mut stream: TcpStream, data_dir: &Path, exec: &Exec) -> std::io::Result<()> {
    let Ok(Ok((line, secret))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        return respond(&mut stream, "400 Bad Request", "no request head in time, or one too long\n").await;
    };
    if let Some(id) = line.strip_prefix("POST /exec/").and_then(|rest| rest.split_whitespace().next()) {
        let id = id.to_string();
        return exec.answer(stream, &id, &secret).await;
    }
    let Some(request) = parse(&line) else {
        return respond(&mut stream, "400 Bad Request", "expected GET /logs/<pod uid>/<container>\n").await;
    };
    let dir = LinuxRuntime::logs_dir(data_dir, &request.pod_uid, &request.container);
    let found = instances(&dir);
    let wanted = if request.previous { found.len().checked_sub(2) } else { found.len().checked_sub(1) };
    let Some(instance) = wanted.map(|i| found[i]) else {
        let message = if request.previous {
            format!("previous terminated container {:?} not found\n", request.container)
        } else {
            format!("container {:?} has no logs here\n", request.container)
        };
        return respond(&mut stream, "404 Not Found", &message).await;
    };
    respond(&mut stream, "200 OK", "").await?;
    let path = dir.join(format!("{instance}.log"));
    if let Ok(older) = tokio::fs::read(rotated(&path)).await {
        stream.write_all(&older).await?;
    }
    let id = LinuxRuntime::container_id(&request.pod_uid, &request.container, instance);
    let record = LinuxRuntime::record_dir(data_dir, &id);
    let mut offset = 0u64;
    loop {
        // Its supervisor writes the exit down after the last of its output.
        let finished = !record.is_dir() || record.join("exit.json").exists();
        if let Ok(mut file) = tokio::fs::File::open(&path).await {
            let len = file.metadata().await.map_or(0, |m| m.len());
            if len < offset {
                // Rotated: the current part starts afresh.
                offset = 0;
            }
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk).await?;
            offset += chunk.len() as u64;
            stream.write_all(&chunk).await?;
        }
        let replaced = instances(&dir).last().is_none_or(|latest| *latest != instance);
        if !request.follow || request.previous || replaced || finished {
            return stream.shutdown().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_and_paths_may_not_escape() {
        assert_eq!(
            parse("GET /logs/u1/main?follow=true&previous=1 HTTP/1.1"),
            Some(Request { pod_uid: "u1".into(), container: "main".into(), previous: true, follow: true })
        );
        assert_eq!(parse("GET /logs/u1/main HTTP/1.1").map(|r| (r.previous, r.follow)), Some((false, false)));
        assert_eq!(bearer("Authorization: Bearer abc\r\n"), Some("abc"));
        assert_eq!(bearer("authorization:Bearer  x \r\n"), Some("x"));
        assert_eq!(bearer("Host: Bearer abc\r\n"), None);
        for bad in
            ["GET /logs/../etc HTTP/1.1", "GET /logs/u1/.. HTTP/1.1", "POST /logs/u1/c HTTP/1.1", "GET / HTTP/1.1"]
        {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
