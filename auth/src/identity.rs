//! Who made an authenticated request.

/// Prefix of Kubernetes ServiceAccount user names.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The authenticated caller, inserted into request extensions by the middleware.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// User name (`system:serviceaccount:<ns>:<name>` for ServiceAccounts).
    pub subject: String,
    /// Groups the caller belongs to.
    pub groups: Vec<String>,
    /// The user's uid, when the authenticator gave one (Kubernetes: the
    /// ServiceAccount's uid), passed on to authorization.
    pub uid: Option<String>,
    /// Extra attributes from the authenticator (Kubernetes: the bound Pod's
    /// name and uid, …), passed on to authorization.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// Whether the caller is a ServiceAccount (a workload) rather than a person.
    pub fn is_service_account(&self) -> bool {
        self.subject.starts_with(SERVICE_ACCOUNT_PREFIX)
    }
}
