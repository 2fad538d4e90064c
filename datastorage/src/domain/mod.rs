//! What DataStorage does, free of HTTP and SQL: preparing batches for ingest,
//! hashing and verifying chains, and describing queries.

pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod ingest;
pub mod query;
pub mod verification;
