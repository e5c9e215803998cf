//! Roles and what each may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's or API key's role. `Admin` spans the whole instance; the others are
/// scoped to one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Owner, Role::Editor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    /// May create, change and delete devices, rules, dashboards, data.
    pub fn can_write(self) -> bool {
        self >= Role::Editor
    }

    /// May manage users and API keys of the tenant.
    pub fn can_manage_access(self) -> bool {
        self >= Role::Owner
    }

    /// May manage tenants and act in any tenant.
    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }

    /// A caller may hand out only roles up to its own: an owner cannot mint an
    /// admin key.
    pub fn can_grant(self, other: Role) -> bool {
        self.can_manage_access() && other <= self
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `admin`, `owner`, `editor`, `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, owner, editor or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_follow_the_ladder() {
        assert!(!Role::Viewer.can_write());
        assert!(Role::Editor.can_write());
        assert!(!Role::Editor.can_manage_access());
        assert!(Role::Owner.can_grant(Role::Editor));
        assert!(!Role::Owner.can_grant(Role::Admin));
        assert!(Role::Admin.can_grant(Role::Admin));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
