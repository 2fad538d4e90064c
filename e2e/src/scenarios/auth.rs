//! Scenario 2: who may do what. No token → 401; the reader cannot write and
//! the writer cannot query (403); the writer can write and the reader can query.

use anyhow::ensure;
use audit_sdk::AuditEvent;
use reqwest::RequestBuilder;

use super::client::{alert, unique, Stack};

async fn status(request: RequestBuilder) -> anyhow::Result<u16> {
    Ok(request.send().await?.status().as_u16())
}

pub async fn run(stack: &Stack) -> anyhow::Result<()> {
    let correlation = unique("e2e-auth");
    let batch = vec![AuditEvent::builder("e2e.auth.checked", &correlation)
        .category("e2e")
        .action("check")
        .actor("service", "e2e")
        .resource("scenario", "auth")
        .build()];
    let write = || {
        stack
            .http
            .post(stack.data_storage("/api/v1/audit/events/batch"))
            .json(&batch)
    };
    let query = || {
        stack
            .http
            .get(stack.data_storage("/api/v1/audit/events"))
            .query(&[("correlation_id", &correlation)])
    };
    let tokens = &stack.tokens;

    let checks = [
        ("write without a token", status(write()).await?, 401),
        ("query without a token", status(query()).await?, 401),
        (
            "signal without a token",
            status(
                stack
                    .http
                    .post(stack.gateway("/api/v1/signals/prometheus"))
                    .json(&alert(&unique("auth"))),
            )
            .await?,
            401,
        ),
        (
            "write as the reader",
            status(write().bearer_auth(&tokens.reader)).await?,
            403,
        ),
        (
            "query as the writer",
            status(query().bearer_auth(&tokens.writer)).await?,
            403,
        ),
        (
            "write as the writer",
            status(write().bearer_auth(&tokens.writer)).await?,
            201,
        ),
        (
            "query as the reader",
            status(query().bearer_auth(&tokens.reader)).await?,
            200,
        ),
    ];
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: {got}, expected {want}"))
        .collect();
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));

    let stored = stack.trail(&correlation).await?;
    ensure!(
        stored.len() == 1,
        "the writer's event is readable: {} found",
        stored.len()
    );
    Ok(())
}
