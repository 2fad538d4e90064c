//! The test callers' bearer tokens, from the TokenRequest API.
//!
//! The ServiceAccounts and their RBAC are in
//! `deploy/overlays/kind/e2e-clients.yaml`: the writer may only `create` on
//! `services/data-storage-service`, the reader only `list` and `get`, the
//! signal sender only `create` on `services/gateway-service`. Tokens are
//! short-lived, bound to nothing but the ServiceAccount, and never written
//! anywhere (not even to the artefact directory).

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::platform::Tokens;

/// Writes audit events (`create`), nothing else.
pub const WRITER_SERVICE_ACCOUNT: &str = "e2e-writer";
/// Queries and reads audit events (`list`, `get`), nothing else.
pub const READER_SERVICE_ACCOUNT: &str = "e2e-reader";
/// Posts signals to the Gateway (`create` on its Service).
pub const SIGNAL_SENDER_SERVICE_ACCOUNT: &str = "e2e-signal-sender";

/// Lifetime asked for: longer than a whole e2e run.
pub const TOKEN_LIFETIME_SECONDS: i64 = 2 * 60 * 60;

/// Requests one token per test caller in `namespace`.
pub async fn request_tokens(client: &Client, namespace: &str) -> anyhow::Result<Tokens> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    Ok(Tokens {
        writer: request_token(&api, namespace, WRITER_SERVICE_ACCOUNT).await?,
        reader: request_token(&api, namespace, READER_SERVICE_ACCOUNT).await?,
        signal_sender: request_token(&api, namespace, SIGNAL_SENDER_SERVICE_ACCOUNT).await?,
    })
}

async fn request_token(
    api: &Api<ServiceAccount>,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            // No audiences: the API server's own, which TokenReview accepts by default.
            audiences: None,
            expiration_seconds: Some(TOKEN_LIFETIME_SECONDS),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let answer = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "TokenRequest for ServiceAccount {namespace}/{name} failed: {e} \
                 (is deploy/overlays/kind/e2e-clients.yaml applied?)"
            )
        })?;
    answer
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("TokenRequest for ServiceAccount {namespace}/{name} returned no token")
        })
}
