//! Housekeeping: every pass `etl run` schedules besides ingestion, each one replica at a time
//! under its advisory lock ([`lock`]): the retention of the file folders ([`folders`]), the
//! lake's export and raw retention ([`lake`]), and following the raw zone's horizon
//! ([`horizon`]). A failed pass is logged and tried again; it never stops ingestion.

pub mod folders;
pub mod horizon;
pub mod lake;
pub mod lock;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::lake::Horizon;
use crate::load::Warehouse;

/// Starts every pass `config` asks for beside `warehouse` (none without one: `etl forward`
/// keeps its folders), each stopping at `stop`: the horizon kept up to date, the lake's
/// schedule, and the folders' retention (`plan`, checked before anything started).
pub fn start(
    config: &Config,
    catalog: &Catalog,
    warehouse: Option<&Warehouse>,
    plan: Option<folders::Plan>,
    horizon: &Horizon,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let Some(warehouse) = warehouse else {
        return tasks;
    };
    tasks.push(tokio::spawn(horizon::follow_horizon(
        warehouse.clone(),
        horizon.clone(),
        stop.clone(),
    )));
    if let Some(schedule) = lake::Schedule::from_config(config) {
        tasks.push(tokio::spawn(lake::schedule(
            config.clone(),
            catalog.clone(),
            schedule,
            stop.clone(),
        )));
    }
    if let Some(plan) = plan {
        tasks.push(tokio::spawn(folders::schedule(
            config.clone(),
            plan,
            stop.clone(),
        )));
    }
    tasks
}
