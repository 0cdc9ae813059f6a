//! The conformance suite: the [`ObjectStore`] contract as code, which every store must pass.
//!
//! [`run`] calls every check; each check is public so that a failing one can be run alone.
//! A check panics, naming the store and itself, on the first violation. Checks touch only
//! keys under `<prefix><check>/` and clear that space first, so the suite can share a bucket
//! and run again. It needs no async runtime: drive it with [`block_on`](super::block_on) or
//! await it inside one. Races are run as two interleaved futures (a real store's requests
//! overlap; a synchronous one's simply run in turn); thread races of the local store are in
//! the crate's tests.

use std::fmt::Display;
use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;

use bytes::Bytes;

use super::{ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError};

/// Runs every check on `store`, with keys under `prefix` (e.g. `"conformance/"`).
pub async fn run(store: &dyn ObjectStore, prefix: &str) {
    round_trip(store, prefix).await;
    head(store, prefix).await;
    overwrite_changes_version(store, prefix).await;
    create_only_if_absent(store, prefix).await;
    update_only_at_version(store, prefix).await;
    racing_writers(store, prefix).await;
    ranges(store, prefix).await;
    listing(store, prefix).await;
    deletion(store, prefix).await;
    unusual_keys(store, prefix).await;
}

/// Empty, 1-byte and 1 MiB + 1 objects read back exactly, with the metadata put returned.
pub async fn round_trip(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "round_trip").await;
    let large: Vec<u8> = (0..(1usize << 20) + 1).map(|i| (i % 251) as u8).collect();
    for (name, bytes) in [("empty", Vec::new()), ("one", vec![7]), ("large", large)] {
        let key = c.key(name);
        let put = c.put(&key, &bytes, PutMode::Overwrite).await;
        c.expect(put.key == key, || format!("put returned key {}", put.key));
        c.expect(put.size == bytes.len() as u64, || {
            format!("put of {name} returned size {}", put.size)
        });
        let (read, meta) = c.ok("get", store.get(&key).await);
        c.expect(read == bytes, || {
            format!("{name} read back different bytes")
        });
        c.expect(meta == put, || {
            format!("get of {name} gave {meta:?}, put {put:?}")
        });
    }
    c.finish().await;
}

/// Head gives the size and version of the last put; a missing key is `NotFound` everywhere.
pub async fn head(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "head").await;
    let key = c.key("object");
    let put = c.put(&key, b"hello", PutMode::Overwrite).await;
    let head = c.ok("head", store.head(&key).await);
    c.expect(head == put, || format!("head gave {head:?}, put {put:?}"));
    let missing = c.key("missing");
    c.not_found("head", store.head(&missing).await);
    c.not_found("get", store.get(&missing).await);
    c.not_found("get_range", store.get_range(&missing, 0..0).await);
    c.finish().await;
}

/// Every put makes a new version, even of identical bytes.
pub async fn overwrite_changes_version(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "overwrite_changes_version").await;
    let key = c.key("object");
    let first = c.put(&key, b"same", PutMode::Overwrite).await;
    let second = c.put(&key, b"same", PutMode::Overwrite).await;
    c.expect(first.version != second.version, || {
        format!("two puts both gave version {}", first.version)
    });
    let head = c.ok("head", store.head(&key).await);
    c.expect(head.version == second.version, || {
        format!(
            "head gave {}, not the last put's {}",
            head.version, second.version
        )
    });
    c.put(&key, b"different", PutMode::Overwrite).await;
    c.expect_bytes(&key, b"different").await;
    c.finish().await;
}

/// Create writes an absent key; on a present one it is `AlreadyExists` and changes nothing.
pub async fn create_only_if_absent(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "create_only_if_absent").await;
    let key = c.key("object");
    let created = c.put(&key, b"first", PutMode::Create).await;
    let refused = store
        .put(&key, Bytes::from_static(b"second"), PutMode::Create)
        .await;
    c.expect(
        matches!(refused, Err(StoreError::AlreadyExists { .. })),
        || format!("a second Create gave {refused:?}, not AlreadyExists"),
    );
    let meta = c.expect_bytes(&key, b"first").await;
    c.expect(meta.version == created.version, || {
        "a refused Create changed the version".into()
    });
    c.finish().await;
}

/// Update writes only at the expected version; a stale or absent one is `Precondition`.
pub async fn update_only_at_version(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "update_only_at_version").await;
    let key = c.key("object");
    let v1 = c.put(&key, b"one", PutMode::Overwrite).await.version;
    let v2 = c
        .put(&key, b"two", PutMode::Update(v1.clone()))
        .await
        .version;
    c.expect(v1 != v2, || format!("Update kept version {v1}"));
    c.precondition(
        "Update at a stale version",
        store
            .put(&key, Bytes::from_static(b"three"), PutMode::Update(v1))
            .await,
    );
    let meta = c.expect_bytes(&key, b"two").await;
    c.expect(meta.version == v2, || {
        "a refused Update changed the version".into()
    });

    let absent = c.key("absent");
    c.precondition(
        "Update of an absent key",
        store
            .put(
                &absent,
                Bytes::from_static(b"x"),
                PutMode::Update(v2.clone()),
            )
            .await,
    );
    c.not_found("get after a refused Update", store.get(&absent).await);
    c.ok("delete", store.delete(&key).await);
    c.precondition(
        "Update of a deleted key",
        store
            .put(&key, Bytes::from_static(b"x"), PutMode::Update(v2))
            .await,
    );
    c.not_found("get after a refused Update", store.get(&key).await);
    c.finish().await;
}

