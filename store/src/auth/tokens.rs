//! Simple tokens, etcd's default: an opaque random string handed out at
//! login, valid on every member (the login goes through Raft, so every
//! member records it), and forgotten after `--auth-token-ttl` of disuse,
//! when its user changes password or is deleted, or when auth is disabled.
//! Like etcd's, they live in memory only: a restarted member forgets them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Random letters in a token; etcd uses 16.
const RANDOM_LEN: usize = 16;
/// Sweep expired tokens once the table has grown by this many.
const SWEEP_EVERY: usize = 1024;

pub struct Tokens {
    table: Mutex<Table>,
}

struct Table {
    ttl: Duration,
    by_token: HashMap<String, Entry>,
    size_at_sweep: usize,
}

struct Entry {
    user: String,
    expires: Instant,
}

impl Tokens {
    pub fn new(ttl: Duration) -> Tokens {
        Tokens { table: Mutex::new(Table { ttl, by_token: HashMap::new(), size_at_sweep: 0 }) }
    }

    pub fn set_ttl(&self, ttl: Duration) {
        self.table().ttl = ttl;
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh token: 16 random letters, a dot and `serial` (the Raft index
    /// of the login), etcd's shape.
    pub fn generate(serial: u64) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut random = [0u8; RANDOM_LEN];
        if getrandom::fill(&mut random).is_err() {
            // The kernel's generator does not fail on Linux; never issue a guessable token.
            panic!("no randomness available for auth tokens");
        }
        let letters: String = random.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect();
        format!("{letters}.{serial}")
    }

    pub fn assign(&self, token: &str, user: &str) {
        let mut table = self.table();
        let now = Instant::now();
        if table.by_token.len() >= table.size_at_sweep + SWEEP_EVERY {
            table.by_token.retain(|_, e| e.expires > now);
            table.size_at_sweep = table.by_token.len();
        }
        let expires = now + table.ttl;
        table.by_token.insert(token.to_string(), Entry { user: user.to_string(), expires });
    }

    /// The token's user; each use extends its life, as in etcd.
    pub fn user(&self, token: &str) -> Option<String> {
        let mut table = self.table();
        let now = Instant::now();
        let ttl = table.ttl;
        let entry = table.by_token.get_mut(token)?;
        if entry.expires <= now {
            table.by_token.remove(token);
            return None;
        }
        entry.expires = now + ttl;
        Some(entry.user.clone())
    }

    pub fn forget_user(&self, user: &str) {
        self.table().by_token.retain(|_, e| e.user != user);
    }

    pub fn forget_all(&self) {
        self.table().by_token.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_after_disuse_and_go_with_their_user() {
        let tokens = Tokens::new(Duration::from_millis(50));
        let (a, b) = (Tokens::generate(7), Tokens::generate(7));
        assert_ne!(a, b);
        assert!(a.ends_with(".7") && a.len() == RANDOM_LEN + 2);
        tokens.assign(&a, "alice");
        tokens.assign(&b, "bob");
        assert_eq!(tokens.user(&a).as_deref(), Some("alice"));
        tokens.forget_user("alice");
        assert_eq!(tokens.user(&a), None);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(tokens.user(&b), None, "expired");
    }
}
