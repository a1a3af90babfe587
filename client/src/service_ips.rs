//! Cluster IPs: each Service's virtual address, from the cluster's Service
//! range. The range is recorded at `/registry/ranges/serviceips` (written
//! by `shoal-controllers --service-cluster-ip-range`, as Kubernetes keeps
//! it); each address given out is a key `/registry/serviceips/<ip>` naming
//! its Service, written in the same transaction as the Service itself, so
//! that no address is ever given twice. What writes a Service through
//! [`create`] gets Kubernetes' refusals for an address outside the range or
//! already taken; a Service written any other way is given its address by
//! the controller ([`assign`]), which also gives back addresses whose
//! Service is gone ([`release_unused`]).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{
    request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use shoal_proto::objects::cidr::Cidr;
use shoal_proto::objects::validation::{FieldError, Invalid, Problem};
use shoal_proto::objects::Service;

use crate::api::{prefix_end, Claim, ClaimFor};
use crate::{Api, Error, ObjectKey, Result, Store};

pub const RANGE_KEY: &str = "/registry/ranges/serviceips";
pub const ALLOCATED_PREFIX: &str = "/registry/serviceips/";
pub const DEFAULT_RANGE: &str = "10.96.0.0/16";
/// How often a create or an assignment tries another free address when the
/// one it picked was taken meanwhile.
const ATTEMPTS: usize = 5;

#[derive(Serialize, Deserialize)]
struct Range {
    range: String,
}

/// Who holds an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

fn allocation_key(ip: Ipv4Addr) -> String {
    format!("{ALLOCATED_PREFIX}{ip}")
}

/// The cluster's Service range, if one is recorded.
pub async fn range(store: &Store) -> Result<Option<Cidr>> {
    let response = store.range(RangeRequest { key: RANGE_KEY.as_bytes().to_vec(), ..Default::default() }).await?;
    let Some(kv) = response.kvs.first() else { return Ok(None) };
    let malformed = |reason: String| Error::Malformed { key: RANGE_KEY.into(), reason };
    let recorded: Range = serde_json::from_slice(&kv.value).map_err(|e| malformed(e.to_string()))?;
    recorded.range.parse().map(Some).map_err(malformed)
}

/// Records `wanted` as the cluster's Service range unless one is recorded
/// already; returns the recorded one.
pub async fn record_range(store: &Store, wanted: Cidr) -> Result<Cidr> {
    let value = serde_json::to_vec(&Range { range: wanted.to_string() }).map_err(|e| Error::Connect(e.to_string()))?;
    let txn =
        TxnRequest { compare: vec![absent(RANGE_KEY)], success: vec![put(RANGE_KEY, value)], failure: Vec::new() };
    store.txn(txn).await?;
    Ok(range(store).await?.unwrap_or(wanted))
}

/// The recorded range, or the default one when none is (no controllers
/// have run yet).
async fn range_or_default(store: &Store) -> Result<Cidr> {
    match range(store).await? {
        Some(range) => Ok(range),
        None => DEFAULT_RANGE.parse().map_err(|e: String| Error::Connect(e)),
    }
}

/// Every address given out, with its holder.
pub async fn allocated(store: &Store) -> Result<Vec<(Ipv4Addr, Option<Holder>)>> {
    let request = RangeRequest {
        key: ALLOCATED_PREFIX.as_bytes().to_vec(),
        range_end: prefix_end(ALLOCATED_PREFIX.as_bytes()),
        ..Default::default()
    };
    Ok(store
        .range(request)
        .await?
        .kvs
        .iter()
        .filter_map(|kv| {
            let ip = std::str::from_utf8(&kv.key).ok()?.strip_prefix(ALLOCATED_PREFIX)?.parse().ok()?;
            Some((ip, serde_json::from_slice(&kv.value).ok()))
        })
        .collect())
}

/// Kubernetes' refusal of the address `ip` at `field`.
fn invalid(service: &Service, field: &str, ip: &str, detail: String) -> Error {
    Error::Invalid(Invalid {
        kind: "Service".into(),
        name: service.metadata.name.clone(),
        errors: vec![FieldError {
            field: field.into(),
            problem: Problem::Invalid { value: format!("[]string{{{ip:?}}}"), detail },
        }],
    })
}

/// The allocation key of `ip`, naming `service` as written.
fn claim_for(service: &Service, ip: Ipv4Addr) -> Result<Claim> {
    let holder = Holder {
        namespace: service.metadata.namespace_or_default().to_string(),
        name: service.metadata.name.clone(),
        uid: service.metadata.uid.clone(),
    };
    let value = serde_json::to_vec(&holder).map_err(|e| Error::Connect(e.to_string()))?;
    Ok(Claim { key: allocation_key(ip), value })
}

fn set_ip(service: &mut Service, ip: Ipv4Addr) {
    service.spec.cluster_ip = Some(ip.to_string());
    service.spec.cluster_ips = vec![ip.to_string()];
}

/// A free address of `range`, searched from a random place in it.
async fn pick(store: &Store, range: &Cidr) -> Result<Option<Ipv4Addr>> {
    let taken: HashSet<Ipv4Addr> = allocated(store).await?.into_iter().map(|(ip, _)| ip).collect();
    let all: Vec<Ipv4Addr> = range.assignable().collect();
    if all.is_empty() {
        return Ok(None);
    }
    let start = crate::api::new_uid().bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    Ok((0..all.len()).map(|i| all[(start + i) % all.len()]).find(|ip| !taken.contains(ip)))
}

