//! Which files make up the dataset at a path: the file itself, the Parquet
//! shards of a folder, or the Arrow files of a `save_to_disk` folder.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{DatasetError, FileFormat};

/// The files of the dataset at `path`, in order, each with its format.
pub fn files(path: &Path) -> Result<Vec<(PathBuf, FileFormat)>, DatasetError> {
    let meta = fs::metadata(path).map_err(|e| DatasetError::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![(path.to_path_buf(), FileFormat::of(path))]);
    }
    if path.join("dataset_dict.json").is_file() {
        let splits = subdirs(path)?;
        return Err(DatasetError::Layout {
            path: path.to_path_buf(),
            message: format!(
                "a `datasets` DatasetDict with splits {}; point `path:` at one split's folder (e.g. `{}`)",
                splits.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                path.join(splits.first().map_or("train", String::as_str)).display()
            ),
        });
    }
    if path.join("state.json").is_file() {
        return saved_to_disk(path);
    }
    let mut shards = Vec::new();
    parquet_under(path, &mut shards)?;
    shards.sort();
    if shards.is_empty() {
        return Err(DatasetError::Layout {
            path: path.to_path_buf(),
            message: "a folder with no `.parquet` files and no `state.json`: expected Parquet shards (as on the HF \
                      Hub) or a folder written by `datasets`' `save_to_disk`"
                .into(),
        });
    }
    let splits: BTreeSet<String> = shards.iter().filter_map(|p| split_of(p)).collect();
    if splits.len() > 1 {
        return Err(DatasetError::Layout {
            path: path.to_path_buf(),
            message: format!(
                "Parquet shards of several splits ({}); point `path:` at one split's shard, or a folder holding one split",
                splits.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(shards.into_iter().map(|p| (p, FileFormat::Parquet)).collect())
}

/// The Arrow files of a `save_to_disk` folder, in `state.json`'s order.
fn saved_to_disk(dir: &Path) -> Result<Vec<(PathBuf, FileFormat)>, DatasetError> {
    let state_path = dir.join("state.json");
    let text = fs::read_to_string(&state_path).map_err(|e| DatasetError::io(&state_path, e))?;
    let bad = |m: String| DatasetError::Layout { path: state_path.clone(), message: m };
    let state: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let files = state
        .get("_data_files")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("no `_data_files` list: not a `datasets` save_to_disk state".into()))?;
    let mut out = Vec::new();
    for f in files {
        let name = f.get("filename").and_then(|v| v.as_str()).ok_or_else(|| bad("a `_data_files` entry without `filename`".into()))?;
        // A name that climbs out of the folder is not ours to read.
        if Path::new(name).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(bad(format!("`{name}` is not a file name inside the folder")));
        }
        out.push((dir.join(name), FileFormat::Arrow));
    }
    Ok(out)
}

fn parquet_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DatasetError> {
    for entry in fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))? {
        let entry = entry.map_err(|e| DatasetError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        // `.cache`, `.git`, `.huggingface`: not data.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            parquet_under(&path, out)?;
        } else if FileFormat::of(&path) == FileFormat::Parquet {
            out.push(path);
        }
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Result<Vec<String>, DatasetError> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map_err(|e| DatasetError::io(dir, e))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    Ok(out)
}

/// The split a Hub shard belongs to: `train` for `train-00000-of-00002.parquet`
/// (the Hub's naming), or the folder for `train/0000.parquet` (its Parquet
/// conversion's naming).
fn split_of(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    if let Some((split, rest)) = stem.split_once('-') {
        let mut parts = rest.split('-');
        let numbered = |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
        if numbered(parts.next()) && parts.next() == Some("of") && numbered(parts.next()) {
            return Some(split.to_string());
        }
    }
    if stem.bytes().all(|b| b.is_ascii_digit()) {
        return path.parent()?.file_name()?.to_str().map(str::to_string);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::split_of;
    use std::path::Path;

    #[test]
    fn hub_shard_names_give_their_split() {
        assert_eq!(split_of(Path::new("data/train-00000-of-00002.parquet")).as_deref(), Some("train"));
        assert_eq!(split_of(Path::new("default/test/0000.parquet")).as_deref(), Some("test"));
        assert_eq!(split_of(Path::new("data/my-file.parquet")), None);
    }
}
