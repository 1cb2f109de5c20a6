//! Arrow record batches <-> JSON rows, and the Parquet and Arrow IPC files
//! that hold them.
//!
//! Both directions go through arrow_json, which maps nested types the way a
//! JSON reader expects: `list<struct<role, content>>` <-> a list of objects,
//! `list<int64>` <-> a list of integers, nulls <-> absent keys.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use retort_engine::Row;
use serde_json::Value;

use super::DatasetError;

/// Rows per record batch when writing (a Parquet row group holds many).
const BATCH_ROWS: usize = 1024;

/// The rows of a Parquet file.
pub fn read_parquet(path: &Path) -> Result<Vec<Row>, DatasetError> {
    let bad = |e: &dyn std::fmt::Display| DatasetError::Format { path: path.to_path_buf(), format: "Parquet", message: e.to_string() };
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?.build().map_err(|e| bad(&e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        rows.extend(batch_rows(&batch).map_err(|e| bad(&e))?);
    }
    Ok(rows)
}

/// The rows of an Arrow IPC file: the stream format (what `datasets` writes
/// in `save_to_disk` folders and its cache) or the file format (`ARROW1`).
pub fn read_arrow(path: &Path) -> Result<Vec<Row>, DatasetError> {
    let bad = |e: &dyn std::fmt::Display| DatasetError::Format { path: path.to_path_buf(), format: "Arrow IPC", message: e.to_string() };
    let mut file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut magic = [0u8; 6];
    let is_file_format = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
    file.seek(SeekFrom::Start(0)).map_err(|e| DatasetError::io(path, e))?;
    let batches: Vec<RecordBatch> = if is_file_format {
        let reader = arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None).map_err(|e| bad(&e))?;
        reader.collect::<Result<_, _>>().map_err(|e| bad(&e))?
    } else {
        let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None).map_err(|e| bad(&e))?;
        reader.collect::<Result<_, _>>().map_err(|e| bad(&e))?
    };
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(batch_rows(batch).map_err(|e| bad(&e))?);
    }
    Ok(rows)
}

/// One batch as JSON rows (nulls left out, as a JSON reader of the file
/// would see no key).
fn batch_rows(batch: &RecordBatch) -> Result<Vec<Row>, String> {
    let mut w = arrow_json::ArrayWriter::new(Vec::new());
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Writes rows as one Parquet file (Snappy-compressed, as pyarrow writes by
/// default), with the column types arrow_json infers from the rows: a
/// column that mixes integers and floats is float, one that mixes a scalar
/// with others becomes a string column. Same rows, same bytes.
pub fn write_parquet(path: &Path, rows: &[Row]) -> Result<(), DatasetError> {
    let bad = |e: &dyn std::fmt::Display| DatasetError::Format { path: path.to_path_buf(), format: "Parquet", message: e.to_string() };
    let values: Vec<Value> = rows.iter().map(|r| Value::Object(r.clone())).collect();
    let schema = infer_json_schema_from_iterator(values.iter().map(Ok)).map_err(|e| DatasetError::Schema {
        path: path.to_path_buf(),
        message: format!("the rows have no common column types for Parquet: {e}"),
    })?;
    let schema = Arc::new(schema);
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(BATCH_ROWS)
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| bad(&e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let file = File::create(path).map_err(|e| DatasetError::io(path, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| bad(&e))?;
    for chunk in rows.chunks(BATCH_ROWS) {
        decoder.serialize(chunk).map_err(|e| bad(&e))?;
        if let Some(batch) = decoder.flush().map_err(|e| bad(&e))? {
            writer.write(&batch).map_err(|e| bad(&e))?;
        }
    }
    writer.close().map_err(|e| bad(&e))?;
    Ok(())
}
