//! Ledger records and their canonical encoding (`docs/LEDGER.md`, section "Record encoding").
//!
//! A record is hashed as its canonical bytes, so the encoding is a fixed-order,
//! length-prefixed binary layout with exactly one encoding per record: no JSON ambiguity (key
//! order, number forms, escapes). Decoding is strict (no trailing bytes, no non-canonical
//! flags, valid UTF-8) so `encode(decode(b)) == b` for every accepted `b`. JSON is only a view.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::LedgerError;
use super::merkle::{Hash, leaf_hash};
use super::time::format_rfc3339;

/// First bytes of every encoded record.
pub const RECORD_MAGIC: [u8; 4] = *b"CFLR";
/// The encoding version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Longest string field, in bytes.
pub const MAX_FIELD_LEN: usize = 64 * 1024;
/// Most input links one record may have.
pub const MAX_INPUTS: usize = 65_536;

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An object landed (was written) in a store, and was hashed as it landed.
    Landed,
    /// A batch of changes was applied to a table.
    BatchApplied,
    /// A snapshot was sealed into an envelope.
    SnapshotSealed,
    /// An envelope was shared with a consumer.
    Shared,
    /// An envelope was rewrapped (recipients added or removed).
    Rewrapped,
    /// CloudTrail observed an event on the object.
    ObservedByCloudTrail,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Landed,
        Kind::BatchApplied,
        Kind::SnapshotSealed,
        Kind::Shared,
        Kind::Rewrapped,
        Kind::ObservedByCloudTrail,
    ];

    /// The byte that encodes this kind.
    pub fn code(self) -> u8 {
        match self {
            Kind::Landed => 1,
            Kind::BatchApplied => 2,
            Kind::SnapshotSealed => 3,
            Kind::Shared => 4,
            Kind::Rewrapped => 5,
            Kind::ObservedByCloudTrail => 6,
        }
    }

    /// The kind a byte encodes.
    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// A stable lowercase name (`landed`, `batch-applied`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Landed => "landed",
            Kind::BatchApplied => "batch-applied",
            Kind::SnapshotSealed => "snapshot-sealed",
            Kind::Shared => "shared",
            Kind::Rewrapped => "rewrapped",
            Kind::ObservedByCloudTrail => "observed-by-cloudtrail",
        }
    }

    /// The kind with this [`Kind::name`].
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Which stored object, and what its bytes were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The store (`s3`, `local`, ...).
    pub store: String,
    /// The bucket (or folder).
    pub bucket: String,
    /// The object key, as raw (not URL-encoded) UTF-8.
    pub key: String,
    /// The store's version id, if versioned.
    pub version_id: Option<String>,
    /// Size of the stored bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: [u8; 32],
    /// The store's ETag, if known (not a content hash in general).
    pub etag: Option<String>,
}

impl ObjectRef {
    /// Hashes `bytes` and describes them as `bucket`/`key` in `store`.
    pub fn of_bytes(store: &str, bucket: &str, key: &str, bytes: &[u8]) -> ObjectRef {
        ObjectRef {
            store: store.into(),
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            size: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
            etag: None,
        }
    }
}

impl ObjectRef {
    /// Hashes the file at `path` (streaming) and describes it as `bucket`/`key` in `store`.
    pub fn of_file(
        store: &str,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
    ) -> Result<ObjectRef, crate::Error> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = match std::io::Read::read(&mut file, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok(ObjectRef {
            size,
            sha256: hasher.finalize().into(),
            ..ObjectRef::of_bytes(store, bucket, key, b"")
        })
    }
}

/// Who did it, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// The principal's ARN (for an assumed role, the session ARN).
    pub principal: String,
    /// For a role session, the role that issued it (`sessionIssuer.arn`).
    pub issuer: Option<String>,
    /// Source IP address, as text.
    pub source_ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
}

/// A link to an earlier record this one was made from: its index and leaf hash, so lineage
/// forms a DAG that can be checked against the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The earlier record's index (smaller than this record's sequence).
    pub index: u64,
    /// The earlier record's leaf hash.
    pub leaf_hash: Hash,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the log (set by [`crate::ledger::Ledger::append`]); makes a moved or
    /// reordered record detectable on its own.
    pub sequence: u64,
    /// What happened.
    pub kind: Kind,
    /// When, in milliseconds since the Unix epoch (UTC).
    pub time_ms: u64,
    /// Which object.
    pub object: ObjectRef,
    /// Who.
    pub actor: Actor,
    /// The pipeline step that wrote the record.
    pub step: String,
    /// The tool and version that wrote it (`cipherflow 0.1.0`).
    pub tool_version: String,
    /// Earlier records this one was made from, by strictly increasing index.
    pub inputs: Vec<Link>,
}

