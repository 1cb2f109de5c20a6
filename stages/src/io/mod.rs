//! Dataset files in the formats the ecosystem uses, in one place for
//! `task: file` (reading) and `export` (writing).
//!
//! - JSON Lines: retort's own row format (the engine's `read_jsonl`).
//! - Parquet: one file, or a folder of shards as datasets on the HF Hub are
//!   laid out (`data/train-00000-of-00002.parquet`, ...).
//! - A folder written by `datasets`' `save_to_disk`: Arrow IPC *stream* files
//!   `data-*.arrow` listed in `state.json`, next to `dataset_info.json`.
//!
//! Columnar files become the same JSON rows that JSONL gives (through
//! arrow_json, so nested columns stay nested: a `messages` list of structs
//! becomes a list of objects, an integer list a list of integers), and rows
//! become Parquet through the schema arrow_json infers from them. Rows are
//! checked when loaded ([`check`]): a mistyped well-known column is an error
//! naming the file, the column and the row.

mod arrow_rows;
mod check;
mod locate;

use std::path::{Path, PathBuf};

use retort_engine::Row;

pub use arrow_rows::write_parquet;
pub use check::check_rows;

/// What went wrong reading or writing a dataset file. Every message names
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file or folder could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The bytes are not a valid file of the format its name says.
    #[error("{path}: not a readable {format} file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Parquet, Arrow IPC, ...
        format: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The rows do not have the shape retort needs.
    #[error("{path}: {message}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Which column (and row) and what is wrong with it, and the fix.
        message: String,
    },
    /// A folder that is not one dataset (or not a dataset at all).
    #[error("{path}: {message}")]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What was found, and what to point `path:` at instead.
        message: String,
    },
}

impl DatasetError {
    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        DatasetError::Io { path: path.to_path_buf(), message: e.to_string() }
    }
}

/// The on-disk format of one dataset file, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// `.jsonl` / `.json` (one object per line) and anything unrecognized.
    Jsonl,
    /// `.parquet`.
    Parquet,
    /// `.arrow`: Arrow IPC, stream (as `datasets` writes it) or file format.
    Arrow,
}

impl FileFormat {
    /// The format a path's extension names.
    pub fn of(path: &Path) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("parquet") => FileFormat::Parquet,
            Some("arrow") => FileFormat::Arrow,
            _ => FileFormat::Jsonl,
        }
    }

    /// Whether the format has a typed schema (as opposed to free JSON rows).
    pub fn columnar(self) -> bool {
        !matches!(self, FileFormat::Jsonl)
    }
}

/// One file of a dataset and the rows read from it.
pub struct Part {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: FileFormat,
    /// Its rows, in file order.
    pub rows: Vec<Row>,
}

/// Reads a dataset: a JSONL, Parquet or Arrow file, a folder of Parquet
/// shards, or a `save_to_disk` folder. Parts come in the dataset's order
/// (shards sorted by name; `save_to_disk` files in `state.json`'s order).
pub fn read_parts(path: &Path) -> Result<Vec<Part>, DatasetError> {
    let files = locate::files(path)?;
    files
        .into_iter()
        .map(|(path, format)| {
            let rows = match format {
                FileFormat::Jsonl => {
                    retort_engine::read_jsonl(&path).map_err(|e| DatasetError::Format {
                        path: path.clone(),
                        format: "JSON Lines",
                        message: format!("{e:#}"),
                    })?
                }
                FileFormat::Parquet => arrow_rows::read_parquet(&path)?,
                FileFormat::Arrow => arrow_rows::read_arrow(&path)?,
            };
            Ok(Part { path, format, rows })
        })
        .collect()
}

/// Reads a dataset (see [`read_parts`]) into one list of checked rows.
pub fn read_dataset(path: &Path) -> Result<Vec<Row>, DatasetError> {
    let parts = read_parts(path)?;
    let columnar = parts.iter().any(|p| p.format.columnar());
    let mut rows = Vec::new();
    for part in parts {
        check_rows(&part.path, &part.rows, columnar)?;
        rows.extend(part.rows);
    }
    Ok(rows)
}

/// Writes rows to `path` in the format its extension names (Parquet for
/// `.parquet`, JSON Lines otherwise).
pub fn write_dataset(path: &Path, rows: &[Row]) -> Result<(), DatasetError> {
    match FileFormat::of(path) {
        FileFormat::Parquet => write_parquet(path, rows),
        FileFormat::Arrow => Err(DatasetError::Layout {
            path: path.to_path_buf(),
            message: "retort does not write Arrow IPC files; export to `.parquet` (which `datasets` loads with \
                      `load_dataset(\"parquet\", ...)`) or `.jsonl`"
                .into(),
        }),
        FileFormat::Jsonl => retort_engine::write_jsonl(path, rows).map_err(|e| DatasetError::io(path, format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests;