/// Two overlapping Updates from one version, and two overlapping Creates: exactly one wins,
/// the other is refused, and the store holds the winner's bytes.
pub async fn racing_writers(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "racing_writers").await;
    let key = c.key("updated");
    let base = c.put(&key, b"base", PutMode::Overwrite).await.version;
    let (a, b) = both(
        store.put(
            &key,
            Bytes::from_static(b"a"),
            PutMode::Update(base.clone()),
        ),
        store.put(&key, Bytes::from_static(b"b"), PutMode::Update(base)),
    )
    .await;
    c.one_winner(&key, a, b, |e| matches!(e, StoreError::Precondition { .. }))
        .await;

    let key = c.key("created");
    let (a, b) = both(
        store.put(&key, Bytes::from_static(b"a"), PutMode::Create),
        store.put(&key, Bytes::from_static(b"b"), PutMode::Create),
    )
    .await;
    c.one_winner(&key, a, b, |e| {
        matches!(e, StoreError::AlreadyExists { .. })
    })
    .await;
    c.finish().await;
}

/// Ranges at the start, middle and end, empty ones; past the end or reversed is `InvalidRange`.
pub async fn ranges(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "ranges").await;
    let key = c.key("digits");
    c.put(&key, b"0123456789", PutMode::Overwrite).await;
    for (range, expected) in [
        (0..3, &b"012"[..]),
        (3..7, &b"3456"[..]),
        (7..10, &b"789"[..]),
        (0..10, &b"0123456789"[..]),
        (4..4, &b""[..]),
        (10..10, &b""[..]),
    ] {
        let read = c.ok("get_range", store.get_range(&key, range.clone()).await);
        c.expect(read == expected, || {
            format!("range {range:?} read {read:?}")
        });
    }
    let reversed = std::ops::Range { start: 6, end: 5 };
    for range in [5..11, 11..12, reversed] {
        let result = store.get_range(&key, range.clone()).await;
        c.expect(
            matches!(&result, Err(StoreError::InvalidRange { size: 10, .. })),
            || format!("range {range:?} gave {result:?}, not InvalidRange of size 10"),
        );
    }
    let empty = c.key("empty");
    c.put(&empty, b"", PutMode::Overwrite).await;
    let read = c.ok("get_range", store.get_range(&empty, 0..0).await);
    c.expect(read.is_empty(), || {
        "0..0 of an empty object was not empty".into()
    });
    c.finish().await;
}

/// List is a plain string prefix (a partial segment matches), recursive, sorted by key bytes,
/// and gives each object's head.
pub async fn listing(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "listing").await;
    // In byte order; `-` < `/` < `0`, so a folder walk in name order would get it wrong.
    let names = ["a/b/c", "a/b/d/e", "a/bc", "ab", "s/a-b", "s/a/b", "s/a0"];
    for name in names.iter().rev() {
        c.put(&c.key(name), name.as_bytes(), PutMode::Overwrite)
            .await;
    }
    for (under, expected) in [
        ("", &names[..]),
        ("a/b", &names[..3]),
        ("a/b/", &names[..2]),
        ("a/b/d/e", &names[1..2]),
        ("a", &names[..4]),
        ("s/", &names[4..]),
        ("zzz", &names[..0]),
    ] {
        let listed = c.ok("list", store.list(&format!("{}{under}", c.base)).await);
        let keys: Vec<&str> = listed
            .iter()
            .map(|m| &m.key.as_str()[c.base.len()..])
            .collect();
        c.expect(keys == expected, || {
            format!("list {under:?} gave {keys:?}, not {expected:?}")
        });
        for meta in &listed {
            let head = c.ok("head", store.head(&meta.key).await);
            c.expect(*meta == head, || {
                format!("list gave {meta:?}, head {head:?}")
            });
        }
    }
    c.finish().await;
}

/// A deleted object is gone; deleting an absent one is fine; its key can be created again.
pub async fn deletion(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "deletion").await;
    let key = c.key("dir/object");
    c.put(&key, b"x", PutMode::Overwrite).await;
    c.ok("delete", store.delete(&key).await);
    c.not_found("get after delete", store.get(&key).await);
    c.not_found("head after delete", store.head(&key).await);
    let listed = c.ok("list", store.list(&c.base).await);
    c.expect(listed.is_empty(), || {
        format!("list after delete gave {listed:?}")
    });
    c.ok("delete of a deleted key", store.delete(&key).await);
    c.ok(
        "delete of a never-written key",
        store.delete(&c.key("never")).await,
    );
    c.put(&key, b"again", PutMode::Create).await;
    c.expect_bytes(&key, b"again").await;
    c.finish().await;
}

