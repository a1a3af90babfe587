//! The recorded client workload: registers (read, write, conditional delete
//! and compare-and-swap through Txn), and pairs of keys written together in one
//! Txn, whose reads must never see the two apart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use shoal_tests::linearizability::{Input, Operation, Output};

pub const KEYS: u64 = 5;
pub const PAIR: [&str; 2] = ["reg/pair/a", "reg/pair/b"];

/// A small deterministic generator: a run is reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub struct History {
    pub start: Instant,
    pub ops: Mutex<Vec<Operation>>,
    /// Pair reads that saw the two keys apart.
    pub torn: Mutex<Vec<String>>,
}

impl History {
    pub fn new() -> History {
        History { start: Instant::now(), ops: Mutex::new(Vec::new()), torn: Mutex::new(Vec::new()) }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records an operation; one without an answer completes "at infinity".
    pub fn record(&self, key: &str, input: Input, output: Output, call: u64) {
        let ret = if output == Output::Unknown { u64::MAX } else { self.now() };
        let op = Operation { key: key.to_string(), input, output, call, ret };
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn snapshot(&self) -> Vec<Operation> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub fn value_of(kv: Option<&etcd_client::KeyValue>) -> Option<u64> {
    kv.and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
}

pub fn register(key: u64) -> String {
    format!("reg/{key}")
}

/// One operation on a register; returns what it learned of its value.
async fn on_register(
    client: &mut Client,
    history: &History,
    choice: u64,
    key: u64,
    next: u64,
    seen: Option<u64>,
) -> Option<Option<u64>> {
    let name = register(key);
    let call = history.now();
    match choice {
        0..=3 => {
            let (output, learned) = match client.get(name.clone(), None).await {
                Ok(resp) => {
                    let value = value_of(resp.kvs().first());
                    (Output::Value(value), Some(value))
                }
                Err(_) => (Output::Unknown, None),
            };
            history.record(&name, Input::Read, output, call);
            learned
        }
        4..=6 => {
            let (output, learned) = match client.put(name.clone(), next.to_string(), None).await {
                Ok(_) => (Output::Done, Some(Some(next))),
                Err(_) => (Output::Unknown, None),
            };
            history.record(&name, Input::Write(next), output, call);
            learned
        }
        // Deletes only the value this client last saw, so that the event
        // log (with prev_kv) tells which delete took effect.
        7 if seen.is_some() => {
            let expect = seen.unwrap_or_default();
            let compare = Compare::value(name.clone(), CompareOp::Equal, expect.to_string());
            let txn = Txn::new().when([compare]).and_then([TxnOp::delete(name.clone(), None)]);
            let (output, learned) = match client.txn(txn).await {
                Ok(resp) => (Output::Swapped(resp.succeeded()), resp.succeeded().then_some(None)),
                Err(_) => (Output::Unknown, None),
            };
            history.record(&name, Input::DeleteIf { expect }, output, call);
            learned
        }
        _ => {
            let compare = match seen {
                Some(v) => Compare::value(name.clone(), CompareOp::Equal, v.to_string()),
                None => Compare::create_revision(name.clone(), CompareOp::Equal, 0),
            };
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(name.clone(), next.to_string(), None)]);
            let (output, learned) = match client.txn(txn).await {
                Ok(resp) => (Output::Swapped(resp.succeeded()), resp.succeeded().then_some(Some(next))),
                Err(_) => (Output::Unknown, None),
            };
            history.record(&name, Input::Cas { expect: seen, new: next }, output, call);
            learned
        }
    }
}

/// Writes both keys of the pair in one Txn, or reads both at one revision.
async fn on_pair(client: &mut Client, history: &History, write: bool, next: u64) {
    let call = history.now();
    if write {
        let puts: Vec<TxnOp> = PAIR.iter().map(|k| TxnOp::put(*k, next.to_string(), None)).collect();
        let output = match client.txn(Txn::new().and_then(puts)).await {
            Ok(_) => Output::Done,
            Err(_) => Output::Unknown,
        };
        for key in PAIR {
            history.record(key, Input::Write(next), output.clone(), call);
        }
        return;
    }
    let Ok(resp) = client.get("reg/pair/", Some(GetOptions::new().with_prefix())).await else { return };
    let values: Vec<Option<u64>> =
        PAIR.iter().map(|k| value_of(resp.kvs().iter().find(|kv| kv.key() == k.as_bytes()))).collect();
    if values[0] != values[1] {
        let revision = resp.header().map_or(0, |h| h.revision());
        history.torn.lock().unwrap_or_else(|p| p.into_inner()).push(format!("at revision {revision}: {values:?}"));
    }
    for (key, value) in PAIR.iter().zip(values) {
        history.record(key, Input::Read, Output::Value(value), call);
    }
}

/// Runs one client until `stop`; returns how many operations it invoked.
pub async fn run_client(
    id: u64,
    endpoints: Vec<String>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> u64 {
    let options =
        ConnectOptions::new().with_timeout(Duration::from_secs(2)).with_connect_timeout(Duration::from_secs(1));
    let Ok(mut client) = Client::connect(endpoints, Some(options)).await else { return 0 };
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut seen = vec![None; KEYS as usize];
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        count += 1;
        let next = (id + 1) * 1_000_000_000 + count;
        let choice = rng.below(12);
        if choice >= 10 {
            on_pair(&mut client, &history, choice == 10, next).await;
            continue;
        }
        let key = rng.below(KEYS);
        // The last value this client knows of, for its next compare-and-swap.
        if let Some(learned) = on_register(&mut client, &history, choice, key, next, seen[key as usize]).await {
            seen[key as usize] = learned;
        }
    }
    count
}
