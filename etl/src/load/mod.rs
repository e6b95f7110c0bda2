//! Loading: the PostgreSQL warehouse, its migrations, and the timestamp-guarded upserts
//! (`upsert.rs`: where a row is written).

pub mod connect;
pub mod error;
pub mod fault;
pub mod migrate;
pub mod upsert;
pub mod warehouse;

pub use error::DbError;
pub use warehouse::{Applied, Warehouse};
