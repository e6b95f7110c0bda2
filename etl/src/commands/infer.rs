//! `etl infer --type NAME [--out DIR] [--bare] [--key F] [--version F] PATH…`: sample event
//! files read (folders walked), the report printed, and drafts of the schema, the declaration
//! and the migration written into `DIR` (default `drafts/<type>/`) — never into the live
//! folders the daemon reads, never into the warehouse. Exit 1 when the samples disagree (the
//! conflicts are named), 2 for a request to fix (no key to be found, a bad `--out`).

use std::path::{Path, PathBuf};

use super::{CommandError, Outcome};
use crate::cli::InferArgs;
use crate::config::Config;
use crate::infer::{InferError, Options, Sample};
use crate::source::inbox::read::{read_untrusted, Contents};

/// Reads, infers, reports, drafts.
pub fn infer(config: &Config, args: &InferArgs) -> Result<Outcome, CommandError> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("drafts").join(&args.kind));
    refuse_live_folder(config, &out)?;
    let mut files = Vec::new();
    for path in &args.samples {
        collect(path, true, &mut files)?;
    }
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        let origin = crate::names::encode_path(file).into_owned();
        match read_untrusted(file, config.inbox.max_file_bytes) {
            Ok(Contents::Bytes { bytes, .. }) => match Sample::parse(origin.clone(), &bytes) {
                Ok(sample) => samples.push(sample),
                Err(why) => skipped.push((origin, why.to_string())),
            },
            Ok(Contents::TooLarge(_)) => skipped.push((
                origin,
                format!(
                    "larger than max_file_bytes ({})",
                    config.inbox.max_file_bytes
                ),
            )),
            Ok(Contents::Gone) => skipped.push((origin, "gone before it was read".into())),
            Ok(Contents::Ignored(why)) => skipped.push((origin, why.into())),
            Err(error) => skipped.push((origin, format!("cannot read: {error}"))),
        }
    }
    let options = Options {
        name: args.kind.clone(),
        bare: args.bare,
        key: args.key.clone(),
        version: args.version.clone(),
    };
    let inference = match crate::infer::infer(&samples, skipped, &options) {
        Ok(inference) => inference,
        Err(InferError::Conflicts(conflicts)) => {
            println!("read {} file(s) of type {}", files.len(), args.kind);
            for conflict in &conflicts {
                println!("conflict: {conflict}");
            }
            println!(
                "nothing drafted: {} field(s) differ in kind between samples; fix the producer \
                 (or leave out the samples in error) and infer again",
                conflicts.len()
            );
            return Ok(Outcome::Failed);
        }
        Err(error) => return Err(CommandError::Refused(error.to_string())),
    };
    print!("{}", crate::infer::report::report(&inference));
    let existing: Vec<String> = crate::load::migrate::read(&config.database.migrations_dir)
        .map_err(|source| CommandError::Io {
            context: format!(
                "cannot read the migrations folder {} (the draft's migration must sort after \
                 every migration in it)",
                config.database.migrations_dir.display()
            ),
            source,
        })?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let drafts = crate::infer::drafts(&inference, &existing);
    let written = [
        (format!("{}.schema.json", args.kind), &drafts.schema),
        (format!("{}.toml", args.kind), &drafts.declaration),
        (format!("{}.sql", drafts.migration_name), &drafts.migration),
    ];
    std::fs::create_dir_all(&out).map_err(|source| CommandError::Io {
        context: format!("cannot create the drafts folder {}", out.display()),
        source,
    })?;
    println!("drafts (review them before installing):");
    for (name, text) in written {
        let path = out.join(&name);
        std::fs::write(&path, text).map_err(|source| CommandError::Io {
            context: format!("cannot write the draft {}", path.display()),
            source,
        })?;
        println!("  {}", path.display());
    }
    println!(
        "next: etl check --types-dir {out} --schemas-dir {out} <samples>, then copy the schema \
         into schemas/, the declaration into types/ and the migration into db/migrations/",
        out = out.display()
    );
    Ok(Outcome::Done)
}

/// Drafts never go where the daemon reads its types, schemas or migrations.
fn refuse_live_folder(config: &Config, out: &Path) -> Result<(), CommandError> {
    let absolute = |p: &Path| {
        std::path::absolute(p)
            .map(|p| p.canonicalize().unwrap_or(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let target = absolute(out);
    for (what, live) in [
        ("schemas_dir", &config.schemas_dir),
        ("types_dir", &config.types_dir),
        ("migrations_dir", &config.database.migrations_dir),
    ] {
        if absolute(live) == target {
            return Err(CommandError::Refused(format!(
                "--out {}: that is the live {what}, which the daemon reads at start-up; draft \
                 into another folder (the default is drafts/<type>/) and copy the reviewed files",
                out.display()
            )));
        }
    }
    Ok(())
}

/// `path`'s event files: the file itself when given by name, a folder's `*.json` files (not
/// reason files, dotfiles or symlinks) at any depth, in name order.
fn collect(path: &Path, named: bool, files: &mut Vec<PathBuf>) -> Result<(), CommandError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| CommandError::Io {
        context: format!(
            "cannot read the sample {} (give event files or folders of them)",
            path.display()
        ),
        source,
    })?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| CommandError::Io {
                context: format!("cannot list the folder {}", path.display()),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            collect(&entry, false, files)?;
        }
    } else if named
        || (meta.is_file() && path.file_name().is_some_and(crate::layout::is_event_file))
    {
        files.push(path.to_path_buf());
    }
    Ok(())
}
