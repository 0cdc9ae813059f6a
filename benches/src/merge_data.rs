//! A deterministic table and DMS change batch for the merge benchmarks (`benches/merge.rs`,
//! `merge_vs_peers.sh`): the same seed always gives the same bytes.
//!
//! The table has 10 columns keyed by `id` (int64), about 125 bytes a row, about 3% of its
//! fields quoted (a comma or a quote in `city` or `note`) and about 5% null (empty) fields.
//! The base snapshot holds the even ids `2, 4, ..., 2 * rows`, sorted, encoded as CipherFlow
//! writes snapshots (a field is quoted only when it holds `,`, `"`, CR or LF).
//!
//! The batch is about 30% inserts (odd ids, or ids deleted earlier in the batch), 60% updates
//! and 10% deletes of rows that exist at that point, most of them drawn from a pool of
//! recently touched keys so that keys change several times. Every change has a 35-digit
//! `AR_H_CHANGE_SEQ` (strictly increasing in generation order, with gaps); updates and
//! inserts carry full rows and deletes only the key, as DMS writes them. The changes are
//! shuffled and dealt round-robin into several files, each with the header
//! `Op,AR_H_CHANGE_SEQ,id,...`, so neither the order of files nor the order within a file
//! says which change is newer: only the sequence does.

use std::collections::HashMap;
use std::io::{self, Write};

/// The table's columns, key first.
pub const COLUMNS: [&str; 10] = [
    "id",
    "name",
    "email",
    "city",
    "amount",
    "qty",
    "status",
    "created_at",
    "note",
    "flag",
];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Rows in the base snapshot.
    pub rows: u64,
    /// Changes in the batch.
    pub changes: u64,
    /// Change files the batch is dealt into.
    pub files: usize,
    /// Seed of the pseudo-random generator.
    pub seed: u64,
}

/// SplitMix64: small, fast and fully determined by its seed (no dependency needed).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: [&str; 16] = [
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
    "Radia", "Leslie", "Sophie", "Niklaus", "Hedy", "Tony",
];
const LAST: [&str; 16] = [
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Ritchie", "Perlman", "Lamport", "Wilson", "Wirth", "Lamarr", "Hoare",
];
const CITIES: [&str; 8] = [
    "Lisbon",
    "Osaka",
    "Nairobi",
    "Toronto",
    "Valparaiso",
    "Bergen",
    "Hobart",
    "Tucson",
];
const STATES: [&str; 4] = ["Tasmania", "Arizona", "Ontario", "Hordaland"];
const STATUS: [&str; 5] = ["pending", "shipped", "delivered", "cancelled", "returned"];
const WORDS: [&str; 12] = [
    "blue", "parcel", "left", "at", "door", "fragile", "gift", "wrap", "call", "first", "express",
    "box",
];

/// Probability that a non-key field is null (9 of the 10 fields can be: ~5% of all fields).
const NULL_P: f64 = 0.055;

/// Appends one row's non-key fields (unencoded; `None` is null).
fn row_values(rng: &mut Rng, out: &mut Vec<Option<String>>) {
    out.clear();
    let first = rng.pick(&FIRST);
    let last = rng.pick(&LAST);
    let city = if rng.chance(0.05) {
        format!("{}, {}", rng.pick(&CITIES), rng.pick(&STATES))
    } else {
        rng.pick(&CITIES).to_owned()
    };
    let mut note = String::new();
    for i in 0..3 + rng.below(2) {
        if i > 0 {
            note.push(' ');
        }
        note.push_str(rng.pick(&WORDS));
    }
    let r = rng.below(100);
    if r < 19 {
        note.push_str(", then ");
        note.push_str(rng.pick(&WORDS));
    } else if r < 25 {
        note = format!("\"{note}\" said {}", rng.pick(&FIRST));
    }
    let values = [
        format!("{first} {last}"),
        format!(
            "{}.{}{}@mail.example.com",
            first.to_lowercase(),
            last.to_lowercase(),
            rng.below(100)
        ),
        city,
        format!("{}.{:02}", rng.below(100_000), rng.below(100)),
        (1 + rng.below(500)).to_string(),
        rng.pick(&STATUS).to_owned(),
        format!(
            "2025-{:02}-{:02} {:02}:{:02}:{:02}",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ),
        note,
        if rng.chance(0.5) { "true" } else { "false" }.to_owned(),
    ];
    for v in values {
        out.push((!rng.chance(NULL_P)).then_some(v));
    }
}

/// Appends a field as CipherFlow encodes it: quoted (quotes doubled) iff it holds `,`, `"`,
/// CR or LF.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    if field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

