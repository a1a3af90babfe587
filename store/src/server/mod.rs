//! A running member: storage, Raft, and the client and peer gRPC servers,
//! started by [`run`] and stopped when its shutdown future completes.
//!
//! Shutdown order: stop accepting requests, let in-flight ones finish (for a
//! bounded time), stop Raft, stop the compactor, then close RocksDB.

mod authority;
mod batcher;
mod bootstrap;
mod coalesce;
mod disk_space;
mod forward_stream;
mod grpc_metrics;
pub mod http;
mod lease_ops;
mod listeners;
mod local_answers;
mod membership;
mod node;
mod observe;
mod peer_service;
mod port;
mod propose;
pub mod quota;
mod read_batch;
mod read_index;
mod transfer;
mod upkeep;

pub use node::{Limits, Node};
pub use port::CertUser;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use shoal_proto::peerpb::{internal_request, peer_server::PeerServer, InternalRequest, MemberAttributes};
use shoal_proto::v3electionpb::election_server::ElectionServer;
use shoal_proto::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api;
use crate::config::{ClusterState, MemberConfig};
use crate::lease::id::LeaseIds;
use crate::lease::Lessor;
use crate::raft::log_store::LogStore;
use crate::raft::network::{PeerClients, PeerNetwork};
use crate::raft::state_machine::StateMachine;
use crate::raft::{MemberNode, Raft};
use crate::storage::{self, StorageError};
use crate::tls::{self, TlsFiles};
use crate::watch::WatchHub;

/// gRPC framing allowance on top of --max-request-bytes, as etcd allows.
pub(crate) const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How long in-flight requests may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("--auth-token jwt: {0}")]
    Jwt(String),
}

/// openraft's settings for etcd's flags.
///
/// A follower of openraft 0.10 that knows a leader starts an election after
/// `election_timeout_max` (the leader lease, during which it also refuses to
/// vote for others) plus its own timeout, drawn from
/// `[election_timeout_min, election_timeout_max)` for each election. With
/// 0.6E and 0.4E, a follower waits between E and 1.2E of leader silence, so
/// `--election-timeout` keeps etcd's meaning: the least silence that
/// triggers an election.
fn raft_config(config: &MemberConfig) -> Result<openraft::Config, ServerError> {
    let election = config.election_timeout.as_millis() as u64;
    openraft::Config {
        cluster_name: config.token.clone(),
        heartbeat_interval: config.heartbeat.as_millis() as u64,
        election_timeout_min: election * 2 / 5,
        election_timeout_max: election * 3 / 5,
        install_snapshot_timeout: 30_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
        // A restarted leader campaigns for a new term, as etcd's members
        // restart as followers. Resuming in its old term is unsafe here: it
        // may have sent followers entries it never wrote itself (lost with
        // the process), and leading on in that term could put another entry
        // at the same term and index; nor is its commit index or state
        // machine durable enough to be trusted without an election.
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| ServerError::Raft(e.to_string()))
}

async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ServerError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr: *addr, source })?);
    }
    Ok(listeners)
}

