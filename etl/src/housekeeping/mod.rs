//! Housekeeping: every pass `etl run` schedules besides ingestion, each one replica at a time
//! under its advisory lock ([`lock`]): the retention of the file folders ([`folders`]), the
//! lake's export and raw retention ([`lake`]), and following the raw zone's horizon
//! ([`horizon`]). A failed pass is logged and tried again; it never stops ingestion.

pub mod folders;
pub mod horizon;
pub mod lake;
pub mod lock;
