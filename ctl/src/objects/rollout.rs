//! `rollout status`, `rollout undo` and `rollout history` for Deployments.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use shoal_client::{Api, Store};
use shoal_proto::objects::time::parse_duration;
use shoal_proto::objects::{Deployment, ReplicaSet};

use super::resource::Resource;
use super::{server_error, target, Scope, ROLLOUT_TIMEOUT};

const REVISION: &str = "deployment.kubernetes.io/revision";

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// deployment/NAME, or `deployment NAME`.
    pub resource: String,
    pub name: Option<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// Give up after this long.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct UndoArgs {
    pub resource: String,
    pub name: Option<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// The revision to go back to (default: the one before the current).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    pub resource: String,
    pub name: Option<String>,
    #[command(flatten)]
    pub scope: Scope,
}

fn deployment_name(resource: &str, name: Option<&str>) -> anyhow::Result<String> {
    let (kind, name) = target(resource, name)?;
    if kind != Resource::Deployment {
        bail!("rollout works on deployments, not {}", kind.singular());
    }
    name.context("a name is required: deployment/NAME")
}

/// What kubectl says while waiting, or None once the rollout is done.
fn progress(d: &Deployment) -> Option<String> {
    let name = &d.metadata.name;
    let Some(s) = &d.status else {
        return Some(format!(
            "Waiting for deployment \"{name}\" rollout to finish: 0 of {} updated replicas are available...",
            d.replicas()
        ));
    };
    let replicas = d.replicas();
    if s.observed_generation < d.metadata.generation {
        return Some("Waiting for deployment spec update to be observed...".into());
    }
    if s.updated_replicas < replicas {
        return Some(format!("Waiting for deployment \"{name}\" rollout to finish: {} out of {replicas} new replicas have been updated...", s.updated_replicas));
    }
    if s.replicas > s.updated_replicas {
        return Some(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
            s.replicas - s.updated_replicas
        ));
    }
    if s.available_replicas < s.updated_replicas {
        return Some(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} of {} updated replicas are available...",
            s.available_replicas, s.updated_replicas
        ));
    }
    None
}

pub async fn status(store: &Store, args: StatusArgs) -> anyhow::Result<()> {
    let name = deployment_name(&args.resource, args.name.as_deref())?;
    let api: Api<Deployment> = Api::new(store.clone());
    let deadline = Instant::now() + args.timeout.unwrap_or(ROLLOUT_TIMEOUT);
    let mut last = String::new();
    loop {
        let d = api.get(args.scope.namespace(), &name).await.map_err(server_error)?;
        if let Some(c) =
            d.status.as_ref().and_then(|s| shoal_proto::objects::meta::condition(&s.conditions, "Progressing"))
        {
            if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
                bail!("deployment \"{name}\" exceeded its progress deadline");
            }
        }
        match progress(&d) {
            None => {
                println!("deployment \"{name}\" successfully rolled out");
                return Ok(());
            }
            Some(message) => {
                if message != last {
                    println!("{message}");
                    last = message;
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Deployment's ReplicaSets, by revision.
async fn revisions(store: &Store, d: &Deployment) -> anyhow::Result<Vec<(i64, ReplicaSet)>> {
    let sets = Api::<ReplicaSet>::new(store.clone())
        .list(Some(d.metadata.namespace_or_default()))
        .await
        .map_err(server_error)?;
    let mut owned: Vec<(i64, ReplicaSet)> = sets
        .items
        .into_iter()
        .filter(|rs| rs.metadata.controller().is_some_and(|o| o.uid == d.metadata.uid))
        .map(|rs| (rs.metadata.annotations.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0), rs))
        .collect();
    owned.sort_by_key(|(r, _)| *r);
    Ok(owned)
}

pub async fn undo(store: &Store, args: UndoArgs) -> anyhow::Result<()> {
    let name = deployment_name(&args.resource, args.name.as_deref())?;
    let namespace = args.scope.namespace();
    let api: Api<Deployment> = Api::new(store.clone());
    let d = api.get(namespace, &name).await.map_err(server_error)?;
    let history = revisions(store, &d).await?;
    let current = history.last().map_or(0, |(r, _)| *r);
    let wanted = if args.to_revision > 0 {
        history
            .iter()
            .find(|(r, _)| *r == args.to_revision)
            .with_context(|| format!("unable to find specified revision {} in history", args.to_revision))?
    } else {
        history
            .iter()
            .rev()
            .find(|(r, _)| *r < current)
            .context("no rollout history found for deployment \"".to_string() + &name + "\"")?
    };
    let mut template = wanted.1.spec.template.clone();
    template.metadata.labels.remove("pod-template-hash");
    if template == d.spec.template {
        println!("deployment.apps/{name} skipped rollback (current template already matches revision {})", wanted.0);
        return Ok(());
    }
    api.modify(namespace, &name, |d| d.spec.template = template.clone()).await.map_err(server_error)?;
    println!("deployment.apps/{name} rolled back");
    Ok(())
}

pub async fn history(store: &Store, args: HistoryArgs) -> anyhow::Result<()> {
    let name = deployment_name(&args.resource, args.name.as_deref())?;
    let d = Api::<Deployment>::new(store.clone()).get(args.scope.namespace(), &name).await.map_err(server_error)?;
    println!("deployment.apps/{name}");
    println!("REVISION   REPLICASET");
    for (revision, rs) in revisions(store, &d).await? {
        println!("{revision:<10} {}", rs.metadata.name);
    }
    Ok(())
}
