//! Safetensors checkpoints (one file or shards) as a weight source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use super::{ShapedData, TensorSource};
use crate::error::LmError;

/// One or more safetensors files (e.g. shards) as a [`TensorSource`].
pub(crate) struct SafetensorsSource {
    path: PathBuf,
    files: Vec<(PathBuf, memmap2::Mmap)>,
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`, in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self, LmError> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let paths = if single.exists() {
            vec![single]
        } else if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| LmError::io(&index_path, e))?;
            let index: serde_json::Value = serde_json::from_str(&text).map_err(|source| LmError::Json {
                path: index_path.clone(),
                source,
            })?;
            let mut shards: Vec<String> = index["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(LmError::NotAModel { path: dir.to_path_buf() });
        };
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for (i, p) in paths.into_iter().enumerate() {
            let f = std::fs::File::open(&p).map_err(|e| LmError::io(&p, e))?;
            // SAFETY: read-only map of a checkpoint that is not modified while loading.
            let mmap = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| LmError::io(&p, e))?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| LmError::Safetensors {
                path: p.clone(),
                what: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            files.push((p, mmap));
        }
        Ok(Self {
            path: dir.to_path_buf(),
            files,
            index,
        })
    }
}

impl TensorSource for SafetensorsSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn get(&self, name: &str) -> Result<Option<ShapedData>, LmError> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let (path, mmap) = &self.files[i];
        let err = |what: String| LmError::Safetensors {
            path: path.clone(),
            what,
        };
        let st = SafeTensors::deserialize(mmap).map_err(|e| err(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| err(e.to_string()))?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => return Err(err(format!("tensor `{name}` has unsupported dtype {other:?}"))),
        };
        Ok(Some((view.shape().to_vec(), data)))
    }
}

