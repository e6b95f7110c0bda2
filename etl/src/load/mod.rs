//! Loading: the worker pool between decoded events and the warehouse (`pool.rs`, which routes
//! each entity to one worker and gathers batches; `batch.rs` reduces a batch to one winner per
//! entity), the PostgreSQL warehouse and its one transaction per batch (`warehouse.rs`), the
//! timestamp-guarded upserts (`upsert.rs`: where a row is written), the migrations, a table as
//! the server describes it (`table.rs`, for `etl types plan`), and how a
//! database error is classed (`fault.rs`: retry the batch, or refuse one event).

pub mod arrays;
pub mod batch;
pub mod connect;
pub mod error;
pub mod fault;
pub mod migrate;
pub mod pool;
pub mod table;
pub mod upsert;
pub mod warehouse;

pub use error::DbError;
pub use warehouse::{Applied, Warehouse};
