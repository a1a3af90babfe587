//! `apply -f FILE|DIR` and `delete -f`: manifests in YAML or JSON, several
//! documents per file, every one checked before anything is written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::Value;
use shoal_client::{service_ips, Api, Store};
use shoal_proto::objects::validation::validate;
use shoal_proto::objects::{AnyObject, Object, Service};

use super::resource::{name_of, Resource};

/// One object from a file.
pub struct Manifest {
    pub source: PathBuf,
    pub object: AnyObject,
}

/// The manifest files at `path`: the file, or a directory's .yaml, .yml and
/// .json files in name order.
fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        if !path.exists() {
            bail!("the path \"{}\" does not exist", path.display());
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// The documents of one file, as JSON values (a `List` gives its items).
fn documents(file: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut values = Vec::new();
    if text.trim_start().starts_with('{') {
        let value: Value =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("error parsing {}: {e}", file.display()))?;
        values.push(value);
    } else {
        for document in yaml_serde::Deserializer::from_str(&text) {
            // A broken document makes the iterator repeat its error: stop at the first.
            let value = Value::deserialize(document)
                .map_err(|e| anyhow::anyhow!("error parsing {}: error converting YAML to JSON: {e}", file.display()))?;
            values.push(value);
        }
    }
    let mut out = Vec::new();
    for value in values {
        match value {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(map.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Every object in `path`, each decoded and validated; the first problem
/// is the error, naming the file, the object and the field.
pub fn read(path: &Path) -> anyhow::Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    for file in files(path)? {
        for value in documents(&file)? {
            let object = AnyObject::from_value(value)
                .map_err(|e| anyhow::anyhow!("error validating \"{}\": {e}", file.display()))?;
            let checked = match &object {
                AnyObject::Pod(o) => validate(o),
                AnyObject::Deployment(o) => validate(o),
                AnyObject::ReplicaSet(o) => validate(o),
                AnyObject::Node(o) => validate(o),
                AnyObject::Service(o) => validate(o),
                AnyObject::Endpoints(o) => validate(o),
            };
            checked.map_err(|e| anyhow::anyhow!("error validating \"{}\": {e}", file.display()))?;
            manifests.push(Manifest { source: file.clone(), object });
        }
    }
    if manifests.is_empty() {
        bail!("no objects passed to apply");
    }
    Ok(manifests)
}

/// Where apply keeps the manifest it last applied, as kubectl does: the
/// fields it names are the user's; everything else (a pod's node, a
/// controller's annotations) belongs to someone else and is kept.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A three-way merge into `current`: what `wanted` sets wins, what the last
/// applied manifest set and `wanted` no longer does goes, the rest stays.
fn three_way(current: &mut Value, last: Option<&Value>, wanted: &Value) {
    let (Some(target), Some(fields)) = (current.as_object_mut(), wanted.as_object()) else {
        *current = wanted.clone();
        return;
    };
    for (key, value) in fields {
        let previous = last.and_then(|l| l.get(key));
        match target.get_mut(key) {
            Some(existing) if existing.is_object() && value.is_object() => three_way(existing, previous, value),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(last) = last.and_then(Value::as_object) {
        for key in last.keys().filter(|k| !fields.contains_key(*k)) {
            target.remove(key);
        }
    }
}

/// The manifest as it is recorded in the annotation.
fn recorded(wanted: &Value) -> Value {
    let mut manifest = wanted.clone();
    if let Some(annotations) = manifest.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.remove(LAST_APPLIED);
    }
    manifest
}

/// `current` with `wanted`'s spec, labels and annotations merged in.
fn merged<K: Object>(current: &K, wanted: &Value) -> Option<K> {
    let mut value = serde_json::to_value(current).ok()?;
    let last: Option<Value> =
        current.meta().annotations.get(LAST_APPLIED).and_then(|text| serde_json::from_str(text).ok());
    let empty = Value::Object(Default::default());
    three_way(value.get_mut("spec")?, last.as_ref().and_then(|l| l.get("spec")), wanted.get("spec").unwrap_or(&empty));
    for field in ["labels", "annotations"] {
        let metadata = value.get_mut("metadata")?.as_object_mut()?;
        let slot = metadata.entry(field).or_insert_with(|| empty.clone());
        let previous = last.as_ref().and_then(|l| l.get("metadata")).and_then(|m| m.get(field));
        three_way(slot, previous, wanted.get("metadata").and_then(|m| m.get(field)).unwrap_or(&empty));
    }
    value["metadata"]["annotations"][LAST_APPLIED] = Value::String(recorded(wanted).to_string());
    serde_json::from_value(value).ok()
}

/// Creates the object, or merges the manifest into the stored one. Returns
/// `created`, `configured` or `unchanged`.
async fn apply_one<K: Object>(api: Api<K>, object: K) -> anyhow::Result<&'static str> {
    apply_with(api, object, async |api: &Api<K>, object: &K| api.create(object).await, |_, _| Ok(())).await
}

/// Applies `object`: made by `create` when new, else merged into what is
/// stored, once `check` allows the change from the stored object.
async fn apply_with<K: Object>(
    api: Api<K>,
    mut object: K,
    create: impl AsyncFnOnce(&Api<K>, &K) -> shoal_client::Result<K>,
    check: impl Fn(&K, &K) -> shoal_client::Result<()>,
) -> anyhow::Result<&'static str> {
    let namespace = object.meta().namespace_or_default().to_string();
    let name = object.meta().name.clone();
    let wanted = serde_json::to_value(&object)?;
    let Some(current) = api.get_opt(&namespace, &name).await? else {
        object.meta_mut().annotations.insert(LAST_APPLIED.into(), recorded(&wanted).to_string());
        create(&api, &object).await?;
        return Ok("created");
    };
    let target = merged(&current, &wanted).context("cannot merge the manifest into the stored object")?;
    check(&current, &target)?;
    if serde_json::to_value(&target)? == serde_json::to_value(&current)? {
        return Ok("unchanged");
    }
    api.modify(&namespace, &name, |c| {
        if let Some(m) = merged(c, &wanted) {
            *c = m;
        }
    })
    .await?;
    Ok("configured")
}

pub async fn apply(store: &Store, path: &Path) -> anyhow::Result<()> {
    let manifests = read(path)?;
    for manifest in manifests {
        let resource = Resource::of(&manifest.object);
        let (_, name) = name_of(&manifest.object);
        let outcome = match manifest.object {
            AnyObject::Pod(o) => apply_one(Api::new(store.clone()), o).await,
            AnyObject::Deployment(o) => apply_one(Api::new(store.clone()), o).await,
            AnyObject::ReplicaSet(o) => apply_one(Api::new(store.clone()), o).await,
            AnyObject::Node(o) => apply_one(Api::new(store.clone()), o).await,
            // A new Service gets its cluster IP in the same write; the address never changes after.
            AnyObject::Service(o) => {
                let create = async |api: &Api<Service>, service: &Service| service_ips::create(api, service).await;
                apply_with(Api::new(store.clone()), o, create, service_ips::check_unchanged).await
            }
            AnyObject::Endpoints(o) => apply_one(Api::new(store.clone()), o).await,
        }
        .with_context(|| format!("error applying {} from \"{}\"", name, manifest.source.display()))?;
        println!("{}/{name} {outcome}", resource.singular());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_three_way_merge_keeps_what_others_set() {
        let mut current = json!({"replicas": 2, "nodeName": "n1", "template": {"a": 1, "b": 2}});
        let last = json!({"replicas": 2, "template": {"a": 1, "b": 2}});
        let wanted = json!({"replicas": 3, "template": {"a": 5}});
        three_way(&mut current, Some(&last), &wanted);
        assert_eq!(current, json!({"replicas": 3, "nodeName": "n1", "template": {"a": 5}}));
    }
}
