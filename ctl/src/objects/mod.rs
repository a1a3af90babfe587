//! kubectl-style verbs on the control plane's objects: apply, get,
//! describe, delete, scale and rollout.

pub mod apply;
pub mod describe;
pub mod exec;
pub mod logs;
pub mod print;
pub mod resource;
pub mod rollout;
pub mod services;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_client::{Api, Error, Store};
use shoal_proto::objects::selector::LabelSelector;
use shoal_proto::objects::{Deployment, Endpoints, Lease, Node, Pod, ReplicaSet, Service, DEFAULT_NAMESPACE};

use print::{document, objects_table, Columns, Format};
use resource::{name_of, Resource};

/// Flags the object verbs share.
#[derive(Args, Debug, Clone)]
pub struct Scope {
    /// The namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

impl Scope {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// pods, deployments, replicasets, nodes or leases (or `deployment/web`).
    pub resource: String,
    /// One object by name; all of them when left out.
    pub name: Option<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// In every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only objects whose labels match (`app=web,tier=front`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// wide, json or yaml.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// Read the list this many objects at a time, all at one revision (0: in
    /// one read).
    #[arg(long, default_value_t = shoal_client::pages::LIST_CHUNK)]
    pub chunk_size: i64,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A manifest file, or a directory of them (YAML or JSON).
    #[arg(short = 'f', long)]
    pub filename: PathBuf,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub resource: String,
    pub name: Option<String>,
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// A resource type (or `type/name`); or use -f.
    pub resource: Option<String>,
    pub names: Vec<String>,
    /// Delete what these manifests describe.
    #[arg(short = 'f', long)]
    pub filename: Option<PathBuf>,
    /// Seconds a pod's containers get to stop (default: the pod's own
    /// terminationGracePeriodSeconds).
    #[arg(long, allow_negative_numbers = true)]
    pub grace_period: Option<i64>,
    /// Remove pods from the store at once, without waiting for their node
    /// to confirm that they stopped.
    #[arg(long)]
    pub force: bool,
    /// Wait until the pods are gone (their node stopped them), as kubectl does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// deployment/NAME, replicaset/NAME, or the type then the name.
    pub resource: String,
    pub name: Option<String>,
    #[arg(long)]
    pub replicas: i32,
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Waits until the rollout finishes.
    Status(rollout::StatusArgs),
    /// Rolls back to the previous revision (or --to-revision).
    Undo(rollout::UndoArgs),
    /// Lists the revisions kept.
    History(rollout::HistoryArgs),
}

/// The resource and name from `type name` or `type/name`.
pub fn target(resource: &str, name: Option<&str>) -> anyhow::Result<(Resource, Option<String>)> {
    let Some((kind, inline)) = Resource::split(resource) else {
        bail!("the server doesn't have a resource type \"{resource}\"");
    };
    Ok((kind, inline.or(name).map(String::from)))
}

/// Parses `app=web,tier!=db` into a selector (equality only).
fn parse_selector(text: &str) -> anyhow::Result<LabelSelector> {
    let mut selector = LabelSelector::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) else {
            bail!("unable to parse requirement: {part:?} (use key=value)");
        };
        selector.match_labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(selector)
}

