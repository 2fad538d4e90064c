//! [`EventStore::export_chunks`](crate::store::EventStore::export_chunks) on
//! PostgreSQL: one REPEATABLE READ read-only transaction, keyset chunks on
//! `(correlation_id, chain_seq)` (index `audit_events_by_chain`).

use super::{
    classify, filter_sql, read_snapshot, rows_to_events, where_sql, Param, PostgresStore,
    SELECT_COLUMNS,
};
use crate::domain::chain::ChainHead;
use crate::domain::query::EventQuery;
use crate::store::{ExportChunk, ExportChunks, StoreError};

impl PostgresStore {
    pub(super) async fn export_chunks_impl(
        &self,
        query: &EventQuery,
        chunk_size: usize,
    ) -> Result<ExportChunks, StoreError> {
        let mut client = self.client().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let query = query.clone();
        let chunk_size = chunk_size.max(1);
        tokio::spawn(async move {
            let read = async {
                let db = read_snapshot(&mut client).await?;
                let head_stmt = db
                    .prepare_cached(
                        "SELECT chain_seq, event_hash FROM audit_chain_heads \
                         WHERE correlation_id = $1",
                    )
                    .await
                    .map_err(classify)?;
                let (clauses, args) = filter_sql(&query);
                let n = args.len();
                // Two statement shapes per filter shape: the first chunk skips
                // `offset` rows, the later ones continue after the last row.
                let first_sql = format!(
                    "SELECT {SELECT_COLUMNS} FROM audit_events {} \
                     ORDER BY correlation_id, chain_seq LIMIT ${} OFFSET ${}",
                    where_sql(&clauses),
                    n + 1,
                    n + 2
                );
                let mut keyset = clauses.clone();
                keyset.push(format!(
                    "(correlation_id, chain_seq) > (${}, ${})",
                    n + 1,
                    n + 2
                ));
                let next_sql = format!(
                    "SELECT {SELECT_COLUMNS} FROM audit_events {} \
                     ORDER BY correlation_id, chain_seq LIMIT ${}",
                    where_sql(&keyset),
                    n + 3
                );
                let first_stmt = db.prepare_cached(&first_sql).await.map_err(classify)?;
                let next_stmt = db.prepare_cached(&next_sql).await.map_err(classify)?;
                let mut left = query.limit;
                let mut after: Option<(String, i64)> = None;
                let mut last_corr: Option<String> = None;
                while left > 0 {
                    let take = left.min(chunk_size) as i64;
                    let offset = query.offset as i64;
                    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                        args.iter().map(|a: &Param| a.as_ref() as _).collect();
                    let rows = match &after {
                        None => {
                            params.push(&take);
                            params.push(&offset);
                            db.query(&first_stmt, &params).await
                        }
                        Some((corr, seq)) => {
                            params.push(corr);
                            params.push(seq);
                            params.push(&take);
                            db.query(&next_stmt, &params).await
                        }
                    }
                    .map_err(classify)?;
                    let chunk = rows_to_events(&rows)?;
                    drop(rows);
                    let Some(last) = chunk.last() else { break };
                    after = Some((last.event.correlation_id.clone(), last.chain_seq));
                    let mut heads = Vec::new();
                    for e in &chunk {
                        let corr = &e.event.correlation_id;
                        if last_corr.as_ref() != Some(corr) {
                            let head = db
                                .query_opt(&head_stmt, &[corr])
                                .await
                                .map_err(classify)?
                                .map(|r| ChainHead {
                                    chain_seq: r.get(0),
                                    event_hash: r.get(1),
                                });
                            heads.push((corr.clone(), head));
                            last_corr = Some(corr.clone());
                        }
                    }
                    let full = chunk.len() as i64 == take;
                    left -= chunk.len();
                    let part = ExportChunk {
                        heads,
                        events: chunk,
                    };
                    if tx.send(Ok(part)).await.is_err() || !full {
                        break;
                    }
                }
                db.commit().await.map_err(classify)
            };
            if let Err(e) = read.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }
}
