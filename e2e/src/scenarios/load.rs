//! An open-loop stream of alerts: one alert per tick whatever the Gateway is
//! doing, so a stalled or stopping Gateway shows up in the answers instead of
//! slowing the sender down.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::client::{alert, Answer, Stack};

/// A running stream of alerts.
#[derive(Debug)]
pub struct Load {
    /// How many alerts have been sent so far.
    pub sent: watch::Receiver<usize>,
    handle: JoinHandle<Vec<Answer>>,
}

impl Load {
    /// Sends `count` alerts about distinct deployments `<prefix>-<i>` at
    /// `per_second`.
    pub fn start(stack: &Stack, prefix: &str, count: usize, per_second: u32) -> Self {
        let (progress, sent) = watch::channel(0);
        let (stack, prefix) = (stack.clone(), prefix.to_owned());
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut inflight = JoinSet::new();
            for i in 0..count {
                ticker.tick().await;
                let (stack, target) = (stack.clone(), format!("{prefix}-{i}"));
                inflight.spawn(async move { (i, stack.send(&alert(&target)).await) });
                progress.send_replace(i + 1);
            }
            let mut answers: Vec<(usize, Answer)> = inflight.join_all().await;
            answers.sort_by_key(|(i, _)| *i);
            answers.into_iter().map(|(_, a)| a).collect()
        });
        Self { sent, handle }
    }

    /// Waits until at least `n` alerts have been sent.
    pub async fn wait_sent(&mut self, n: usize) -> anyhow::Result<()> {
        self.sent
            .wait_for(|sent| *sent >= n)
            .await
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("the load stopped before {n} alerts were sent"))
    }

    /// Every answer, in send order, once all alerts are answered.
    pub async fn finish(self) -> anyhow::Result<Vec<Answer>> {
        Ok(self.handle.await?)
    }
}

/// The RemediationRequests of every 2xx answer.
pub fn answered_requests(answers: &[Answer]) -> Vec<String> {
    answers
        .iter()
        .filter_map(|a| a.request().map(str::to_owned))
        .collect()
}