impl Record {
    /// The canonical bytes (`docs/LEDGER.md`). Fails if a field is over its limit or the
    /// inputs are not strictly increasing indexes below `sequence`.
    pub fn encode(&self) -> Result<Vec<u8>, LedgerError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the canonical bytes to `out` (how a segment is built without a copy per
    /// record). On error `out` is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), LedgerError> {
        let start = out.len();
        let result = self.write(out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), LedgerError> {
        self.check_inputs()
            .map_err(|reason| LedgerError::InvalidRecord(reason.into()))?;
        out.extend_from_slice(&RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.push(self.kind.code());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        let o = &self.object;
        put_str(out, "store", &o.store)?;
        put_str(out, "bucket", &o.bucket)?;
        put_str(out, "key", &o.key)?;
        put_opt(out, "version_id", o.version_id.as_deref())?;
        out.extend_from_slice(&o.size.to_be_bytes());
        out.extend_from_slice(&o.sha256);
        put_opt(out, "etag", o.etag.as_deref())?;
        let a = &self.actor;
        put_str(out, "principal", &a.principal)?;
        put_opt(out, "issuer", a.issuer.as_deref())?;
        put_opt(out, "source_ip", a.source_ip.as_deref())?;
        put_opt(out, "user_agent", a.user_agent.as_deref())?;
        put_str(out, "step", &self.step)?;
        put_str(out, "tool_version", &self.tool_version)?;
        out.extend_from_slice(&(self.inputs.len() as u32).to_be_bytes());
        for link in &self.inputs {
            out.extend_from_slice(&link.index.to_be_bytes());
            out.extend_from_slice(&link.leaf_hash);
        }
        Ok(())
    }

    /// Decodes canonical bytes, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Record, LedgerError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != RECORD_MAGIC {
            return Err(r.error_at(0, "not a ledger record (bad magic)"));
        }
        let version = r.u8()?;
        if version != RECORD_VERSION {
            return Err(r.error_at(4, &format!("unsupported record version {version}")));
        }
        let sequence = r.u64()?;
        let kind_at = r.pos;
        let kind =
            Kind::from_code(r.u8()?).ok_or_else(|| r.error_at(kind_at, "unknown record kind"))?;
        let time_ms = r.u64()?;
        let object = ObjectRef {
            store: r.string()?,
            bucket: r.string()?,
            key: r.string()?,
            version_id: r.opt()?,
            size: r.u64()?,
            sha256: r.hash()?,
            etag: r.opt()?,
        };
        let actor = Actor {
            principal: r.string()?,
            issuer: r.opt()?,
            source_ip: r.opt()?,
            user_agent: r.opt()?,
        };
        let step = r.string()?;
        let tool_version = r.string()?;
        let count_at = r.pos;
        let count = r.u32()? as usize;
        if count > MAX_INPUTS || count * 40 > r.bytes.len() - r.pos {
            return Err(r.error_at(count_at, "input count over the limit or past the end"));
        }
        let mut inputs = Vec::with_capacity(count);
        for _ in 0..count {
            inputs.push(Link {
                index: r.u64()?,
                leaf_hash: r.hash()?,
            });
        }
        if r.pos != bytes.len() {
            return Err(r.error_at(r.pos, "trailing bytes after the record"));
        }
        let record = Record {
            sequence,
            kind,
            time_ms,
            object,
            actor,
            step,
            tool_version,
            inputs,
        };
        record
            .check_inputs()
            .map_err(|reason| r.error_at(count_at, reason))?;
        Ok(record)
    }

    /// `SHA-256(0x00 || canonical bytes)`, the record's RFC 6962 leaf hash.
    pub fn leaf_hash(&self) -> Result<Hash, LedgerError> {
        Ok(leaf_hash(&self.encode()?))
    }

    /// A readable JSON view (not hashed, not canonical).
    pub fn to_json(&self) -> serde_json::Value {
        let o = &self.object;
        let a = &self.actor;
        serde_json::to_value(RecordView {
            sequence: self.sequence,
            kind: self.kind.name(),
            time: format_rfc3339(self.time_ms),
            time_ms: self.time_ms,
            object: ObjectView {
                store: &o.store,
                bucket: &o.bucket,
                key: &o.key,
                version_id: o.version_id.as_deref(),
                size: o.size,
                sha256: hex::encode(o.sha256),
                etag: o.etag.as_deref(),
            },
            actor: ActorView {
                principal: &a.principal,
                issuer: a.issuer.as_deref(),
                source_ip: a.source_ip.as_deref(),
                user_agent: a.user_agent.as_deref(),
            },
            step: &self.step,
            tool_version: &self.tool_version,
            inputs: self
                .inputs
                .iter()
                .map(|l| LinkView {
                    index: l.index,
                    leaf_hash: hex::encode(l.leaf_hash),
                })
                .collect(),
        })
        .expect("plain structs serialize")
    }

