//! The Kubernetes verbs routes require, as in RBAC rules on `services`.

use serde::{Deserialize, Serialize};

/// A verb on the service's own Service object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// Writing events, posting signals.
    Create,
    /// Querying events.
    List,
    /// Reading one event, verifying a chain.
    Get,
    /// Placing and releasing legal holds.
    Update,
}

impl Verb {
    /// This verb alone, as a verb list.
    pub fn alone(self) -> &'static [Verb] {
        match self {
            Self::Create => &[Self::Create],
            Self::List => &[Self::List],
            Self::Get => &[Self::Get],
            Self::Update => &[Self::Update],
        }
    }

    /// The RBAC spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::List => "list",
            Self::Get => "get",
            Self::Update => "update",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
