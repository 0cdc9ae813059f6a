//! Garbage collection: remove what newer generations superseded, never what a kept manifest
//! (or a run in progress) needs.
//!
//! An object is removed only if some manifest referenced it and none of the kept generations
//! (the latest `keep`) does: runs folded into a newer base, replaced bases, old manifests.
//! An object no manifest ever referenced is left alone and counted: it may belong to a step
//! that is running right now and has not swapped the pointer yet (a step that crashed and is
//! run again writes the same names and so adopts it).

use std::collections::BTreeSet;

use super::{LandingIndex, Location, Manifest, Pipeline, Pointer, base_rel, manifest_rel, run_rel};
use crate::Error;

/// What [`Pipeline::gc`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Generations whose manifests were kept.
    pub kept_generations: Vec<u64>,
    /// Objects removed (or that would be, in a dry run), as `store-role:key`.
    pub removed: Vec<String>,
    /// Objects no manifest references, left in place.
    pub unreferenced: Vec<String>,
}

impl Pipeline {
    /// Removes superseded objects from the share and state stores, keeping the latest `keep`
    /// generations (at least 1) readable. With `dry_run`, only reports.
    pub async fn gc(&self, keep: u64, dry_run: bool) -> Result<GcReport, Error> {
        let table = &self.table.name;
        let mut report = GcReport::default();
        let (bytes, _) = match self.stores.share.get(&self.pointer_rel()).await {
            Ok(found) => found,
            Err(Error::Store(e)) if matches!(*e, crate::store::StoreError::NotFound { .. }) => {
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let pointer = Pointer::decode(&self.pointer_rel(), &bytes)?;
        let oldest_kept = pointer.generation.saturating_sub(keep.max(1) - 1);

        // Every manifest the state store holds, opened: which objects each references.
        let mut live = BTreeSet::new();
        let mut ever = BTreeSet::new();
        let manifests_prefix = format!("{}{table}/manifests/", self.stores.state.prefix);
        for meta in self.stores.state.store.list(&manifests_prefix).await? {
            let rel = meta.key.as_str()[self.stores.state.prefix.len()..].to_owned();
            let Some((generation, hash)) = parse_manifest_name(table, &rel) else {
                continue;
            };
            let (sealed, _) = self.stores.state.get(&rel).await?;
            let manifest = Manifest::decode(&rel, &self.open_state(&sealed)?, hash)?;
            let mut names = referenced(table, &manifest);
            names.insert(manifest_rel(table, generation, hash));
            if generation >= oldest_kept && generation <= pointer.generation {
                report.kept_generations.push(generation);
                live.extend(names.iter().cloned());
            }
            ever.extend(names);
        }

        for (role, location) in [("share", &self.stores.share), ("state", &self.stores.state)] {
            let prefix = format!("{}{table}/", location.prefix);
            for meta in location.store.list(&prefix).await? {
                let rel = &meta.key.as_str()[location.prefix.len()..];
                if rel == self.pointer_rel()
                    || rel == LandingIndex::rel(table)
                    || live.contains(rel)
                {
                    continue;
                }
                if !ever.contains(rel) {
                    report.unreferenced.push(format!("{role}:{rel}"));
                    continue;
                }
                if !dry_run {
                    remove(location, rel).await?;
                }
                report.removed.push(format!("{role}:{rel}"));
            }
        }
        Ok(report)
    }
}

async fn remove(location: &Location, rel: &str) -> Result<(), Error> {
    Ok(location.store.delete(&location.key(rel)?).await?)
}

/// The objects (relative names) a manifest references, besides itself.
fn referenced(table: &str, manifest: &Manifest) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (p, partition) in manifest.partitions.iter().enumerate() {
        if let Some(base) = &partition.base {
            names.insert(base_rel(table, p, &base.id));
        }
        for run in &partition.runs {
            names.insert(run_rel(table, p, &run.id));
        }
    }
    names
}

/// `TABLE/manifests/GGGGGGGGGGGG-HASH.cfe` → (generation, hash).
fn parse_manifest_name<'a>(table: &str, rel: &'a str) -> Option<(u64, &'a str)> {
    let name = rel
        .strip_prefix(table)?
        .strip_prefix("/manifests/")?
        .strip_suffix(".cfe")?;
    let (generation, hash) = name.split_once('-')?;
    Some((generation.parse().ok()?, hash))
}