/// How a Service is written with its address.
#[derive(Clone, Copy)]
enum Write<'a> {
    Create,
    /// Over `current`, by compare-and-swap.
    Update(&'a Service),
}

impl Write<'_> {
    async fn run(self, api: &Api<Service>, service: &Service, claim: ClaimFor<'_, Service>) -> Result<Service> {
        match self {
            Write::Create => api.create_claiming(service, Some(claim)).await,
            Write::Update(current) => api.update_claiming(service, current, Some(claim)).await,
        }
    }
}

/// Writes `service` with the address it asks for, or a free one, claiming
/// it in the same transaction; refuses as Kubernetes does an address
/// outside the range or already taken.
async fn allocate(api: &Api<Service>, service: &Service, write: Write<'_>) -> Result<Service> {
    let store = api.store();
    let range = range_or_default(store).await?;
    let mut service = service.clone();
    if let Some(ip) = service.spec.cluster_ip() {
        let shown = ip.to_string();
        if !range.is_assignable(ip) {
            let detail = format!(
                "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
            );
            return Err(invalid(&service, "spec.clusterIPs", &shown, detail));
        }
        set_ip(&mut service, ip);
        return match write.run(api, &service, &move |s: &Service| claim_for(s, ip)).await {
            Err(Error::Claimed { .. }) => {
                let detail = format!("failed to allocate IP {ip}: provided IP is already allocated");
                Err(invalid(&service, "spec.clusterIPs", &shown, detail))
            }
            other => other,
        };
    }
    for _ in 0..ATTEMPTS {
        let Some(ip) = pick(store, &range).await? else { break };
        set_ip(&mut service, ip);
        match write.run(api, &service, &move |s: &Service| claim_for(s, ip)).await {
            Err(Error::Claimed { .. }) => continue,
            other => return other,
        }
    }
    Err(invalid(&service, "spec.clusterIPs", "", format!("failed to allocate a serviceIP: range is full ({range})")))
}

/// Creates `service` with its cluster IP (the one it asks for, or a free
/// one), both in one transaction; a headless Service gets none.
pub async fn create(api: &Api<Service>, service: &Service) -> Result<Service> {
    if service.spec.is_headless() {
        return api.create(service).await;
    }
    allocate(api, service, Write::Create).await
}

/// Refuses an update that would change a Service's cluster IP once it has
/// one, as Kubernetes does.
pub fn check_unchanged(current: &Service, updated: &Service) -> Result<()> {
    match (&current.spec.cluster_ip, &updated.spec.cluster_ip) {
        (Some(before), after) if Some(before) != after.as_ref() => {
            let shown = after.clone().unwrap_or_default();
            Err(invalid(updated, "spec.clusterIPs[0]", &shown, "may not change once set".into()))
        }
        _ => Ok(()),
    }
}

/// Gives `service` (as the cache shows it) the address it asks for or a
/// free one, by compare-and-swap; returns None when it needs none.
pub async fn assign(api: &Api<Service>, service: &Service) -> Result<Option<Service>> {
    if service.spec.is_headless() || held_by(api.store(), service).await? {
        return Ok(None);
    }
    allocate(api, service, Write::Update(service)).await.map(Some)
}

/// Whether `service`'s address is allocated to it.
async fn held_by(store: &Store, service: &Service) -> Result<bool> {
    let Some(ip) = service.spec.cluster_ip() else { return Ok(false) };
    let response = store.range(RangeRequest { key: allocation_key(ip).into_bytes(), ..Default::default() }).await?;
    let holder: Option<Holder> = response.kvs.first().and_then(|kv| serde_json::from_slice(&kv.value).ok());
    Ok(holder.is_some_and(|h| h.uid == service.metadata.uid))
}

/// Gives back every address whose Service is gone, or is another Service
/// of that name (`services` are the Services as a cache shows them). Each
/// release compares the Service's key, so a Service created meanwhile
/// keeps its address. Returns how many were released.
pub async fn release_unused(store: &Store, services: &[std::sync::Arc<Service>]) -> Result<usize> {
    let mut released = 0;
    for (ip, holder) in allocated(store).await? {
        let Some(holder) = holder else { continue };
        let key = ObjectKey::new(&holder.namespace, &holder.name);
        let current = services.iter().find(|s| ObjectKey::of(s.as_ref()) == key);
        let still_held = |s: &Service| s.metadata.uid == holder.uid && s.spec.cluster_ip() == Some(ip);
        let guard = match current {
            Some(service) if still_held(service) => continue,
            // Another Service of that name: release only while it is as seen.
            Some(service) => match service.metadata.revision() {
                Some(revision) => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: key.store_key::<Service>().into_bytes(),
                    range_end: Vec::new(),
                    target_union: Some(TargetUnion::ModRevision(revision)),
                },
                None => continue,
            },
            None => absent(&key.store_key::<Service>()),
        };
        let txn = TxnRequest {
            compare: vec![guard],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: allocation_key(ip).into_bytes(),
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        if store.txn(txn).await?.succeeded {
            released += 1;
        }
    }
    Ok(released)
}

fn absent(key: &str) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(0)),
    }
}

fn put(key: &str, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            ..Default::default()
        })),
    }
}
