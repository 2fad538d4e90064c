//! The test callers' bearer tokens, from the TokenRequest API.
//!
//! The ServiceAccounts and their RBAC are in
//! `deploy/overlays/kind/e2e-clients.yaml`: the writer may only `create` on
//! `services/data-storage-service`, the reader only `list` and `get`, the
//! signal sender only `create` on `services/gateway-service`. Tokens are
//! short-lived, bound to the audience of the service they call (its Service
//! name, as the services' projected tokens are), and never written anywhere
//! (not even to the artefact directory).

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};

use audit_sdk::names::{DATA_STORAGE_SERVICE, GATEWAY_SERVICE};

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
        writer: request_token(
            &api,
            namespace,
            WRITER_SERVICE_ACCOUNT,
            DATA_STORAGE_SERVICE,
        )
        .await?,
        reader: request_token(
            &api,
            namespace,
            READER_SERVICE_ACCOUNT,
            DATA_STORAGE_SERVICE,
        )
        .await?,
        signal_sender: request_token(
            &api,
            namespace,
            SIGNAL_SENDER_SERVICE_ACCOUNT,
            GATEWAY_SERVICE,
        )
        .await?,
    })
}

async fn request_token(
    api: &Api<ServiceAccount>,
    namespace: &str,
    name: &str,
    audience: &str,
) -> anyhow::Result<String> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            // The called service's audience: a token for DataStorage is refused
            // by the API server and the Gateway, and the other way round.
            audiences: Some(vec![audience.to_owned()]),
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
