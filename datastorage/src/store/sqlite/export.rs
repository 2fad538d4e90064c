//! [`EventStore::export_chunks`](crate::store::EventStore::export_chunks) on
//! SQLite: one read transaction, keyset chunks on `(correlation_id, chain_seq)`.

use rusqlite::{OptionalExtension, ToSql};

use super::{filter_sql, rows, where_sql, SqliteStore, SELECT_HEAD};
use crate::domain::chain::ChainHead;
use crate::domain::query::EventQuery;
use crate::store::{ExportChunk, ExportChunks, StoreError};

impl SqliteStore {
    pub(super) fn export_chunks_impl(
        &self,
        query: &EventQuery,
        chunk_size: usize,
    ) -> Result<ExportChunks, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let store = self.clone();
        let query = query.clone();
        let chunk_size = chunk_size.max(1);
        tokio::spawn(async move {
            let sender = tx.clone();
            let read = store.with_reader(move |conn| {
                // One read transaction: every chunk and head of one snapshot.
                let db = conn.unchecked_transaction()?;
                let mut head_stmt = db.prepare_cached(SELECT_HEAD)?;
                let (clauses, args) = filter_sql(&query);
                let mut keyset_clauses = clauses.clone();
                keyset_clauses.push("(correlation_id, chain_seq) > (?, ?)");
                // Two statement shapes per filter shape: the first chunk skips
                // `offset` rows, the later ones continue after the last row.
                let first_sql = format!(
                    "SELECT {} FROM audit_events {} ORDER BY correlation_id, chain_seq \
                     LIMIT ? OFFSET ?",
                    rows::SELECT_COLUMNS,
                    where_sql(&clauses)
                );
                let next_sql = format!(
                    "SELECT {} FROM audit_events {} ORDER BY correlation_id, chain_seq LIMIT ?",
                    rows::SELECT_COLUMNS,
                    where_sql(&keyset_clauses)
                );
                let mut left = query.limit;
                let mut after: Option<(String, i64)> = None;
                let mut last_corr: Option<String> = None;
                while left > 0 {
                    let take = left.min(chunk_size) as i64;
                    let mut params: Vec<&dyn ToSql> = args.iter().map(AsRef::as_ref).collect();
                    let offset = query.offset as i64;
                    let chunk = match &after {
                        None => {
                            params.push(&take);
                            params.push(&offset);
                            let mut stmt = db.prepare_cached(&first_sql)?;
                            let rows = stmt.query_map(params.as_slice(), rows::from_row)?;
                            rows.collect::<rusqlite::Result<Vec<_>>>()?
                        }
                        Some((corr, seq)) => {
                            params.push(corr);
                            params.push(seq);
                            params.push(&take);
                            let mut stmt = db.prepare_cached(&next_sql)?;
                            let rows = stmt.query_map(params.as_slice(), rows::from_row)?;
                            rows.collect::<rusqlite::Result<Vec<_>>>()?
                        }
                    };
                    let Some(last) = chunk.last() else { break };
                    after = Some((last.event.correlation_id.clone(), last.chain_seq));
                    let mut heads = Vec::new();
                    for e in &chunk {
                        let corr = &e.event.correlation_id;
                        if last_corr.as_ref() != Some(corr) {
                            let head = head_stmt
                                .query_row([corr], |r| {
                                    Ok(ChainHead {
                                        chain_seq: r.get(0)?,
                                        event_hash: r.get(1)?,
                                    })
                                })
                                .optional()?;
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
                    if sender.blocking_send(Ok(part)).is_err() || !full {
                        break;
                    }
                }
                Ok(())
            });
            if let Err(e) = read.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }
}
