//! `audit.v1.AuditIngest/StoreBatch` over HTTP/2.

use async_trait::async_trait;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::{refusal, Ack, SendError, Transport};
use crate::config::AuditConfig;
use crate::event::AuditEvent;
use crate::proto::{self, v1};

/// The gRPC transport. The channel connects lazily and reconnects by itself.
#[derive(Debug)]
pub struct GrpcTransport {
    client: v1::audit_ingest_client::AuditIngestClient<Channel>,
    url: String,
}

impl GrpcTransport {
    /// A lazily connecting channel to `config.data_storage_url`.
    pub fn new(config: &AuditConfig, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut endpoint = Endpoint::from_shared(config.data_storage_url.clone())
            .map_err(|e| format!("data_storage_url: {e}"))?
            .timeout(config.request_timeout)
            .connect_timeout(
                config
                    .request_timeout
                    .min(std::time::Duration::from_secs(5)),
            );
        if config.data_storage_url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_enabled_roots();
            if let Some(pem) = ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
        }
        let client = v1::audit_ingest_client::AuditIngestClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        Ok(Self {
            client,
            url: config.data_storage_url.clone(),
        })
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    async fn send(&self, events: &[AuditEvent], token: Option<&str>) -> Result<Ack, SendError> {
        let mut request = tonic::Request::new(v1::StoreBatchRequest {
            events: events.iter().map(v1::AuditEvent::from).collect(),
        });
        if let Some(token) = token {
            let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                SendError::Unauthorized {
                    reason: "token contains characters not allowed in a header".into(),
                }
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        match self.client.clone().store_batch(request).await {
            Ok(resp) => {
                let body = resp.into_inner();
                Ok(Ack {
                    created: body.created,
                    duplicates: body.duplicates,
                })
            }
            Err(status) => Err(classify(&status, events.len())),
        }
    }

    fn target(&self) -> String {
        format!("{} (gRPC audit.v1.AuditIngest/StoreBatch)", self.url)
    }
}

/// gRPC status → classification. `InvalidArgument` with DataStorage's
/// validation problem in the details sets the named events aside; every other
/// non-transient code (`Unimplemented`, `NotFound` from a mesh or a wrong port,
/// ...) says nothing about the events and is retried.
pub(crate) fn classify(status: &tonic::Status, batch_len: usize) -> SendError {
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unauthenticated => SendError::Unauthorized { reason },
        Code::PermissionDenied => SendError::Forbidden { reason },
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Unimplemented => refusal(
            http_equivalent(status.code()),
            proto::problem_from_status(status),
            format!("gRPC {reason}"),
            batch_len,
        ),
        // Unavailable, DeadlineExceeded, ResourceExhausted, Aborted, Internal,
        // Unknown, Cancelled, DataLoss: the server or the path to it is unwell.
        _ => SendError::Transient {
            reason,
            retry_after: None,
        },
    }
}

fn http_equivalent(code: Code) -> u16 {
    match code {
        Code::NotFound => 404,
        Code::AlreadyExists => 409,
        Code::Unimplemented => 501,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{FieldError, Problem, ProblemType};

    #[test]
    fn unimplemented_and_not_found_are_misrouted_not_invalid() {
        for code in [Code::Unimplemented, Code::NotFound, Code::InvalidArgument] {
            let status = tonic::Status::new(code, "no such service");
            assert!(
                matches!(classify(&status, 3), SendError::Misrouted { .. }),
                "{code:?}"
            );
        }
    }

    #[test]
    fn invalid_argument_with_the_validation_problem_names_the_indexes() {
        let problem = Problem::new(ProblemType::ValidationError, "bad")
            .with_errors(vec![FieldError::new("retention_days", "x").at(2)]);
        let status = tonic::Status::with_details(
            Code::InvalidArgument,
            "invalid",
            serde_json::to_vec(&problem).unwrap().into(),
        );
        assert!(matches!(
            classify(&status, 3),
            SendError::Invalid { indexes, .. } if indexes == vec![2]
        ));
    }
}
