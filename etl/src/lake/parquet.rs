//! Rows → Parquet files: each warehouse column's Arrow type, and a file that appears whole (a
//! temporary name, synced, then renamed) or not at all, so a reader never sees a partial file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio_postgres::Row;

use super::LakeError;
use crate::catalog::SqlType;

/// Rows per row group: what the writer buffers before it encodes them, so the memory a file
/// costs is bounded whatever the table's size (a raw event is ~0.5 KiB: ~16 MiB buffered).
const ROW_GROUP_ROWS: usize = 32 * 1024;

/// How a column travels: the PostgreSQL type the export's SELECT casts it to, read into the
/// matching Arrow type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LakeType {
    Int64,
    Int32,
    Float64,
    Boolean,
    /// Text, and what has no Arrow type of its own: uuids, JSON (as its text), other types.
    Text,
    /// `timestamp`: a naive time (the producers' local clock), no time zone.
    Timestamp,
    /// `timestamptz`, in UTC.
    TimestampUtc,
}

impl LakeType {
    /// The lake type of a declared column, and the cast its SELECT applies (if any).
    pub fn of(sql_type: &SqlType) -> (LakeType, &'static str) {
        match sql_type {
            SqlType::BigInt => (LakeType::Int64, ""),
            SqlType::Integer => (LakeType::Int32, ""),
            SqlType::Double => (LakeType::Float64, ""),
            SqlType::Boolean => (LakeType::Boolean, ""),
            SqlType::Text => (LakeType::Text, ""),
            SqlType::Timestamp => (LakeType::Timestamp, ""),
            SqlType::Uuid | SqlType::Jsonb | SqlType::Other(_) => (LakeType::Text, "::text"),
        }
    }

    fn arrow(self) -> DataType {
        match self {
            LakeType::Int64 => DataType::Int64,
            LakeType::Int32 => DataType::Int32,
            LakeType::Float64 => DataType::Float64,
            LakeType::Boolean => DataType::Boolean,
            LakeType::Text => DataType::Utf8,
            LakeType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            LakeType::TimestampUtc => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
        }
    }
}

/// One column of an exported table.
#[derive(Clone, Debug)]
pub struct LakeColumn {
    pub name: String,
    pub lake_type: LakeType,
    /// The expression the SELECT reads it with (the quoted column and its cast).
    pub select: String,
    pub nullable: bool,
}

impl LakeColumn {
    pub fn new(name: &str, lake_type: LakeType, cast: &str, nullable: bool) -> LakeColumn {
        LakeColumn {
            name: name.to_owned(),
            lake_type,
            select: format!("\"{name}\"{cast}"),
            nullable,
        }
    }
}

/// The SELECT list of `columns`.
pub fn select_list(columns: &[LakeColumn]) -> String {
    columns
        .iter()
        .map(|c| c.select.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Parquet file being written under a temporary name beside its final one.
pub struct ParquetFile {
    columns: Vec<LakeColumn>,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    temporary: Temporary,
    path: PathBuf,
    pub rows: u64,
}

/// The temporary file's name, removed when the export is abandoned before [`ParquetFile::publish`]
/// (an error, or a graceful stop cancelling a scheduled export mid-write): readers skip dot
/// names, but the lake folder should not keep them until the next export.
struct Temporary(Option<PathBuf>);

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl ParquetFile {
    /// Starts `path` (its folder is created); nothing is visible there until [`publish`].
    ///
    /// [`publish`]: ParquetFile::publish
    pub fn create(path: &Path, columns: &[LakeColumn]) -> Result<ParquetFile, LakeError> {
        let dir = path
            .parent()
            .ok_or_else(|| LakeError::Refused(format!("{} has no folder", path.display())))?;
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A dot name: readers (pyarrow, Spark, DuckDB's `*.parquet` globs) skip it.
        let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.lake_type.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ));
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer =
            ArrowWriter::try_new(File::create(&temporary)?, schema.clone(), Some(properties))?;
        Ok(ParquetFile {
            columns: columns.to_vec(),
            schema,
            writer,
            temporary: Temporary(Some(temporary)),
            path: path.to_owned(),
            rows: 0,
        })
    }

    /// Appends rows read with [`select_list`] of the same columns.
    pub fn write(&mut self, rows: &[Row]) -> Result<(), LakeError> {
        if rows.is_empty() {
            return Ok(());
        }
        let arrays = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| column_array(rows, i, c.lake_type))
            .collect::<Result<Vec<ArrayRef>, LakeError>>()?;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        // Encoding and disk writes are blocking work; the runtime's other tasks keep running.
        tokio::task::block_in_place(|| self.writer.write(&batch))?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Closes the file, syncs it, and renames it into place (replacing a previous file of the
    /// same name atomically); then syncs the folder so the rename survives a crash.
    pub fn publish(self) -> Result<PathBuf, LakeError> {
        let ParquetFile {
            writer,
            mut temporary,
            path,
            ..
        } = self;
        tokio::task::block_in_place(|| {
            let file = writer.into_inner()?;
            file.sync_all()?;
            drop(file);
            let from = temporary.0.take().ok_or_else(|| {
                LakeError::Refused(format!("{} was published twice", path.display()))
            })?;
            if let Err(error) = std::fs::rename(&from, &path) {
                temporary.0 = Some(from);
                return Err(error.into());
            }
            sync_dir(&path)?;
            Ok(path)
        })
    }
}

/// Whether `name` is a temporary file [`ParquetFile`] writes (left behind by an interrupted
/// export when it is not this process's own).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Removes the temporary files an interrupted export left in `dir` (which may not exist).
pub fn remove_temporaries(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if is_temporary(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// fsync of the folder holding `path`.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Column `i` of `rows` as an Arrow array of `lake_type`.
fn column_array(rows: &[Row], i: usize, lake_type: LakeType) -> Result<ArrayRef, LakeError> {
    fn values<'a, T: tokio_postgres::types::FromSql<'a>>(
        rows: &'a [Row],
        i: usize,
    ) -> Result<Vec<Option<T>>, LakeError> {
        rows.iter()
            .map(|r| r.try_get::<_, Option<T>>(i).map_err(LakeError::from))
            .collect()
    }
    let micros = |t: NaiveDateTime| t.and_utc().timestamp_micros();
    Ok(match lake_type {
        LakeType::Int64 => Arc::new(Int64Array::from(values::<i64>(rows, i)?)),
        LakeType::Int32 => Arc::new(Int32Array::from(values::<i32>(rows, i)?)),
        LakeType::Float64 => Arc::new(Float64Array::from(values::<f64>(rows, i)?)),
        LakeType::Boolean => Arc::new(BooleanArray::from(values::<bool>(rows, i)?)),
        LakeType::Text => Arc::new(StringArray::from(values::<&str>(rows, i)?)),
        LakeType::Timestamp => Arc::new(TimestampMicrosecondArray::from(
            values::<NaiveDateTime>(rows, i)?
                .into_iter()
                .map(|t| t.map(micros))
                .collect::<Vec<_>>(),
        )),
        LakeType::TimestampUtc => Arc::new(
            TimestampMicrosecondArray::from(
                values::<DateTime<Utc>>(rows, i)?
                    .into_iter()
                    .map(|t| t.map(|t| t.timestamp_micros()))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
    })
}
