//! Key verbs: put, get, del and compaction, printed as etcdctl prints them.

use clap::Args;
use shoal_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};

use shoal_client::api::prefix_end;

use crate::connect::{status_error, Endpoints};

#[derive(Args, Debug)]
pub struct PutArgs {
    key: String,
    value: String,
    /// Attach the key to this lease (hex id).
    #[arg(long)]
    lease: Option<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    key: String,
    /// End of the range (exclusive).
    range_end: Option<String>,
    /// Every key with `key` as a prefix.
    #[arg(long)]
    prefix: bool,
    /// Read at this revision.
    #[arg(long, default_value_t = 0)]
    rev: i64,
    #[arg(long)]
    keys_only: bool,
    #[arg(long, default_value_t = 0)]
    limit: i64,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    key: String,
    range_end: Option<String>,
    #[arg(long)]
    prefix: bool,
}

#[derive(Args, Debug)]
pub struct CompactionArgs {
    revision: i64,
    /// Wait until the space is reclaimed on the member that answers.
    #[arg(long)]
    physical: bool,
}

fn range_end(key: &str, end: Option<&String>, prefix: bool) -> Vec<u8> {
    match (end, prefix) {
        (_, true) => prefix_end(key.as_bytes()),
        (Some(end), false) => end.as_bytes().to_vec(),
        (None, false) => Vec::new(),
    }
}

pub async fn put(endpoints: &Endpoints, args: PutArgs) -> anyhow::Result<()> {
    let lease = match &args.lease {
        Some(hex) => {
            i64::from_str_radix(hex, 16).map_err(|_| anyhow::anyhow!("bad lease ID ({hex}), expecting ID in Hex"))?
        }
        None => 0,
    };
    let request =
        PutRequest { key: args.key.into_bytes(), value: args.value.into_bytes(), lease, ..Default::default() };
    endpoints.kv().await?.put(request).await.map_err(status_error)?;
    println!("OK");
    Ok(())
}

pub async fn get(endpoints: &Endpoints, args: GetArgs) -> anyhow::Result<()> {
    let request = RangeRequest {
        range_end: range_end(&args.key, args.range_end.as_ref(), args.prefix),
        key: args.key.into_bytes(),
        revision: args.rev,
        keys_only: args.keys_only,
        limit: args.limit,
        ..Default::default()
    };
    let response = endpoints.kv().await?.range(request).await.map_err(status_error)?.into_inner();
    for kv in response.kvs {
        println!("{}", String::from_utf8_lossy(&kv.key));
        if !args.keys_only {
            println!("{}", String::from_utf8_lossy(&kv.value));
        }
    }
    Ok(())
}

pub async fn del(endpoints: &Endpoints, args: DelArgs) -> anyhow::Result<()> {
    let request = DeleteRangeRequest {
        range_end: range_end(&args.key, args.range_end.as_ref(), args.prefix),
        key: args.key.into_bytes(),
        ..Default::default()
    };
    let response = endpoints.kv().await?.delete_range(request).await.map_err(status_error)?.into_inner();
    println!("{}", response.deleted);
    Ok(())
}

pub async fn compaction(endpoints: &Endpoints, args: CompactionArgs) -> anyhow::Result<()> {
    let request = CompactionRequest { revision: args.revision, physical: args.physical };
    endpoints.kv().await?.compact(request).await.map_err(status_error)?;
    println!("compacted revision {}", args.revision);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
