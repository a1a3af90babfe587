//! Any file handed to `snapshot status` or `snapshot restore`: refused or
//! read, never a panic, and a restore of a bad file writes nothing. The
//! input gets a valid SHA-256 trailer, so that the parser behind the
//! checksum sees corrupt content too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use shoal_store::backup;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let file = dir.path().join("fuzz.db");
    let mut content = data.to_vec();
    content.extend_from_slice(&Sha256::digest(data));
    if std::fs::write(&file, &content).is_err() {
        return;
    }
    let _ = backup::status(&file);
    let options = backup::RestoreOptions {
        name: "f".into(),
        initial_cluster: "f=http://127.0.0.1:1".into(),
        initial_advertise_peer_urls: "http://127.0.0.1:1".into(),
        initial_cluster_token: "fuzz".into(),
        data_dir: dir.path().join("f.etcd"),
    };
    if backup::restore(&file, &options, |_, _, _| {}).is_err() {
        assert!(!dir.path().join("f.etcd").exists(), "a refused restore wrote a data dir");
    }
});
