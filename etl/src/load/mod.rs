//! Loading: the PostgreSQL warehouse, its migrations, and the timestamp-guarded upserts.

pub mod connect;
pub mod error;
pub mod fault;
pub mod migrate;
pub mod warehouse;

pub use error::DbError;
pub use warehouse::{Applied, Warehouse};
