//! Pod addresses, handed out from the node's pod CIDR and written down one
//! file per address (`<dir>/<ip>`, holding the pod's uid), so that they
//! survive an agent restart and two pods never get the same one. Creating
//! the file is the claim (`create_new`); removing it is the release. The
//! search starts after the last address handed out, so a released address
//! is not given to the next pod at once.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::cidr::Cidr;

const LAST: &str = "last";

pub struct Addresses {
    dir: PathBuf,
    cidr: Cidr,
}

impl Addresses {
    pub fn new(dir: PathBuf, cidr: Cidr) -> Addresses {
        Addresses { dir, cidr }
    }

    /// Every address held, with its pod's uid.
    pub fn held(&self) -> Vec<(Ipv4Addr, String)> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut held: Vec<(Ipv4Addr, String)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let ip: Ipv4Addr = entry.file_name().to_str()?.parse().ok()?;
                let uid = fs::read_to_string(entry.path()).ok()?;
                Some((ip, uid.trim().to_string()))
            })
            .collect();
        held.sort();
        held
    }

    /// The address pod `uid` holds, if any.
    pub fn of(&self, uid: &str) -> Option<Ipv4Addr> {
        self.held().into_iter().find(|(ip, holder)| holder == uid && self.cidr.contains(*ip)).map(|(ip, _)| ip)
    }

    /// The address of pod `uid`: the one it holds, or a free one.
    pub fn claim(&self, uid: &str) -> Result<Ipv4Addr, String> {
        if let Some(ip) = self.of(uid) {
            return Ok(ip);
        }
        fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let last: Option<Ipv4Addr> =
            fs::read_to_string(self.dir.join(LAST)).ok().and_then(|text| text.trim().parse().ok());
        let all: Vec<Ipv4Addr> = self.cidr.assignable().collect();
        let start = last.and_then(|last| all.iter().position(|ip| *ip == last)).map_or(0, |i| i + 1);
        for ip in all.iter().cycle().skip(start).take(all.len()) {
            let path = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(uid.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    let _ = fs::write(self.dir.join(LAST), ip.to_string());
                    return Ok(*ip);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot claim {ip}: {e}")),
            }
        }
        Err(format!(
            "no free address in the pod CIDR {}: all {} are held by other pods",
            self.cidr,
            self.cidr.capacity()
        ))
    }

    /// Releases whatever pod `uid` holds.
    pub fn release(&self, uid: &str) {
        for (ip, holder) in self.held() {
            if holder == uid {
                let _ = fs::remove_file(self.dir.join(ip.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_held_once_released_and_not_reused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addresses = Addresses::new(dir.path().join("a"), "10.0.0.0/29".parse().expect("cidr"));
        let a = addresses.claim("a").expect("a");
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(addresses.claim("a"), Ok(a), "a pod keeps its address");
        let b = addresses.claim("b").expect("b");
        assert_eq!(b, Ipv4Addr::new(10, 0, 0, 3));
        addresses.release("a");
        assert_eq!(addresses.of("a"), None);
        assert_eq!(addresses.claim("c"), Ok(Ipv4Addr::new(10, 0, 0, 4)), "not the one just released");
        // A new agent on the same directory sees the same holders.
        let again = Addresses::new(dir.path().join("a"), "10.0.0.0/29".parse().expect("cidr"));
        assert_eq!(again.of("b"), Some(b));
    }

    #[test]
    fn a_full_cidr_refuses_the_next_pod_and_takes_it_after_a_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addresses = Addresses::new(dir.path().to_path_buf(), "10.0.0.0/30".parse().expect("cidr"));
        assert_eq!(addresses.claim("a"), Ok(Ipv4Addr::new(10, 0, 0, 2)));
        let error = addresses.claim("b").expect_err("full");
        assert!(error.contains("no free address in the pod CIDR 10.0.0.0/30"), "{error}");
        assert_eq!(addresses.held().len(), 1, "a refused claim holds nothing");
        addresses.release("a");
        assert_eq!(addresses.claim("b"), Ok(Ipv4Addr::new(10, 0, 0, 2)));
    }
}