/// Runs a member until `shutdown` completes.
pub async fn run(config: MemberConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let member_dir = config.data_dir.join("member");
    let db_dir = member_dir.join("db");
    std::fs::create_dir_all(&db_dir).map_err(StorageError::io(&db_dir))?;
    let db = storage::open(&db_dir)?;
    let peers = Arc::new(PeerClients::new(dialer(config.peer_tls.as_ref(), &config.peer_urls)?));
    let identity = bootstrap::identity(&db, &config, &peers).await?;
    tracing::info!(
        name = %config.name,
        member_id = format_args!("{:x}", identity.member_id),
        cluster_id = format_args!("{:x}", identity.cluster_id),
        version = env!("CARGO_PKG_VERSION"),
        "starting member"
    );

    let snap_dir = member_dir.join("snap");
    let (mut state_machine, kv) = StateMachine::open(db.clone(), snap_dir.clone())?;
    let jwt =
        config.auth_jwt.as_deref().map(crate::auth::jwt::Jwt::from_options).transpose().map_err(ServerError::Jwt)?;
    kv.auth().configure(config.auth_token_ttl, config.bcrypt_cost, jwt);
    let lessor = Arc::new(Lessor::default());
    lessor.load(&db)?;
    let watch_hub = WatchHub::new(kv.clone());
    let local_answers = Arc::new(local_answers::LocalAnswers::new(identity.member_id));
    state_machine.set_listener(Arc::new(listeners::StateListeners {
        hub: watch_hub.clone(),
        lessor: lessor.clone(),
        db: db.clone(),
        answers: local_answers.clone(),
    }));
    let raft = Raft::new(
        identity.member_id,
        Arc::new(raft_config(&config)?),
        PeerNetwork::new(peers.clone()),
        LogStore::open(db.clone(), &member_dir.join("wal"))?,
        state_machine,
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;

    let node = Arc::new(Node {
        id: identity.member_id,
        cluster_id: identity.cluster_id,
        name: config.name.clone(),
        client_urls: config.advertise_client_urls.clone(),
        raft: raft.clone(),
        kv: kv.clone(),
        db: db.clone(),
        peers,
        limits: Limits { max_request_bytes: config.max_request_bytes, max_txn_ops: config.max_txn_ops },
        request_timeout: config.request_timeout(),
        election_timeout: config.election_timeout,
        watch_hub: watch_hub.clone(),
        lessor,
        lease_ids: LeaseIds::new(identity.member_id),
        min_lease_ttl: config.min_lease_ttl(),
        read_batch: Default::default(),
        peer_read_batch: Default::default(),
        batcher: batcher::Batcher::start(raft.clone()),
        forwarder: forward_stream::Forwarder::default(),
        local_answers,
        membership_change: tokio::sync::Mutex::new(()),
        quota_bytes: config.quota_bytes,
        backend_size: Default::default(),
        client_dialer: dialer(config.client_tls.as_ref(), &config.advertise_client_urls)?,
    });

    let peer_listeners = bind_all(&config.listen_peer).await?;
    let client_listeners = bind_all(&config.listen_client).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers: Vec<JoinHandle<()>> = Vec::new();
    let peer_port = Arc::new(port::Port {
        grpc: peer_routes(node.clone(), snap_dir.clone()),
        http: None,
        tls: reloading(config.peer_tls.as_ref(), &config.peer_urls)?,
    });
    for (listener, tls) in peer_listeners.into_iter().zip(&config.listen_peer_tls) {
        let port = if *tls { peer_port.clone() } else { Arc::new(port::Port { tls: None, ..clone_port(&peer_port) }) };
        servers.push(port::serve(listener, port, stop_rx.clone()));
    }
    let client_port = Arc::new(port::Port {
        grpc: client_routes(node.clone(), config.max_request_bytes),
        http: Some(node.clone()),
        tls: reloading(config.client_tls.as_ref(), &config.advertise_client_urls)?,
    });
    for (listener, tls) in client_listeners.into_iter().zip(&config.listen_client_tls) {
        let port =
            if *tls { client_port.clone() } else { Arc::new(port::Port { tls: None, ..clone_port(&client_port) }) };
        servers.push(port::serve(listener, port, stop_rx.clone()));
    }
    servers.push(observe::count_leader_changes(node.clone(), stop_rx.clone()));
    for (listener, tls) in bind_all(&config.listen_metrics).await?.into_iter().zip(&config.listen_metrics_tls) {
        // https metrics listeners share the client port's certificate and routes.
        servers.push(match tls {
            true => port::serve(listener, client_port.clone(), stop_rx.clone()),
            false => observe::serve(node.clone(), listener, stop_rx.clone()),
        });
    }

    // A member of a new cluster writes the initial membership until Raft has
    // state; doing so on every member is safe (they write the same one).
    let initialized = raft.is_initialized().await.map_err(|e| ServerError::Raft(e.to_string()))?;
    if config.cluster_state == ClusterState::New && !initialized {
        let members: BTreeMap<u64, MemberNode> = config
            .initial_cluster
            .iter()
            .map(|m| (m.id, MemberNode { name: m.name.clone(), peer_urls: m.peer_urls.clone() }))
            .collect();
        if let Err(e) = raft.initialize(members).await {
            // Another member may have initialized first; Raft sorts it out.
            tracing::info!(error = %e, "initial membership not written by this member");
        }
    }
    let publisher = tokio::spawn(publish(node.clone(), stop_rx.clone()));
    let lease_keeper = tokio::spawn(lease_ops::keep_leases(node.clone(), stop_rx.clone()));
    let progress = tokio::spawn(tick_progress(watch_hub.clone(), config.watch_progress_interval, stop_rx.clone()));
    let compactor = tokio::spawn(upkeep::auto_compact(
        node.clone(),
        config.auto_compaction,
        config.auto_compaction_check_interval,
        stop_rx.clone(),
    ));
    let disk_watch = tokio::spawn(disk_space::watch(node.clone(), member_dir.clone(), stop_rx.clone()));
    let stall_watch = tokio::spawn(upkeep::leave_a_stalled_disk(node.clone(), stop_rx.clone()));
    let promoter =
        config.auto_promote_learners.then(|| tokio::spawn(upkeep::auto_promote(node.clone(), stop_rx.clone())));
    let syncer_stop = Arc::new(AtomicBool::new(false));
    let syncer = std::thread::Builder::new()
        .name("watch-syncer".into())
        .spawn({
            let (hub, stop) = (watch_hub.clone(), syncer_stop.clone());
            move || hub.run_syncer(stop)
        })
        .map_err(StorageError::io("watch syncer thread"))?;
    tracing::info!(client = ?config.listen_client, peer = ?config.listen_peer, "ready to serve");

    tokio::select! {
        _ = shutdown => {}
        _ = upkeep::removed(node.clone()) => {}
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    publisher.abort();
    compactor.abort();
    disk_watch.abort();
    stall_watch.abort();
    if let Some(promoter) = promoter {
        promoter.abort();
    }
    lease_keeper.abort();
    progress.abort();
    syncer_stop.store(true, Ordering::Release);
    watch_hub.wake_syncer();
    let _ = syncer.join();
    for server in servers {
        let abort = server.abort_handle();
        if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
            abort.abort();
        }
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not stop cleanly");
    }
    kv.shutdown();
    db.flush_wal(true).map_err(StorageError::rocks("flush wal"))?;
    // Something may still hold the database (a blocking task finishing
    // late); stop RocksDB's own threads now, so that none is still running
    // while the process exits.
    db.cancel_all_background_work(true);
    tracing::info!("stopped");
    Ok(())
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Waits for the next tick of `tick`: true, or false once `stop` says so.
async fn next_tick(tick: &mut tokio::time::Interval, stop: &watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stopped(stop.clone()) => false,
        _ = tick.tick() => true,
    }
}

fn peer_routes(node: Arc<Node>, snap_dir: std::path::PathBuf) -> tonic::service::Routes {
    let service = PeerServer::new(peer_service::PeerService::new(node, snap_dir))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    tonic::service::Routes::new(service).prepare()
}

fn client_routes(node: Arc<Node>, max_request_bytes: usize) -> grpc_metrics::GrpcMetrics<tonic::service::Routes> {
    use tower_layer::Layer;
    let max = max_request_bytes + GRPC_OVERHEAD_BYTES;
    let routes = tonic::service::Routes::new(
        KvServer::new(api::kv::KvService::new(node.clone())).max_decoding_message_size(max),
    )
    .add_service(WatchServer::new(api::watch::WatchService::new(node.clone())).max_decoding_message_size(max))
    .add_service(LeaseServer::new(api::lease::LeaseService::new(node.clone())).max_decoding_message_size(max))
    .add_service(ClusterServer::new(api::cluster::ClusterService::new(node.clone())).max_decoding_message_size(max))
    .add_service(
        MaintenanceServer::new(api::maintenance::MaintenanceService::new(node.clone())).max_decoding_message_size(max),
    )
    .add_service(AuthServer::new(api::auth::AuthService::new(node.clone())).max_decoding_message_size(max))
    .add_service(LockServer::new(api::lock::LockService::new(node.clone())).max_decoding_message_size(max))
    .add_service(ElectionServer::new(api::election::ElectionService::new(node)).max_decoding_message_size(max));
    grpc_metrics::GrpcMetricsLayer.layer(routes.prepare())
}

fn clone_port<G: Clone>(port: &port::Port<G>) -> port::Port<G> {
    port::Port { grpc: port.grpc.clone(), http: port.http.clone(), tls: port.tls.clone() }
}

/// How this member dials the TLS servers of one side of its cluster.
fn dialer(files: Option<&TlsFiles>, urls: &[String]) -> Result<Option<tls::Connector>, ServerError> {
    let Some(files) = files else { return Ok(None) };
    Ok(Some(tls::Connector::new(Arc::new(tls::client_config(&generated(files, urls)?)?))))
}

/// `files`, with --auto-tls's certificate made (for the hosts of `urls`)
/// if it does not exist yet.
fn generated(files: &TlsFiles, urls: &[String]) -> Result<TlsFiles, ServerError> {
    if !files.auto {
        return Ok(files.clone());
    }
    let hosts: Vec<String> =
        urls.iter().filter_map(|u| crate::urls::Url::parse("--advertise-urls", u).ok()).map(|u| u.host).collect();
    let dir = files.cert.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    Ok(tls::auto(&dir, &hosts)?)
}

/// A side's TLS server configuration.
fn reloading(files: Option<&TlsFiles>, urls: &[String]) -> Result<Option<Arc<tls::Reloading>>, ServerError> {
    let Some(files) = files else { return Ok(None) };
    Ok(Some(Arc::new(tls::Reloading::new(generated(files, urls)?)?)))
}

/// Sends progress notifications to idle watchers that asked for them.
async fn tick_progress(hub: Arc<WatchHub>, every: Duration, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    while next_tick(&mut tick, &stop).await {
        hub.progress_tick();
    }
}

/// Publishes this member's name and client URLs through Raft, retrying
/// until it lands, as etcd does when a member starts.
async fn publish(node: Arc<Node>, stop: watch::Receiver<bool>) {
    let attributes = MemberAttributes { id: node.id, name: node.name.clone(), client_urls: node.client_urls.clone() };
    let request = InternalRequest {
        request: Some(internal_request::Request::Publish(attributes)),
        auth_revision: 0,
        ..Default::default()
    };
    loop {
        if *stop.borrow() {
            return;
        }
        match node.propose(request.clone()).await {
            Ok(_) => {
                tracing::info!("published member attributes");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "publishing member attributes; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
