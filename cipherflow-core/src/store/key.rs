//! Object keys, validated once so that no store can be walked out of.

use std::fmt;

use super::StoreError;

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A valid object key: `/`-separated segments of UTF-8, each non-empty and neither `.` nor
/// `..`; no leading `/`, no `\`, no control characters; at most 1024 bytes. Any such key
/// maps to a path inside a local store's folder and to the same S3 key, so a key read from
/// an event, a manifest or a command line cannot escape the store it names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<ObjectKey, StoreError> {
        let key = key.into();
        match check(&key) {
            Ok(()) => Ok(ObjectKey(key)),
            Err(reason) => Err(StoreError::InvalidKey { key, reason }),
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/rest`, validated.
    pub fn join(&self, rest: &str) -> Result<ObjectKey, StoreError> {
        ObjectKey::new(format!("{}/{rest}", self.0))
    }

    /// The segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn check(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return Err("absolute (starts with '/')");
    }
    if key.contains('\\') {
        return Err("contains '\\'");
    }
    if key.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("has an empty segment ('//' or a trailing '/')"),
            "." | ".." => return Err("has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = StoreError;
    fn try_from(key: &str) -> Result<ObjectKey, StoreError> {
        ObjectKey::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\0b",
            "a\nb",
            ".",
        ] {
            assert!(
                matches!(ObjectKey::new(bad), Err(StoreError::InvalidKey { .. })),
                "{bad:?} was accepted"
            );
        }
        assert!(ObjectKey::new("x".repeat(1025)).is_err());
    }

    #[test]
    fn ordinary_keys_pass() {
        for good in [
            "a",
            "landing/dbo/customers/20141029-1134010000.csv",
            "with space/and+plus/ünïcode",
            "..a/b..",
            ".hidden",
        ] {
            assert_eq!(ObjectKey::new(good).unwrap().as_str(), good);
        }
        assert_eq!(
            ObjectKey::new("a").unwrap().join("b/c").unwrap().as_str(),
            "a/b/c"
        );
        assert!(ObjectKey::new("a").unwrap().join("../b").is_err());
    }
}
