//! What can go wrong while exporting or retiring: the database's errors, the lake files', and a
//! request refused because it would break the lake's guarantees.

use crate::load::DbError;

/// An export or retention pass that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("database error: {}", crate::load::error::causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("lake file error: {0}")]
    Io(#[from] std::io::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A request that would break the lake's guarantees; the sentence says why.
    #[error("{0}")]
    Refused(String),
}