    fn check_inputs(&self) -> Result<(), &'static str> {
        if self.inputs.len() > MAX_INPUTS {
            return Err("too many inputs");
        }
        let mut previous: Option<u64> = None;
        for link in &self.inputs {
            if link.index >= self.sequence {
                return Err("an input link must point to an earlier record");
            }
            if previous.is_some_and(|p| link.index <= p) {
                return Err("input links must be in strictly increasing index order");
            }
            previous = Some(link.index);
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct RecordView<'a> {
    sequence: u64,
    kind: &'static str,
    time: String,
    time_ms: u64,
    object: ObjectView<'a>,
    actor: ActorView<'a>,
    step: &'a str,
    tool_version: &'a str,
    inputs: Vec<LinkView>,
}

#[derive(Serialize)]
struct ObjectView<'a> {
    store: &'a str,
    bucket: &'a str,
    key: &'a str,
    version_id: Option<&'a str>,
    size: u64,
    sha256: String,
    etag: Option<&'a str>,
}

#[derive(Serialize)]
struct ActorView<'a> {
    principal: &'a str,
    issuer: Option<&'a str>,
    source_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

#[derive(Serialize)]
struct LinkView {
    index: u64,
    leaf_hash: String,
}

fn put_str(out: &mut Vec<u8>, field: &str, value: &str) -> Result<(), LedgerError> {
    if value.len() > MAX_FIELD_LEN {
        return Err(LedgerError::InvalidRecord(format!(
            "{field} is {} bytes, over the limit of {MAX_FIELD_LEN}",
            value.len()
        )));
    }
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn put_opt(out: &mut Vec<u8>, field: &str, value: Option<&str>) -> Result<(), LedgerError> {
    match value {
        None => {
            out.push(0);
            Ok(())
        }
        Some(v) => {
            out.push(1);
            put_str(out, field, v)
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn error_at(&self, offset: usize, reason: &str) -> LedgerError {
        LedgerError::Record {
            offset,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], LedgerError> {
        if self.bytes.len() - self.pos < n {
            return Err(self.error_at(self.pos, "record ends early"));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, LedgerError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, LedgerError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, LedgerError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn hash(&mut self) -> Result<Hash, LedgerError> {
        Ok(self.take(32)?.try_into().expect("32"))
    }

    fn string(&mut self) -> Result<String, LedgerError> {
        let at = self.pos;
        let len = self.u32()? as usize;
        if len > MAX_FIELD_LEN {
            return Err(self.error_at(at, "string longer than the limit"));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error_at(at + 4, "invalid UTF-8"))
    }

    fn opt(&mut self) -> Result<Option<String>, LedgerError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(self.error_at(at, "presence flag is neither 0 nor 1")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A record with every optional field set.
    fn sample(sequence: u64) -> Record {
        Record {
            sequence,
            kind: Kind::Landed,
            time_ms: 1_549_053_768_000 + sequence,
            object: ObjectRef {
                version_id: Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd".into()),
                etag: Some("\"d41d8cd98f00b204e9800998ecf8427e\"".into()),
                ..ObjectRef::of_bytes("s3", "landing-bucket", "in/a b+c:d=é.csv", b"id\n1\n")
            },
            actor: Actor {
                principal: "arn:aws:sts::123456789012:assumed-role/ingest/session".into(),
                issuer: Some("arn:aws:iam::123456789012:role/ingest".into()),
                source_ip: Some("192.0.2.10".into()),
                user_agent: Some("aws-sdk-rust/1.0".into()),
            },
            step: "ingest".into(),
            tool_version: "cipherflow 0.1.0".into(),
            inputs: Vec::new(),
        }
    }

    #[test]
    fn encoding_is_byte_exact() {
        // docs/LEDGER.md's worked example, byte for byte.
        let record = Record {
            sequence: 1,
            kind: Kind::Landed,
            time_ms: 1_549_053_768_000,
            object: ObjectRef {
                store: "s3".into(),
                bucket: "b".into(),
                key: "k".into(),
                version_id: None,
                size: 3,
                sha256: [0xab; 32],
                etag: None,
            },
            actor: Actor {
                principal: "p".into(),
                ..Actor::default()
            },
            step: "s".into(),
            tool_version: "t".into(),
            inputs: vec![Link {
                index: 0,
                leaf_hash: [0xcd; 32],
            }],
        };
        let expected = [
            "43464c52",         // magic "CFLR"
            "01",               // version
            "0000000000000001", // sequence
            "01",               // kind: landed
            "00000168aaccb140", // time_ms
            "000000027333",     // store "s3"
            "0000000162",       // bucket "b"
            "000000016b",       // key "k"
            "00",               // version_id: absent
            "0000000000000003", // size
            &"ab".repeat(32),   // sha256
            "00",               // etag: absent
            "0000000170",       // principal "p"
            "000000",           // issuer, source_ip, user_agent: absent
            "0000000173",       // step "s"
            "0000000174",       // tool_version "t"
            "00000001",         // one input
            "0000000000000000", // its index
            &"cd".repeat(32),   // its leaf hash
        ]
        .concat();
        let bytes = record.encode().unwrap();
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(Record::decode(&bytes).unwrap(), record);
        assert_eq!(
            hex::encode(record.leaf_hash().unwrap()),
            hex::encode(leaf_hash(&bytes))
        );
    }

    #[test]
    fn decode_is_strict() {
        let bytes = sample(3).encode().unwrap();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            Record::decode(&trailing),
            Err(LedgerError::Record { .. })
        ));
        for cut in 0..bytes.len() {
            assert!(Record::decode(&bytes[..cut]).is_err(), "prefix {cut}");
        }
        // The version_id presence flag follows magic, version, sequence, kind, time and the
        // three length-prefixed strings.
        let flag_at = 4 + 1 + 8 + 1 + 8 + (4 + 2) + (4 + 14) + (4 + "in/a b+c:d=é.csv".len());
        assert_eq!(bytes[flag_at], 1);
        let mut bad_flag = bytes.clone();
        bad_flag[flag_at] = 2;
        assert_eq!(
            Record::decode(&bad_flag),
            Err(LedgerError::Record {
                offset: flag_at,
                reason: "presence flag is neither 0 nor 1".into()
            })
        );
    }

    #[test]
    fn input_links_must_point_backwards_in_order() {
        let mut r = sample(5);
        r.inputs = vec![Link {
            index: 5,
            leaf_hash: [0; 32],
        }];
        assert!(r.encode().is_err());
        r.inputs = vec![
            Link {
                index: 2,
                leaf_hash: [0; 32],
            },
            Link {
                index: 2,
                leaf_hash: [0; 32],
            },
        ];
        assert!(r.encode().is_err());
    }

    #[test]
    fn json_view_shows_fields() {
        let v = sample(0).to_json();
        assert_eq!(v["kind"], "landed");
        assert_eq!(v["time"], "2019-02-01T20:42:48.000Z");
        assert_eq!(v["object"]["key"], "in/a b+c:d=é.csv");
        assert_eq!(
            v["object"]["sha256"],
            hex::encode(Sha256::digest(b"id\n1\n"))
        );
    }

    fn arb_opt() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(".{0,12}")
    }

    prop_compose! {
        fn arb_record()(
            sequence in 0u64..1000,
            kind in 1u8..=6,
            time_ms: u64,
            strings in proptest::collection::vec(".{0,16}", 6),
            opts in proptest::collection::vec(arb_opt(), 5),
            size: u64,
            sha256: [u8; 32],
            links in proptest::collection::btree_set(0u64..1000, 0..4),
        ) -> Record {
            Record {
                sequence,
                kind: Kind::from_code(kind).unwrap(),
                time_ms,
                object: ObjectRef {
                    store: strings[0].clone(),
                    bucket: strings[1].clone(),
                    key: strings[2].clone(),
                    version_id: opts[0].clone(),
                    size,
                    sha256,
                    etag: opts[1].clone(),
                },
                actor: Actor {
                    principal: strings[3].clone(),
                    issuer: opts[2].clone(),
                    source_ip: opts[3].clone(),
                    user_agent: opts[4].clone(),
                },
                step: strings[4].clone(),
                tool_version: strings[5].clone(),
                inputs: links
                    .into_iter()
                    .filter(|&i| i < sequence)
                    .map(|index| Link { index, leaf_hash: [index as u8; 32] })
                    .collect(),
            }
        }
    }

    proptest! {
        #[test]
        fn roundtrip_is_canonical(record in arb_record()) {
            let bytes = record.encode().unwrap();
            let back = Record::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &record);
            prop_assert_eq!(back.encode().unwrap(), bytes);
        }

        #[test]
        fn decoder_never_panics_and_accepts_only_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(record) = Record::decode(&bytes) {
                prop_assert_eq!(record.encode().unwrap(), bytes);
            }
        }
    }
}
