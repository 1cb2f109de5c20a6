use std::path::Path;

use serde_json::json;

use super::*;

fn rows(v: serde_json::Value) -> Vec<Row> {
    v.as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect()
}

fn nested() -> Vec<Row> {
    rows(json!([
        {"id": "a", "prompt": "2+2?", "nums": [3, 5, 2], "target": 16, "score": 0.5,
         "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"id": "b", "prompt": "3+3?", "nums": [1], "target": 2, "score": 1.0,
         "messages": [{"role": "user", "content": "x"}]},
    ]))
}

#[test]
fn parquet_round_trip_keeps_nested_types() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    write_dataset(&p, &nested()).unwrap();
    assert_eq!(&std::fs::read(&p).unwrap()[..4], b"PAR1");
    let back = read_dataset(&p).unwrap();
    assert_eq!(back, nested());
    // Column order is the rows' key order.
    assert_eq!(back[0].keys().collect::<Vec<_>>(), ["id", "prompt", "nums", "target", "score", "messages"]);
}

#[test]
fn same_rows_same_parquet_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    write_dataset(&a, &nested()).unwrap();
    write_dataset(&b, &nested()).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn missing_values_are_nulls_and_come_back_absent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    let data = rows(json!([{"prompt": "a", "answer": 1}, {"prompt": "b"}]));
    write_dataset(&p, &data).unwrap();
    assert_eq!(read_dataset(&p).unwrap(), data);
}

#[test]
fn many_rows_span_batches() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    let data: Vec<Row> = (0..2500).map(|i| json!({"prompt": format!("p{i}"), "nums": [i]}).as_object().unwrap().clone()).collect();
    write_dataset(&p, &data).unwrap();
    assert_eq!(read_dataset(&p).unwrap(), data);
}

fn schema_error(path: &Path) -> String {
    read_dataset(path).expect_err("an error").to_string()
}

#[test]
fn a_list_where_a_string_is_needed_names_file_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.parquet");
    write_dataset(&p, &rows(json!([{"prompt": ["a"]}, {"prompt": ["b", "c"]}]))).unwrap();
    let e = schema_error(&p);
    assert!(e.contains("bad.parquet") && e.contains("row 0") && e.contains("`prompt`") && e.contains("must be a string, got a list"), "{e}");
    write_dataset(&p, &rows(json!([{"prompt": "a", "chosen": "x"}, {"prompt": "b", "chosen": 3}]))).unwrap();
    // A column mixing strings and numbers is a string column in Parquet.
    assert_eq!(read_dataset(&p).unwrap()[1]["chosen"], "3");
}

#[test]
fn a_parquet_file_without_prompt_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("noprompt.parquet");
    write_dataset(&p, &rows(json!([{"question": "a", "answer": 1}]))).unwrap();
    let e = schema_error(&p);
    assert!(e.contains("noprompt.parquet") && e.contains("no `prompt` column") && e.contains("`question`, `answer`") && e.contains("row 0"), "{e}");
    // JSONL rows stay free-form.
    let j = dir.path().join("rows.jsonl");
    write_dataset(&j, &rows(json!([{"question": "a"}]))).unwrap();
    assert_eq!(read_dataset(&j).unwrap().len(), 1);
}

#[test]
fn bad_messages_and_nums_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.jsonl");
    write_dataset(&p, &rows(json!([{"messages": [{"role": "user", "content": "a"}]}, {"messages": [{"role": "user"}]}]))).unwrap();
    let e = schema_error(&p);
    assert!(e.contains("m.jsonl") && e.contains("row 1") && e.contains("turn 0") && e.contains("no `content`"), "{e}");
    write_dataset(&p, &rows(json!([{"prompt": "a", "nums": [1, 2.5]}]))).unwrap();
    let e = schema_error(&p);
    assert!(e.contains("row 0") && e.contains("`nums` must be a list of integers"), "{e}");
}

#[test]
fn a_folder_of_shards_reads_in_name_order_and_refuses_mixed_splits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let all = nested();
    write_dataset(&data.join("train-00001-of-00002.parquet"), &all[1..]).unwrap();
    write_dataset(&data.join("train-00000-of-00002.parquet"), &all[..1]).unwrap();
    std::fs::write(dir.path().join("README.md"), "card").unwrap();
    assert_eq!(read_dataset(dir.path()).unwrap(), all);
    write_dataset(&data.join("test-00000-of-00001.parquet"), &all[..1]).unwrap();
    let e = schema_error(dir.path());
    assert!(e.contains("several splits") && e.contains("`test`, `train`"), "{e}");
    let e = schema_error(&dir.path().join("nothing-here-but")).to_string();
    assert!(e.contains("nothing-here-but"), "{e}");
}

/// A `save_to_disk` folder as `datasets` writes it: Arrow IPC stream files
/// listed in `state.json`.
#[test]
fn a_save_to_disk_folder_reads_its_arrow_streams_in_state_order() {
    let dir = tempfile::tempdir().unwrap();
    let all = nested();
    for (name, part) in [("data-00000-of-00002.arrow", &all[..1]), ("data-00001-of-00002.arrow", &all[1..])] {
        write_stream(&dir.path().join(name), part);
    }
    std::fs::write(
        dir.path().join("state.json"),
        r#"{"_data_files": [{"filename": "data-00000-of-00002.arrow"}, {"filename": "data-00001-of-00002.arrow"}], "_split": "train"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("dataset_info.json"), "{}").unwrap();
    assert_eq!(read_dataset(dir.path()).unwrap(), all);
    std::fs::write(dir.path().join("state.json"), r#"{"_data_files": [{"filename": "../x.arrow"}]}"#).unwrap();
    let e = schema_error(dir.path());
    assert!(e.contains("state.json") && e.contains("not a file name inside"), "{e}");
    std::fs::write(dir.path().join("dataset_dict.json"), r#"{"splits": ["train"]}"#).unwrap();
    let e = schema_error(dir.path());
    assert!(e.contains("DatasetDict") && e.contains("one split"), "{e}");
}

fn write_stream(path: &Path, part: &[Row]) {
    use arrow_json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
    let values: Vec<serde_json::Value> = part.iter().map(|r| serde_json::Value::Object(r.clone())).collect();
    let schema = std::sync::Arc::new(infer_json_schema_from_iterator(values.iter().map(Ok)).unwrap());
    let mut decoder = ReaderBuilder::new(schema.clone()).build_decoder().unwrap();
    decoder.serialize(part).unwrap();
    let batch = decoder.flush().unwrap().unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &schema).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
}

#[test]
fn a_corrupt_parquet_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.parquet");
    std::fs::write(&p, b"not parquet at all").unwrap();
    let e = schema_error(&p);
    assert!(e.contains("junk.parquet") && e.contains("not a readable Parquet file"), "{e}");
}
