//! The drafted migration: the type's table, one column per field (NOT NULL where every sample
//! has it), the key as primary key, the guard's `event_at` and `event_id`, each column
//! commented with its evidence; named to sort after every existing migration.

use super::model::Inference;
use crate::plan::{create_table, guard_columns, next_migration_name, NewColumn};

/// The migration's name (without `.sql`) and text. `existing` are the names of the migrations
/// it must sort after.
pub fn migration(inference: &Inference, existing: &[String]) -> (String, String) {
    let name = next_migration_name(existing, &inference.name);
    let mut columns: Vec<NewColumn> = inference
        .columns
        .iter()
        .enumerate()
        .map(|(i, guess)| {
            let required = guess.required(inference.samples);
            let comment = if i == inference.key {
                "the key".to_owned()
            } else if required {
                "in every sample".to_owned()
            } else {
                let absent = inference.samples - (guess.present - guess.nulls);
                format!("absent or null in {}", inference.share(absent))
            };
            NewColumn {
                name: guess.column.clone(),
                sql_type: guess.format.sql_type().to_owned(),
                not_null: required,
                comment: Some(comment),
            }
        })
        .collect();
    columns.extend(guard_columns());
    let text = format!(
        "-- The table of the event type `{type_name}`, drafted by `etl infer` from {samples} \
         sample(s).\n\
         -- Review it, then install it as db/migrations/{name}.sql: the daemon applies every \
         migration\n\
         -- it finds there, once, in name order (this name sorts after every existing one).\n\
         {create}\n",
        type_name = inference.name,
        samples = inference.samples,
        create = create_table(
            &inference.name,
            &columns,
            &inference.columns[inference.key].column
        ),
    );
    (name, text)
}
