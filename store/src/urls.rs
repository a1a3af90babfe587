//! The URL lists etcd's flags take (`http://host:port,...`) and the
//! `--initial-cluster` map.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{flag}: {url:?} is not a URL of the form http://host:port or https://host:port")]
    Malformed { flag: &'static str, url: String },
    #[error("{flag}: {url:?} uses https, but TLS is not supported there")]
    TlsUnsupported { flag: &'static str, url: String },
    #[error("{flag}: cannot resolve {url:?}")]
    Unresolvable { flag: &'static str, url: String },
    #[error("--initial-cluster: {entry:?} is not of the form name=url")]
    ClusterEntry { entry: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// `https://`: served or reached over TLS.
    pub tls: bool,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Url {
    pub fn parse(flag: &'static str, text: &str) -> Result<Url, UrlError> {
        let malformed = || UrlError::Malformed { flag, url: text.to_string() };
        let (tls, rest) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(malformed()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(malformed)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(malformed());
        }
        let port = port.parse().map_err(|_| malformed())?;
        Ok(Url { host: host.to_string(), port, tls })
    }

    /// The address to bind or connect to; `localhost` is loopback.
    pub fn socket_addr(&self, flag: &'static str) -> Result<SocketAddr, UrlError> {
        let host = if self.host == "localhost" { "127.0.0.1" } else { &self.host };
        (host, self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| UrlError::Unresolvable { flag, url: self.to_string() })
    }
}

/// Parses a comma-separated URL list.
pub fn parse_list(flag: &'static str, text: &str) -> Result<Vec<Url>, UrlError> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Url::parse(flag, s)).collect()
}

/// Parses `name=url,name=url,...`; a name may repeat to give several URLs.
/// Keeps the order of first appearance.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<(String, Vec<Url>)>, UrlError> {
    let mut members: Vec<(String, Vec<Url>)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = entry.split_once('=').ok_or_else(|| UrlError::ClusterEntry { entry: entry.to_string() })?;
        let url = Url::parse("--initial-cluster", url)?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_string(), vec![url])),
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_clusters() {
        let urls = parse_list("--x", "http://127.0.0.1:2379, http://localhost:22379").expect("valid");
        assert_eq!(urls[1], Url { host: "localhost".into(), port: 22379, tls: false });
        assert_eq!(urls[1].socket_addr("--x").expect("resolves").port(), 22379);
        assert!(Url::parse("--x", "127.0.0.1:2379").is_err());
        assert!(Url::parse("--x", "http://127.0.0.1").is_err());
        assert!(Url::parse("--x", "https://a:1").is_ok_and(|u| u.tls && u.to_string() == "https://a:1"));
        let cluster = parse_initial_cluster("a=http://h:1,b=http://h:2,a=http://h:3").expect("valid");
        assert_eq!(cluster.len(), 2);
        assert_eq!(cluster[0].1.len(), 2);
        assert!(parse_initial_cluster("nourl").is_err());
    }
}