/// kubectl's way of reporting a store error about one object.
pub fn server_error(e: Error) -> anyhow::Error {
    match e {
        Error::NotFound { .. } => anyhow::anyhow!("Error from server (NotFound): {e}"),
        Error::AlreadyExists { .. } => anyhow::anyhow!("Error from server (AlreadyExists): {e}"),
        Error::Conflict { .. } => anyhow::anyhow!("Error from server (Conflict): {e}"),
        Error::Invalid(_) => anyhow::anyhow!("The {e}"),
        Error::BadRequest(_) => anyhow::anyhow!("Error from server (BadRequest): {e}"),
        Error::Expired(_) => anyhow::anyhow!("Error from server (Expired): {e}"),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn get_kind<K: Columns>(store: &Store, args: &GetArgs, name: Option<String>) -> anyhow::Result<()> {
    let api: Api<K> = Api::new(store.clone());
    let namespace = args.scope.namespace().to_string();
    let mut items: Vec<K> = match &name {
        Some(name) => vec![api.get(&namespace, name).await.map_err(server_error)?],
        None => {
            let scope = (K::NAMESPACED && !args.all_namespaces).then_some(namespace.as_str());
            let list = api.list_chunked(scope, args.chunk_size.max(0)).await.map_err(server_error)?;
            for (key, reason) in &list.malformed {
                eprintln!("warning: skipping {key}: {reason}");
            }
            list.items
        }
    };
    if let Some(selector) = &args.selector {
        let selector = parse_selector(selector)?;
        items.retain(|o| selector.matches(&o.meta().labels));
    }
    match args.output {
        Some(format @ (Format::Json | Format::Yaml)) => print!("{}", document(&items, name.is_some(), format)?),
        output => {
            if items.is_empty() {
                if K::NAMESPACED && !args.all_namespaces {
                    eprintln!("No resources found in {namespace} namespace.");
                } else {
                    eprintln!("No resources found");
                }
                return Ok(());
            }
            print!("{}", objects_table(&items, output == Some(Format::Wide), args.all_namespaces));
        }
    }
    Ok(())
}

pub async fn get(store: &Store, args: GetArgs) -> anyhow::Result<()> {
    let (kind, name) = target(&args.resource, args.name.as_deref())?;
    match kind {
        Resource::Pod => get_kind::<Pod>(store, &args, name).await,
        Resource::Deployment => get_kind::<Deployment>(store, &args, name).await,
        Resource::ReplicaSet => get_kind::<ReplicaSet>(store, &args, name).await,
        Resource::Node => get_kind::<Node>(store, &args, name).await,
        Resource::Lease => get_kind::<Lease>(store, &args, name).await,
        Resource::Service => get_kind::<Service>(store, &args, name).await,
        Resource::Endpoints => get_kind::<Endpoints>(store, &args, name).await,
    }
}

async fn delete_one(
    store: &Store,
    kind: Resource,
    namespace: &str,
    name: &str,
    grace: Option<i64>,
    wait: bool,
) -> anyhow::Result<()> {
    let mut marked = None;
    let result = match kind {
        Resource::Pod => Api::<Pod>::new(store.clone()).terminate(namespace, name, grace).await.map(|pod| {
            marked = pod.metadata.deletion_timestamp.is_some().then_some(pod);
        }),
        Resource::Deployment => Api::<Deployment>::new(store.clone()).delete(namespace, name, None).await.map(|_| ()),
        Resource::ReplicaSet => Api::<ReplicaSet>::new(store.clone()).delete(namespace, name, None).await.map(|_| ()),
        Resource::Node => Api::<Node>::new(store.clone()).delete(namespace, name, None).await.map(|_| ()),
        Resource::Lease => Api::<Lease>::new(store.clone()).delete(namespace, name, None).await.map(|_| ()),
        Resource::Service => Api::<Service>::new(store.clone()).delete(namespace, name, None).await.map(|_| ()),
        Resource::Endpoints => Api::<Endpoints>::new(store.clone()).delete(namespace, name, None).await.map(|_| ()),
    };
    result.map_err(server_error)?;
    println!("{} \"{name}\" deleted", kind.singular());
    if let (Some(pod), true) = (marked, wait) {
        wait_until_gone(store, &pod).await?;
    }
    Ok(())
}

/// Waits for a pod being deleted to be removed by its node's agent.
async fn wait_until_gone(store: &Store, pod: &Pod) -> anyhow::Result<()> {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(grace + 60);
    let api = Api::<Pod>::new(store.clone());
    let (namespace, name) = (pod.metadata.namespace_or_default(), &pod.metadata.name);
    while std::time::Instant::now() < deadline {
        match api.get_opt(namespace, name).await {
            Ok(Some(current)) if current.metadata.uid == pod.metadata.uid => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(server_error(e)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for pod \"{name}\" to be deleted (is its node's agent running?)")
}

pub async fn delete(store: &Store, args: DeleteArgs) -> anyhow::Result<()> {
    // As kubectl: --force removes at once; a negative grace means the pod's
    // own; 0 without --force means 1.
    let grace = match (args.force, args.grace_period) {
        (true, _) => Some(0),
        (false, Some(g)) if g < 0 => None,
        (false, Some(0)) => Some(1),
        (false, grace) => grace,
    };
    if let Some(path) = &args.filename {
        for manifest in apply::read(path)? {
            let (namespace, name) = name_of(&manifest.object);
            delete_one(store, Resource::of(&manifest.object), &namespace, &name, grace, args.wait).await?;
        }
        return Ok(());
    }
    let Some(resource) = &args.resource else {
        bail!("You must provide one or more resources by argument or filename.")
    };
    let (kind, inline) = target(resource, None)?;
    let names: Vec<String> = inline.into_iter().chain(args.names.iter().cloned()).collect();
    if names.is_empty() {
        bail!("resource(s) were provided, but no name was specified");
    }
    for name in names {
        delete_one(store, kind, args.scope.namespace(), &name, grace, args.wait).await?;
    }
    Ok(())
}

pub async fn scale(store: &Store, args: ScaleArgs) -> anyhow::Result<()> {
    let (kind, name) = target(&args.resource, args.name.as_deref())?;
    let name = name.context("a name is required: scale deployment/NAME --replicas=N")?;
    if args.replicas < 0 {
        bail!(
            "The {} \"{name}\" is invalid: spec.replicas: Invalid value: {}: must be greater than or equal to 0",
            kind.singular(),
            args.replicas
        );
    }
    let namespace = args.scope.namespace();
    let replicas = Some(args.replicas);
    match kind {
        Resource::Deployment => {
            Api::<Deployment>::new(store.clone())
                .modify(namespace, &name, |d| d.spec.replicas = replicas)
                .await
                .map_err(server_error)?;
        }
        Resource::ReplicaSet => {
            Api::<ReplicaSet>::new(store.clone())
                .modify(namespace, &name, |r| r.spec.replicas = replicas)
                .await
                .map_err(server_error)?;
        }
        other => bail!("cannot scale a {}", other.singular()),
    }
    println!("{}/{name} scaled", kind.singular());
    Ok(())
}

/// How long `rollout status` waits by default.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);
