//! `audit.v1.AuditIngest/StoreBatch` over HTTP/2.

use async_trait::async_trait;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::{Ack, SendError, Transport};
use crate::config::AuditConfig;
use crate::event::AuditEvent;
use crate::proto::{self, v1};

/// The gRPC transport. The channel connects lazily and reconnects by itself.
#[derive(Debug)]
pub struct GrpcTransport {
    client: v1::audit_ingest_client::AuditIngestClient<Channel>,
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
        Ok(Self { client })
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
            Err(status) => Err(classify(&status)),
        }
    }
}

fn classify(status: &tonic::Status) -> SendError {
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unauthenticated => SendError::Unauthorized { reason },
        Code::PermissionDenied => SendError::Forbidden { reason },
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Unimplemented => SendError::Permanent {
            status: http_equivalent(status.code()),
            reason,
            problem: proto::problem_from_status(status).map(Box::new),
        },
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
