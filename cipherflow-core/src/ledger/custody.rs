//! The chain-of-custody report: ledger records joined with S3 events (CloudTrail, S3
//! notifications) by bucket, key and version id, with the gaps flagged.
//!
//! The ledger says what the pipeline claims it wrote; CloudTrail says what AWS saw. Each
//! alone can be wrong or incomplete; the anomalies are where they disagree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use sha2::{Digest, Sha256};

use super::cloudtrail::{Action, S3Event};
use super::record::{Kind, Record};
use super::time::format_rfc3339;
use crate::Error;
use crate::store::{ObjectKey, ObjectStore, StoreError};

/// Something the two records disagree on, or that policy forbids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "anomaly", rename_all = "kebab-case")]
pub enum Anomaly {
    /// CloudTrail saw a write (or any event on an object) that no ledger record accounts for.
    UnknownToLedger {
        /// The event.
        event_id: String,
    },
    /// A ledger record of a write to S3 that no event confirms.
    NotSeenByCloudTrail {
        /// The ledger index.
        index: u64,
    },
    /// The event's byte count differs from the ledger's size for that version.
    SizeMismatch {
        /// The ledger index.
        index: u64,
        /// The event.
        event_id: String,
        /// Size in the ledger.
        ledger_size: u64,
        /// Size the event reports.
        event_size: u64,
    },
    /// On re-check, the object as the store holds it now differs (size or SHA-256) from the
    /// newest ledger record of a write of it.
    HashMismatch {
        /// The ledger index of that newest write.
        index: u64,
        /// Size in the ledger.
        ledger_size: u64,
        /// Size of the stored object.
        stored_size: u64,
        /// SHA-256 in the ledger, hex.
        ledger_sha256: String,
        /// SHA-256 of the stored object, hex.
        stored_sha256: String,
    },
    /// On re-check, the object the newest ledger write names is not in the store (or its key
    /// cannot name an object there).
    MissingOnRecheck {
        /// The ledger index of that newest write.
        index: u64,
        /// Why it could not be read.
        reason: String,
    },
    /// The event's principal (and its role's issuer) is not on the allowed list.
    PrincipalNotAllowed {
        /// The event.
        event_id: String,
        /// Its principal.
        principal: Option<String>,
    },
}

/// One ledger record, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// Its index.
    pub index: u64,
    /// Its kind.
    pub kind: &'static str,
    /// Its time (RFC 3339).
    pub time: String,
    /// The version id.
    pub version_id: Option<String>,
    /// The size.
    pub size: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Who.
    pub principal: String,
}

/// Everything known about one object (bucket and key), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectCustody {
    /// The bucket.
    pub bucket: String,
    /// The raw key.
    pub key: String,
    /// Ledger records.
    pub ledger: Vec<LedgerEntry>,
    /// S3 events (deduplicated, by time).
    pub events: Vec<S3Event>,
    /// What is wrong.
    pub anomalies: Vec<Anomaly>,
}

/// The report: one entry per object, by bucket then key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustodyReport {
    /// Per object.
    pub objects: Vec<ObjectCustody>,
    /// Total anomalies.
    pub anomaly_count: usize,
}

/// Ledger kinds that record a write of the object to its store.
fn is_write(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Landed | Kind::BatchApplied | Kind::SnapshotSealed | Kind::Rewrapped
    )
}

/// One object's ledger records and events, before the report is made.
type Joined<'a> = (Vec<&'a (u64, Record)>, Vec<&'a S3Event>);

