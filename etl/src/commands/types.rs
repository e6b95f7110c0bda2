//! `etl types plan [--type T] [--out DIR]`: each declaration compared with its table, and the
//! migration that would make them agree printed (and with `--out`, written as a file named to
//! sort after every existing migration) for a person to review, commit and apply. Changes that
//! would lose data are refused with the reason (exit 2); nothing is ever applied here.

use std::path::Path;

use super::{no_such_type, wait_for_warehouse, CommandError, Outcome};
use crate::catalog::Catalog;
use crate::cli::TypesAction;
use crate::config::Config;
use crate::load::connect;

/// Dispatches `etl types …`.
pub async fn types(config: &Config, action: TypesAction) -> Result<Outcome, CommandError> {
    match action {
        TypesAction::Plan { kind, out } => plan(config, kind.as_deref(), out.as_deref()).await,
    }
}

async fn plan(
    config: &Config,
    only: Option<&str>,
    out: Option<&Path>,
) -> Result<Outcome, CommandError> {
    let catalog = Catalog::load(config)?;
    if let Some(name) = only.filter(|name| catalog.get(name).is_none()) {
        return Err(no_such_type(name, &catalog));
    }
    // Within --wait, like every one-shot command that reads the warehouse.
    if !wait_for_warehouse(config).await? {
        return Ok(Outcome::Failed);
    }
    let client = connect::session(config).await?;
    let mut plans = Vec::new();
    for kind in catalog
        .iter()
        .filter(|k| only.is_none_or(|name| k.name() == name))
    {
        let table = crate::load::table::describe(&client, kind)
            .await
            .map_err(CommandError::Postgres)?;
        let spelled = crate::load::table::spellings(&client, kind)
            .await
            .map_err(CommandError::Postgres)?;
        plans.push(crate::plan::plan(kind, &spelled, table.as_ref()));
    }
    let refusals: Vec<&String> = plans.iter().flat_map(|p| &p.refusals).collect();
    if !refusals.is_empty() {
        for refusal in &refusals {
            println!("refused: {refusal}");
        }
        return Err(CommandError::Refused(format!(
            "{} change(s) would lose data or cannot be planned (each said above): nothing \
             planned; change the declaration(s), or write that migration yourself",
            refusals.len()
        )));
    }
    let changed: Vec<&crate::plan::Plan> =
        plans.iter().filter(|p| !p.statements.is_empty()).collect();
    if changed.is_empty() {
        println!("every table agrees with its declaration: no migration needed");
        return Ok(Outcome::Done);
    }
    let mut text = String::from(
        "-- Planned by `etl types plan` from the declarations and the tables as they are: review\n\
         -- it, commit it into the migrations folder, then `etl migrate` (or restart the daemon)\n\
         -- and restart the daemon so that it loads the new declaration.\n",
    );
    for plan in &changed {
        text.push_str(&format!("\n-- type {}\n", plan.type_name));
        for warning in &plan.warnings {
            text.push_str(&format!("-- WARNING: {warning}\n"));
        }
        for statement in &plan.statements {
            text.push_str(statement);
            text.push('\n');
        }
    }
    for warning in changed.iter().flat_map(|p| &p.warnings) {
        eprintln!("WARN {warning}");
    }
    let Some(out) = out else {
        print!("{text}");
        return Ok(Outcome::Done);
    };
    let mut existing = migration_names(&config.database.migrations_dir)?;
    existing.extend(migration_names(out)?);
    let what = format!(
        "update_{}",
        changed
            .iter()
            .map(|p| p.type_name.as_str())
            .collect::<Vec<_>>()
            .join("_")
    );
    let path = out.join(format!(
        "{}.sql",
        crate::plan::next_migration_name(&existing, &what)
    ));
    std::fs::create_dir_all(out)
        .and_then(|()| std::fs::write(&path, &text))
        .map_err(|source| CommandError::Io {
            context: format!("cannot write the planned migration {}", path.display()),
            source,
        })?;
    print!("{text}");
    println!("-- written to {}", path.display());
    Ok(Outcome::Done)
}

/// The names (without `.sql`) of the migrations in `dir` (the built-in ones if it is missing).
fn migration_names(dir: &Path) -> Result<Vec<String>, CommandError> {
    let migrations = crate::load::migrate::read(dir).map_err(|source| CommandError::Io {
        context: format!("cannot read the migrations folder {}", dir.display()),
        source,
    })?;
    Ok(migrations.into_iter().map(|m| m.version).collect())
}
