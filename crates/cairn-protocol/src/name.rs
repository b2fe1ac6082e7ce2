//! Package names and namespaces.
//!
//! SPEC: warg-protocol registry.rs `PackageName::new` — split at the last
//! `:`; both parts are kebab-case words `[a-z][a-z0-9]*` joined by single
//! `-`, with no uppercase. cairn also limits lengths.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The longest namespace cairn accepts, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// The longest full package name (`namespace:name`) cairn accepts, in bytes.
pub const MAX_PACKAGE_NAME_LEN: usize = 128;

/// Why a package name or namespace was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// Not of the form `<namespace>:<name>` with lowercase kebab-case parts.
    #[error(
        "invalid package name `{0}`: expected format is `<namespace>:<name>` using lowercased characters"
    )]
    Invalid(String),
    /// Longer than the limit.
    #[error("package name or namespace is longer than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
}

/// Whether `s` is a non-empty lowercase kebab-case string:
/// `[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*`.
pub fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|word| {
            let mut chars = word.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Whether `namespace` is a valid warg namespace (and within cairn's limit).
pub fn is_valid_namespace(namespace: &str) -> bool {
    namespace.len() <= MAX_NAMESPACE_LEN && is_kebab(namespace)
}

/// The skeleton of a namespace, for the confusable-name rule: the name
/// without `-`, with look-alike characters folded (`0`→`o`, `1`/`i`→`l`,
/// `5`→`s`, `rn`→`m`, `vv`→`w`). Two namespaces with one skeleton are
/// confusable (`my-org`, `myorg`, `my-0rg`, `rny-org`).
pub fn namespace_skeleton(namespace: &str) -> String {
    let folded: String = namespace
        .chars()
        .filter(|c| *c != '-')
        .map(|c| match c {
            '0' => 'o',
            '1' | 'i' => 'l',
            '5' => 's',
            other => other,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w")
}

/// A validated package name `namespace:name`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName {
    full: String,
    colon: usize,
}

impl PackageName {
    /// Validates a package name.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let full = name.into();
        if full.len() > MAX_PACKAGE_NAME_LEN {
            return Err(NameError::TooLong {
                limit: MAX_PACKAGE_NAME_LEN,
            });
        }
        let Some(colon) = full.rfind(':') else {
            return Err(NameError::Invalid(full));
        };
        let (namespace, rest) = (&full[..colon], &full[colon + 1..]);
        if namespace.len() > MAX_NAMESPACE_LEN {
            return Err(NameError::TooLong {
                limit: MAX_NAMESPACE_LEN,
            });
        }
        if !is_kebab(namespace) || !is_kebab(rest) {
            return Err(NameError::Invalid(full));
        }
        Ok(Self { full, colon })
    }

    /// The namespace part.
    pub fn namespace(&self) -> &str {
        &self.full[..self.colon]
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.full[self.colon + 1..]
    }

    /// `namespace:name`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageName({})", self.full)
    }
}

impl FromStr for PackageName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl serde::Serialize for PackageName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for PackageName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects_like_the_reference() {
        for good in ["a:b", "my-org:my-pkg2", "wasi:http", "x1:y-z3"] {
            assert!(PackageName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", ":b", "a:", "A:b", "a:B", "a:b:c", "a-:b", "-a:b", "a--b:c", "1a:b", "a:b_c",
            "a:b.c", "a :b", "a:é",
        ] {
            assert!(PackageName::new(bad).is_err(), "{bad}");
        }
        let name = PackageName::new("my-org:pkg").unwrap();
        assert_eq!((name.namespace(), name.name()), ("my-org", "pkg"));
    }

    #[test]
    fn over_long_names_are_typed_errors() {
        let long_ns = format!("{}:x", "a".repeat(65));
        assert_eq!(
            PackageName::new(long_ns),
            Err(NameError::TooLong { limit: 64 })
        );
        let long = format!("a:{}", "b".repeat(200));
        assert_eq!(
            PackageName::new(long),
            Err(NameError::TooLong { limit: 128 })
        );
        assert!(!is_valid_namespace(&"a".repeat(65)));
    }
}
