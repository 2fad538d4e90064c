//! Who made an authenticated request.

/// Prefix of Kubernetes ServiceAccount user names.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The authenticated caller, inserted into request extensions by the middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name (`system:serviceaccount:<ns>:<name>` for ServiceAccounts).
    pub subject: String,
    /// Groups the caller belongs to.
    pub groups: Vec<String>,
}

impl Identity {
    /// Whether the caller is a ServiceAccount (a workload) rather than a person.
    pub fn is_service_account(&self) -> bool {
        self.subject.starts_with(SERVICE_ACCOUNT_PREFIX)
    }
}
