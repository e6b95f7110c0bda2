//! Transformation: the worker pool between validated events and the warehouse. Routes each
//! entity to one worker, gathers batches, and reduces each batch to one winner per entity.

pub mod batch;
pub mod pool;

pub use batch::Batch;
pub use pool::{partition, Pool};
