//! `etl dead-letters list|replay`: the broker's and HTTP sources' dead letters listed as
//! tab-separated rows, or the broker's published back to their subject.

use std::collections::BTreeMap;

use super::{stop_on_signal, wait_for_warehouse, CommandError, Outcome};
use crate::catalog::Catalog;
use crate::cli::DeadLetterAction;
use crate::config::Config;
use crate::load::connect::Target;
use crate::load::Warehouse;
use crate::source::deadletter;

/// Lists or replays the dead letters the action's filter matches.
pub async fn dead_letters(
    config: &Config,
    action: DeadLetterAction,
) -> Result<Outcome, CommandError> {
    if !wait_for_warehouse(config).await? {
        return Ok(Outcome::Failed);
    }
    let warehouse = Warehouse::open(Target::from_config(config)?, 1)?;
    let kind = match &action {
        DeadLetterAction::List { kind, .. } | DeadLetterAction::Replay { kind, .. } => kind,
    };
    if let Some(name) = kind {
        // A declared type, or one the rows hold: messages of an undeclared type are
        // dead-lettered under the type their subject names, and must be listable by it.
        let catalog = Catalog::load(config)?;
        let held = deadletter::types_held(&warehouse).await?;
        if catalog.get(name).is_none() && !held.contains(name) {
            let held = if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            };
            return Err(CommandError::Refused(format!(
                "--type {name}: no such event type (declared: {}; held by dead letters: {held})",
                catalog.names()
            )));
        }
    }
    match action {
        DeadLetterAction::List { kind, reason } => {
            let filter = deadletter::Filter {
                type_name: kind,
                reason,
                source: None,
            };
            list(&warehouse, &filter).await
        }
        DeadLetterAction::Replay { kind, reason } => {
            let filter = deadletter::Filter {
                type_name: kind,
                reason,
                source: None,
            };
            replay(config, &warehouse, &filter).await
        }
    }
}

/// `etl dead-letters list`: a header row, then one tab-separated row per dead letter.
async fn list(warehouse: &Warehouse, filter: &deadletter::Filter) -> Result<Outcome, CommandError> {
    let letters = deadletter::list(warehouse, filter).await?;
    // A header row, so the tab-separated columns can be read (and cut) by name.
    println!("id\trejected_at\tsource\ttype\tevent_id\tcode\treason");
    for l in &letters {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            l.id,
            l.rejected_at,
            l.source,
            l.type_name.as_deref().unwrap_or("-"),
            l.event_id.as_deref().unwrap_or("-"),
            l.code,
            l.reason
        );
    }
    println!("{} dead letter(s)", letters.len());
    Ok(Outcome::Done)
}

/// `etl dead-letters replay`: the broker's dead letters published again; an HTTP source's are
/// named, with the `etl pull` that replays them.
async fn replay(
    config: &Config,
    warehouse: &Warehouse,
    filter: &deadletter::Filter,
) -> Result<Outcome, CommandError> {
    // The broker can only replay what it delivered: an HTTP source's dead letters are
    // replayed by asking the API again, so they are named here and left alone.
    let letters = deadletter::list(warehouse, filter).await?;
    let mut from_apis: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in letters.iter().filter(|l| l.source == "http") {
        *from_apis.entry(letter.subject.as_str()).or_default() += 1;
    }
    for (source, count) in &from_apis {
        println!(
            "{count} dead letter(s) of the http source {source} are not replayed through the broker: \
             fix the cause, then pull their window again (etl pull {source} --from DATE --to DATE), \
             which asks the API for the same items"
        );
    }
    if !letters.iter().any(|l| l.source == "jetstream") {
        // Nothing for the broker: no reason to reach it (it may not even exist here).
        println!("replayed 0 dead letter(s) into the stream (none from the broker matches)");
        return Ok(Outcome::Done);
    }
    let stop = stop_on_signal();
    let Some(client) = crate::broker::connect(config, config.startup_wait, &stop).await? else {
        tracing::warn!("interrupted while waiting for the broker: nothing was replayed");
        return Ok(Outcome::Failed);
    };
    let js = async_nats::jetstream::new(client);
    let replayed = deadletter::replay(warehouse, &js, config, filter).await?;
    println!("replayed {replayed} dead letter(s) into the stream");
    Ok(Outcome::Done)
}
