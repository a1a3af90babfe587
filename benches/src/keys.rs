//! Keys and values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// xorshift64*: fast, good enough to spread keys, no dependency.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Keys of a fixed size from a key space: zero-padded numbers.
#[derive(Clone)]
pub struct KeyGen {
    size: usize,
    space: u64,
    sequential: Option<Arc<AtomicU64>>,
    rng: Rng,
}

impl KeyGen {
    pub fn new(size: usize, space: u64, sequential: Option<Arc<AtomicU64>>, seed: u64) -> KeyGen {
        KeyGen { size: size.max(1), space: space.max(1), sequential, rng: Rng::new(seed) }
    }

    pub fn next_key(&mut self) -> Vec<u8> {
        let n = match &self.sequential {
            Some(counter) => counter.fetch_add(1, Ordering::Relaxed) % self.space,
            None => self.rng.next_u64() % self.space,
        };
        key(n, self.size)
    }
}

pub fn key(n: u64, size: usize) -> Vec<u8> {
    let digits = n.to_string();
    let mut out = vec![b'0'; size.saturating_sub(digits.len())];
    out.extend_from_slice(digits.as_bytes());
    out
}

/// Incompressible bytes, so that compression does not flatter anyone.
pub fn value(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..size).map(|_| (rng.next_u64() >> 24) as u8).collect()
}