fn push_values(out: &mut Vec<u8>, values: &[Option<String>]) {
    for v in values {
        out.push(b',');
        if let Some(v) = v {
            push_field(out, v.as_bytes());
        }
    }
    out.push(b'\n');
}

/// The header line, `id,name,...` and LF.
pub fn header() -> String {
    COLUMNS.join(",") + "\n"
}

/// Writes the base snapshot (header and `spec.rows` rows sorted by `id`).
pub fn write_base(spec: &Spec, mut out: impl Write) -> io::Result<()> {
    let mut rng = Rng::new(spec.seed);
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(header().as_bytes());
    let mut values = Vec::new();
    for i in 1..=spec.rows {
        buf.extend_from_slice((2 * i).to_string().as_bytes());
        row_values(&mut rng, &mut values);
        push_values(&mut buf, &values);
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()
}

/// The change files' contents (each with its header), `spec.files` of them.
pub fn changes(spec: &Spec) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(spec.seed ^ 0x5EED_C4A9_6E5D_0001);
    // Keys the batch touched: whether each exists now. Untouched even keys <= 2 * rows
    // exist (the base), untouched odd keys do not.
    let mut exists: HashMap<u64, bool> = HashMap::new();
    let in_base = |k: u64| k.is_multiple_of(2) && (2..=2 * spec.rows).contains(&k);
    let mut hot: Vec<u64> = Vec::new();
    let mut deleted: Vec<u64> = Vec::new();
    let hot_cap = (spec.changes / 10).max(16) as usize;
    let mut seq: u128 = 0;
    let mut records: Vec<Vec<u8>> = Vec::with_capacity(spec.changes as usize);
    let mut values = Vec::new();
    let key_space = 2 * spec.rows + spec.rows / 10 + 2;
    let touch = |hot: &mut Vec<u64>, rng: &mut Rng, k: u64| {
        if hot.len() < hot_cap {
            hot.push(k);
        } else {
            hot[rng.below(hot_cap as u64) as usize] = k;
        }
    };
    while (records.len() as u64) < spec.changes {
        let r = rng.below(100);
        let live = |exists: &HashMap<u64, bool>, k: u64| *exists.get(&k).unwrap_or(&in_base(k));
        let (op, key) = if r < 27 {
            // Insert: a key deleted earlier in the batch, or a fresh odd key.
            let key = if !deleted.is_empty() && rng.chance(0.15) {
                deleted.swap_remove(rng.below(deleted.len() as u64) as usize)
            } else {
                (rng.below(key_space / 2) * 2) + 1
            };
            if live(&exists, key) {
                continue;
            }
            ("I", key)
        } else {
            let key = if !hot.is_empty() && rng.chance(0.8) {
                hot[rng.below(hot.len() as u64) as usize]
            } else {
                2 + 2 * rng.below(spec.rows)
            };
            if !live(&exists, key) {
                continue;
            }
            (if r < 89 { "U" } else { "D" }, key)
        };
        exists.insert(key, op != "D");
        if op == "D" {
            deleted.push(key);
        }
        touch(&mut hot, &mut rng, key);
        seq += 1 + u128::from(rng.below(1000));
        let mut rec = Vec::with_capacity(160);
        rec.extend_from_slice(format!("{op},20261127120000{seq:021},{key}").as_bytes());
        if op == "D" {
            rec.extend_from_slice(",".repeat(COLUMNS.len() - 1).as_bytes());
            rec.push(b'\n');
        } else {
            row_values(&mut rng, &mut values);
            push_values(&mut rec, &values);
        }
        records.push(rec);
    }
    // Fisher-Yates, then deal round-robin: files and lines say nothing about order.
    for i in (1..records.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        records.swap(i, j);
    }
    let head = format!("Op,AR_H_CHANGE_SEQ,{}", header());
    let mut files = vec![head.into_bytes(); spec.files.max(1)];
    let n = files.len();
    for (i, rec) in records.iter().enumerate() {
        files[i % n].extend_from_slice(rec);
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_the_advertised_shape() {
        let spec = Spec {
            rows: 20_000,
            changes: 2_000,
            files: 3,
            seed: 7,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_base(&spec, &mut a).unwrap();
        write_base(&spec, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(changes(&spec), changes(&spec));
        let rows = a.iter().filter(|&&b| b == b'\n').count() - 1;
        assert_eq!(rows, 20_000);
        let per_row = a.len() / rows;
        assert!((110..=140).contains(&per_row), "{per_row} bytes a row");
        let files = changes(&spec);
        assert_eq!(files.len(), 3);
        let lines: usize = files
            .iter()
            .map(|f| f.iter().filter(|&&b| b == b'\n').count() - 1)
            .sum();
        assert_eq!(lines, 2_000);
    }
}
