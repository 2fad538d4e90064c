//! Kubernetes REST paths: which resource, namespace, object and subresource a
//! request addresses.

/// A resource type: `group/version` (core: `v1`) and plural.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// `v1`, `apps/v1`, `kubernaut.ai/v1alpha1`, …
    pub group_version: String,
    /// `pods`, `leases`, `remediationrequests`, …
    pub plural: String,
}

impl Resource {
    /// The API group (`""` for core).
    pub fn group(&self) -> &str {
        self.group_version
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    /// Whether this is a custom resource (served from a CRD): any group with a
    /// dot that is not one of Kubernetes' own `*.k8s.io` groups.
    pub fn is_custom(&self) -> bool {
        let group = self.group();
        group.contains('.') && !group.ends_with(".k8s.io")
    }

    /// Whether writes to the main resource ignore `status` (and the `status`
    /// subresource ignores everything else). True for custom resources (the
    /// workspace's CRD declares the subresource) and for the built-in kinds
    /// that have one; Leases, ConfigMaps, Secrets, Events and reviews do not.
    pub fn has_status_subresource(&self) -> bool {
        !matches!(
            self.plural.as_str(),
            "leases"
                | "configmaps"
                | "secrets"
                | "events"
                | "serviceaccounts"
                | "tokenreviews"
                | "subjectaccessreviews"
                | "endpointslices"
                | "roles"
                | "rolebindings"
                | "clusterroles"
                | "clusterrolebindings"
        )
    }
}

/// What one request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resource type.
    pub resource: Resource,
    /// The namespace (`None`: cluster-scoped or all namespaces).
    pub namespace: Option<String>,
    /// The object's name (`None`: the collection).
    pub name: Option<String>,
    /// `status`, when the status subresource is addressed.
    pub subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...`.
pub fn parse(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let resource = |plural: &str| Resource {
        group_version: group_version.clone(),
        plural: plural.to_owned(),
    };
    let some = |s: &&str| Some((*s).to_owned());
    let target = match rest {
        ["namespaces", ns, plural] => Target {
            resource: resource(plural),
            namespace: some(ns),
            name: None,
            subresource: None,
        },
        ["namespaces", ns, plural, name] => Target {
            resource: resource(plural),
            namespace: some(ns),
            name: some(name),
            subresource: None,
        },
        ["namespaces", ns, plural, name, sub] => Target {
            resource: resource(plural),
            namespace: some(ns),
            name: some(name),
            subresource: some(sub),
        },
        [plural] => Target {
            resource: resource(plural),
            namespace: None,
            name: None,
            subresource: None,
        },
        [plural, name] => Target {
            resource: resource(plural),
            namespace: None,
            name: some(name),
            subresource: None,
        },
        [plural, name, sub] => Target {
            resource: resource(plural),
            namespace: None,
            name: some(name),
            subresource: some(sub),
        },
        _ => return None,
    };
    Some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_cluster_scoped_and_status_paths_parse() {
        let t = parse("/apis/kubernaut.ai/v1alpha1/namespaces/ns/remediationrequests/rr-1/status")
            .unwrap();
        assert_eq!(t.resource.group(), "kubernaut.ai");
        assert!(t.resource.is_custom());
        assert_eq!(t.namespace.as_deref(), Some("ns"));
        assert_eq!(t.name.as_deref(), Some("rr-1"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse("/api/v1/pods").unwrap();
        assert_eq!(t.resource.group(), "");
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = parse("/apis/coordination.k8s.io/v1/namespaces/ns/leases").unwrap();
        assert!(!t.resource.is_custom());
        assert!(!t.resource.has_status_subresource());
        assert!(parse("/healthz").is_none());
    }
}
