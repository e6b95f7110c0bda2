//! Operating the daemon: HTTP endpoints (health, readiness, metrics, status), `etl replay` and
//! `etl status`.

pub mod http;
pub mod metrics;
pub mod probe;
pub mod replay;
pub mod status;
pub mod webhook;
