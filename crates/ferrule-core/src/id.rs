//! Identifiers chosen by users (tenants, devices).
//!
//! They appear inside MQTT topics (`devices/{id}/telemetry`), in logins
//! (`DEVICE@TENANT`) and in URLs, so the alphabet is deliberately narrow:
//! ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit.
//! That keeps `/`, `+`, `#`, `@` and whitespace out by construction.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest id accepted; long enough for serial numbers and MAC-derived ids.
pub const MAX_ID_LEN: usize = 64;

/// The id alphabet as a regular expression, for API documents (the length
/// bound is [`MAX_ID_LEN`]); [`validate_slug`] is the rule itself.
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";

/// Why a proposed id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_LEN} characters")]
    TooLong,
    #[error("must start with a letter or digit")]
    BadStart,
    #[error("may contain only letters, digits, '-', '_' and '.' (found {0:?})")]
    BadChar(char),
}

/// Checks the id alphabet shared by tenants and devices.
pub fn validate_slug(s: &str) -> Result<(), IdError> {
    let first = s.chars().next().ok_or(IdError::Empty)?;
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !first.is_ascii_alphanumeric() {
        return Err(IdError::BadStart);
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        // Arc<str>: ids ride on every message; cloning must not allocate.
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate_slug(&s)?;
                Ok(Self(Arc::from(s)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

slug_id!(
    /// A tenant's id, e.g. `default` or `acme`.
    TenantId
);
slug_id!(
    /// A device's id, unique within its tenant, e.g. `pump-17`.
    DeviceId
);

impl TenantId {
    /// The tenant created on first start; single-tenant users never see another.
    pub fn default_tenant() -> Self {
        Self(Arc::from("default"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_typical_ids() {
        for ok in ["default", "pump-17", "AA.BB_cc", "0", &"x".repeat(64)] {
            assert!(DeviceId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_topic_and_login_metacharacters() {
        assert_eq!(DeviceId::new(""), Err(IdError::Empty));
        assert_eq!(DeviceId::new("-a"), Err(IdError::BadStart));
        assert_eq!(DeviceId::new("x".repeat(65)), Err(IdError::TooLong));
        for (bad, c) in [
            ("a/b", '/'),
            ("a+", '+'),
            ("a#", '#'),
            ("a@b", '@'),
            ("a b", ' '),
        ] {
            assert_eq!(DeviceId::new(bad), Err(IdError::BadChar(c)));
        }
    }

    proptest! {
        #[test]
        fn valid_ids_never_contain_topic_separators(s in "\\PC{0,80}") {
            if let Ok(id) = DeviceId::new(s) {
                prop_assert!(!id.as_str().contains(['/', '+', '#', '@', '$']));
            }
        }

        #[test]
        fn what_the_documented_pattern_matches_is_valid(
            s in proptest::string::string_regex(
                &ID_PATTERN.trim_start_matches('^').trim_end_matches('$').replace('*', "{0,63}")
            ).unwrap()
        ) {
            prop_assert!(DeviceId::new(s).is_ok());
        }
    }
}