/// Joins `records` (index and record, e.g. all of a ledger) with `events` (deduplicated and
/// sorted, see [`super::cloudtrail::dedupe_and_sort`]). With a non-empty `allowed`, every
/// event's principal or issuer must be on it.
pub fn custody_report(
    records: &[(u64, Record)],
    events: &[S3Event],
    allowed: &[String],
) -> CustodyReport {
    let mut objects: BTreeMap<(String, String), ObjectCustody> = BTreeMap::new();
    let mut by_object: BTreeMap<(String, String), Joined<'_>> = BTreeMap::new();
    for r in records.iter().filter(|(_, r)| r.object.store == "s3") {
        let o = &r.1.object;
        by_object
            .entry((o.bucket.clone(), o.key.clone()))
            .or_default()
            .0
            .push(r);
    }
    for e in events {
        by_object
            .entry((e.bucket.clone(), e.key.clone()))
            .or_default()
            .1
            .push(e);
    }

    for ((bucket, key), (recs, evs)) in by_object {
        let mut anomalies = Vec::new();
        let mut seen = vec![false; recs.len()];
        for e in &evs {
            if recs.is_empty() {
                anomalies.push(Anomaly::UnknownToLedger {
                    event_id: e.event_id.clone(),
                });
            } else if e.action == Action::Write {
                let matching: Vec<usize> = (0..recs.len())
                    .filter(|&j| {
                        is_write(recs[j].1.kind) && recs[j].1.object.version_id == e.version_id
                    })
                    .collect();
                if matching.is_empty() {
                    anomalies.push(Anomaly::UnknownToLedger {
                        event_id: e.event_id.clone(),
                    });
                }
                for j in matching {
                    seen[j] = true;
                    let (index, r) = recs[j];
                    if let Some(size) = e.size.filter(|&s| s != r.object.size) {
                        anomalies.push(Anomaly::SizeMismatch {
                            index: *index,
                            event_id: e.event_id.clone(),
                            ledger_size: r.object.size,
                            event_size: size,
                        });
                    }
                }
            }
            let allowed_here = allowed.is_empty()
                || [&e.principal, &e.issuer]
                    .iter()
                    .any(|p| p.as_ref().is_some_and(|p| allowed.contains(p)));
            if !allowed_here {
                anomalies.push(Anomaly::PrincipalNotAllowed {
                    event_id: e.event_id.clone(),
                    principal: e.principal.clone(),
                });
            }
        }
        for (j, (index, r)) in recs.iter().map(|r| (r.0, &r.1)).enumerate() {
            if is_write(r.kind) && !seen[j] {
                anomalies.push(Anomaly::NotSeenByCloudTrail { index });
            }
        }
        objects.insert(
            (bucket.clone(), key.clone()),
            ObjectCustody {
                bucket,
                key,
                ledger: recs
                    .iter()
                    .map(|(index, r)| LedgerEntry {
                        index: *index,
                        kind: r.kind.name(),
                        time: format_rfc3339(r.time_ms),
                        version_id: r.object.version_id.clone(),
                        size: r.object.size,
                        sha256: hex::encode(r.object.sha256),
                        principal: r.actor.principal.clone(),
                    })
                    .collect(),
                events: evs.into_iter().cloned().collect(),
                anomalies,
            },
        );
    }
    let objects: Vec<ObjectCustody> = objects.into_values().collect();
    CustodyReport {
        anomaly_count: objects.iter().map(|o| o.anomalies.len()).sum(),
        objects,
    }
}

impl CustodyReport {
    /// Re-hashes, for each object with a ledger record of a write, the object as `store`
    /// holds it now at `BUCKET/KEY` (e.g. a local folder holding a bucket's copy, or an S3
    /// store at the account's root) against the newest such record, adding a `hash-mismatch`
    /// when size or SHA-256 differ and `missing-on-recheck` when the object is absent or its
    /// key cannot name one there. Other store errors stop the re-check and are returned.
    pub async fn recheck(&mut self, store: &dyn ObjectStore) -> Result<(), Error> {
        let writes: Vec<&str> = [
            Kind::Landed,
            Kind::BatchApplied,
            Kind::SnapshotSealed,
            Kind::Rewrapped,
        ]
        .into_iter()
        .map(Kind::name)
        .collect();
        for o in &mut self.objects {
            let Some(newest) = o.ledger.iter().rev().find(|l| writes.contains(&l.kind)) else {
                continue;
            };
            let missing = |reason: String| Anomaly::MissingOnRecheck {
                index: newest.index,
                reason,
            };
            let key = match ObjectKey::new(format!("{}/{}", o.bucket, o.key)) {
                Ok(key) => key,
                Err(e) => {
                    o.anomalies.push(missing(e.to_string()));
                    continue;
                }
            };
            let bytes = match store.get(&key).await {
                Ok((bytes, _)) => bytes,
                Err(e @ StoreError::NotFound { .. }) => {
                    o.anomalies.push(missing(e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let stored_sha256 = hex::encode(Sha256::digest(&bytes));
            if bytes.len() as u64 != newest.size || stored_sha256 != newest.sha256 {
                o.anomalies.push(Anomaly::HashMismatch {
                    index: newest.index,
                    ledger_size: newest.size,
                    stored_size: bytes.len() as u64,
                    ledger_sha256: newest.sha256.clone(),
                    stored_sha256,
                });
            }
        }
        self.anomaly_count = self.objects.iter().map(|o| o.anomalies.len()).sum();
        Ok(())
    }

    /// The report as readable text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for o in &self.objects {
            let _ = writeln!(out, "s3://{}/{}", o.bucket, o.key);
            for l in &o.ledger {
                let _ = writeln!(
                    out,
                    "  ledger #{} {} {} version {} {} bytes sha256 {} by {}",
                    l.index,
                    l.kind,
                    l.time,
                    opt(&l.version_id),
                    l.size,
                    l.sha256,
                    l.principal
                );
            }
            for e in &o.events {
                let _ = writeln!(
                    out,
                    "  {} {} ({:?}) version {} {} by {} from {}",
                    format_rfc3339(e.time_ms),
                    e.name,
                    e.source,
                    opt(&e.version_id),
                    e.size.map_or("-".into(), |s| format!("{s} bytes")),
                    opt(&e.principal),
                    opt(&e.source_ip)
                );
            }
            for a in &o.anomalies {
                let _ = writeln!(out, "  ANOMALY {a:?}");
            }
        }
        let _ = writeln!(
            out,
            "{} objects, {} anomalies",
            self.objects.len(),
            self.anomaly_count
        );
        out
    }
}
