//! Passwords: bcrypt hashes (etcd's format, so that restored etcd data and
//! Shoal agree), checked off the reactor, and a brake on guessing.
//!
//! Every failed login for a user makes the next check for that user wait
//! longer (doubling from 100 ms to 5 s); checks for one user run one at a
//! time, so parallel guesses queue behind the brake. A success releases it.
//! Unknown user names share one brake, so random names buy nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::EtcdError;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Hashes `password` with `cost` (etcd's --bcrypt-cost).
pub async fn hash(password: String, cost: u32) -> Result<String, EtcdError> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| EtcdError::Internal(format!("etcdserver: password hashing failed: {e}")))?
        .map_err(|e| EtcdError::Internal(format!("etcdserver: password hashing failed: {e}")))
}

async fn matches(password: String, hashed: String) -> bool {
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hashed).unwrap_or(false)).await.unwrap_or(false)
}

#[derive(Default)]
struct Brake {
    failures: u32,
    not_before: Option<Instant>,
}

#[derive(Default)]
pub struct Guard {
    brakes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Brake>>>>,
}

impl Guard {
    fn brake(&self, key: &str) -> Arc<tokio::sync::Mutex<Brake>> {
        let mut brakes = self.brakes.lock().unwrap_or_else(|p| p.into_inner());
        brakes.entry(key.to_string()).or_default().clone()
    }

    /// Checks `password` against `hashed` (None: no such user, or a user
    /// without a password), behind the user's brake.
    pub async fn check(&self, user: &str, password: String, hashed: Option<String>) -> bool {
        let key = if hashed.is_some() { user } else { "" };
        let brake = self.brake(key);
        let mut brake = brake.lock().await;
        if let Some(at) = brake.not_before {
            tokio::time::sleep_until(at.into()).await;
        }
        let ok = match hashed {
            Some(hashed) => matches(password, hashed).await,
            None => false,
        };
        if ok {
            *brake = Brake::default();
        } else {
            let delay = FIRST_DELAY.saturating_mul(1 << brake.failures.min(16)).min(MAX_DELAY);
            brake.failures += 1;
            brake.not_before = Some(Instant::now() + delay);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrong_guesses_are_slowed_down_and_a_success_resets_the_brake() {
        let guard = Guard::default();
        let hashed = hash("secret".into(), 4).await.expect("hash");
        assert!(hashed.starts_with("$2"), "bcrypt format: {hashed}");
        let start = Instant::now();
        for _ in 0..4 {
            assert!(!guard.check("alice", "guess".into(), Some(hashed.clone())).await);
        }
        // Waits of 100, 200 and 400 ms before the 2nd, 3rd and 4th guesses.
        assert!(start.elapsed() >= Duration::from_millis(700), "{:?}", start.elapsed());
        assert!(guard.check("alice", "secret".into(), Some(hashed.clone())).await);
        assert_eq!(guard.brake("alice").lock().await.failures, 0, "a success releases the brake");
        assert!(!guard.check("nobody", "x".into(), None).await);
    }
}