/// Keys with spaces, `+`, `%`, punctuation and non-ASCII letters round-trip and list exactly.
pub async fn unusual_keys(store: &dyn ObjectStore, prefix: &str) {
    let c = Check::start(store, prefix, "unusual_keys").await;
    let mut names = [
        "with space/and+plus",
        "percent%20not%2Fdecoded",
        "ünïcødé/日本語/✓.csv",
        "punct ~!@#$&()=,;'[]{}",
        ".dot/..dots",
        "+",
    ];
    for name in names {
        c.put(&c.key(name), name.as_bytes(), PutMode::Overwrite)
            .await;
        c.expect_bytes(&c.key(name), name.as_bytes()).await;
    }
    names.sort_unstable();
    let listed = c.ok("list", store.list(&c.base).await);
    let keys: Vec<&str> = listed
        .iter()
        .map(|m| &m.key.as_str()[c.base.len()..])
        .collect();
    c.expect(keys == names, || {
        format!("list gave {keys:?}, not {names:?}")
    });
    c.finish().await;
}

/// Polls two futures in turn until both are done, so their requests overlap on a store that
/// yields (no executor or extra crate needed).
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut done_a, mut done_b) = (None, None);
    poll_fn(|cx| {
        if done_a.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            done_a = Some(out);
        }
        if done_b.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            done_b = Some(out);
        }
        match (done_a.take(), done_b.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (done_a, done_b) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// One check's context: its store, its name and its key space.
struct Check<'a> {
    store: &'a dyn ObjectStore,
    name: &'static str,
    base: String,
}

impl<'a> Check<'a> {
    async fn start(store: &'a dyn ObjectStore, prefix: &str, name: &'static str) -> Check<'a> {
        let check = Check {
            store,
            name,
            base: format!("{prefix}{name}/"),
        };
        check.clear().await;
        check
    }

    async fn finish(self) {
        self.clear().await;
    }

    async fn clear(&self) {
        for meta in self.ok("list", self.store.list(&self.base).await) {
            self.ok("delete", self.store.delete(&meta.key).await);
        }
    }

    fn fail(&self, message: impl Display) -> ! {
        panic!(
            "{}: conformance check `{}` failed: {message}",
            self.store.describe(),
            self.name
        )
    }

    fn expect(&self, holds: bool, message: impl FnOnce() -> String) {
        if !holds {
            self.fail(message())
        }
    }

    fn ok<T>(&self, what: &str, result: Result<T, StoreError>) -> T {
        result.unwrap_or_else(|e| self.fail(format!("{what}: {e}")))
    }

    fn not_found<T: std::fmt::Debug>(&self, what: &str, result: Result<T, StoreError>) {
        self.expect(matches!(result, Err(StoreError::NotFound { .. })), || {
            format!("{what} gave {result:?}, not NotFound")
        });
    }

    fn precondition<T: std::fmt::Debug>(&self, what: &str, result: Result<T, StoreError>) {
        self.expect(
            matches!(result, Err(StoreError::Precondition { .. })),
            || format!("{what} gave {result:?}, not Precondition"),
        );
    }

    fn key(&self, rest: &str) -> ObjectKey {
        self.ok("key", ObjectKey::new(format!("{}{rest}", self.base)))
    }

    async fn put(&self, key: &ObjectKey, bytes: &[u8], mode: PutMode) -> ObjectMeta {
        let what = format!("put {key} ({mode:?})");
        self.ok(
            &what,
            self.store
                .put(key, Bytes::copy_from_slice(bytes), mode)
                .await,
        )
    }

    /// Reads `key`, which must hold `bytes`; returns its metadata.
    async fn expect_bytes(&self, key: &ObjectKey, bytes: &[u8]) -> ObjectMeta {
        let (read, meta) = self.ok("get", self.store.get(key).await);
        self.expect(read == bytes, || {
            format!(
                "{key} holds {:?}, not {:?}",
                String::from_utf8_lossy(&read),
                String::from_utf8_lossy(bytes)
            )
        });
        meta
    }

    /// Of two racing puts of `a` and `b`, exactly one succeeded, the other was `refused`, and
    /// the key holds the winner's bytes at the winner's version.
    async fn one_winner(
        &self,
        key: &ObjectKey,
        a: Result<ObjectMeta, StoreError>,
        b: Result<ObjectMeta, StoreError>,
        refused: impl Fn(&StoreError) -> bool,
    ) {
        let (winner, bytes) = match (a, b) {
            (Ok(won), Err(e)) if refused(&e) => (won, b"a"),
            (Err(e), Ok(won)) if refused(&e) => (won, b"b"),
            (a, b) => self.fail(format!("racing puts of {key} gave {a:?} and {b:?}")),
        };
        let meta = self.expect_bytes(key, bytes).await;
        self.expect(meta == winner, || {
            format!("{key} is at {meta:?}, the winner put {winner:?}")
        });
    }
}
