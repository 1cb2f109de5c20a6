//! GGUF (v2/v3) reader: header, typed metadata, tensor table, aligned data.
//!
//! Layout (all little-endian), after llama.cpp's `gguf.cpp`:
//! `"GGUF" u32:version u64:n_tensors u64:n_kv`, then `n_kv` key/value pairs
//! (`string key, u32 type, value`), then `n_tensors` tensor infos
//! (`string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset`),
//! padding to `general.alignment` (default 32), then the tensor data; each
//! tensor's offset is relative to the start of the data section.
//!
//! The file is memory-mapped; [`GgufFile::tensor_f32`] dequantizes one
//! tensor on demand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::LmError;
use crate::quant::{self, GgmlType};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `GGUF_TYPE_UINT8`
    U8(u8),
    /// `GGUF_TYPE_INT8`
    I8(i8),
    /// `GGUF_TYPE_UINT16`
    U16(u16),
    /// `GGUF_TYPE_INT16`
    I16(i16),
    /// `GGUF_TYPE_UINT32`
    U32(u32),
    /// `GGUF_TYPE_INT32`
    I32(i32),
    /// `GGUF_TYPE_FLOAT32`
    F32(f32),
    /// `GGUF_TYPE_BOOL`
    Bool(bool),
    /// `GGUF_TYPE_STRING` (bytes that are not UTF-8 are replaced lossily)
    String(String),
    /// `GGUF_TYPE_ARRAY`: elements share one type (nested arrays allowed).
    Array(Vec<MetaValue>),
    /// `GGUF_TYPE_UINT64`
    U64(u64),
    /// `GGUF_TYPE_INT64`
    I64(i64),
    /// `GGUF_TYPE_FLOAT64`
    F64(f64),
}

impl MetaValue {
    fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::String(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml's `ne`: innermost dimension first (`[in, out]` for a weight).
    pub dims: Vec<u64>,
    /// The element type.
    pub dtype: GgmlType,
    /// Offset of its data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The shape in row-major order (outermost first, like PyTorch):
    /// the reverse of [`TensorInfo::dims`].
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The bytes of a GGUF file: mapped from disk, or owned (parsed from memory).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An open, memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Bytes,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file; tensor data stays mapped, not read.
    pub fn open(path: &Path) -> Result<GgufFile, LmError> {
        let file = std::fs::File::open(path).map_err(|e| LmError::io(path, e))?;
        // SAFETY: the map is read-only; a file modified while mapped is the
        // caller's problem, as with any mmap-based model loader.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LmError::io(path, e))?;
        Self::parse(path.to_path_buf(), Bytes::Mapped(mmap))
    }

    /// Parses a GGUF file held in memory; `path` only names it in errors.
    /// The same checks as [`GgufFile::open`] (used by the fuzz targets).
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile, LmError> {
        Self::parse(path.into(), Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, mmap: Bytes) -> Result<GgufFile, LmError> {
        let mut r = Reader {
            buf: &mmap,
            pos: 0,
            path: &path,
        };
        if mmap.len() < 4 || &mmap[..4] != MAGIC {
            return Err(LmError::NotGguf {
                magic: mmap[..mmap.len().min(4)].to_vec(),
                path,
            });
        }
        r.pos = 4;
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(LmError::UnsupportedGgufVersion { path, version });
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Every entry takes at least 8 bytes, so larger counts are corrupt.
        r.check_count(n_tensors, 8, "tensor count")?;
        r.check_count(n_kv, 8, "metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32("metadata value type")?;
            let value = r.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            tensors.push(r.tensor_info()?);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => return Err(malformed(&path, format!("general.alignment {v:?} is not a power of two"))),
            },
        };
        let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;
        let file = GgufFile {
            by_name: tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect(),
            path,
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            mmap,
        };
        file.check_tensor_ranges()?;
        Ok(file)
    }

    fn check_tensor_ranges(&self) -> Result<(), LmError> {
        let len = self.mmap.len() as u64;
        for t in &self.tensors {
            if t.offset % self.alignment != 0 {
                return Err(malformed(
                    &self.path,
                    format!("tensor `{}` offset {} is not a multiple of the alignment {}", t.name, t.offset, self.alignment),
                ));
            }
            let n = t.n_elements();
            if t.dtype.block_bytes().is_none() {
                continue;
            }
            if n % t.dtype.block_size() as u64 != 0 {
                return Err(malformed(
                    &self.path,
                    format!("tensor `{}` has {n} elements, not a multiple of the {} block size {}", t.name, t.dtype, t.dtype.block_size()),
                ));
            }
            // Checked: a corrupt header can claim sizes and offsets near
            // 2^64, which would wrap around and pass a plain comparison.
            let size = t.dtype.byte_size(n);
            let end = size.and_then(|size| self.data_offset.checked_add(t.offset)?.checked_add(size));
            match end {
                Some(end) if end <= len => {}
                _ => {
                    return Err(LmError::Truncated {
                        path: self.path.clone(),
                        what: format!("tensor `{}` ({n} elements of {} at offset {})", t.name, t.dtype, t.offset),
                        needed: end.unwrap_or(u64::MAX),
                        len,
                    })
                }
            }
        }
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor's table entry.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// A metadata string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key)?.as_str()
    }

    /// A metadata unsigned integer (any integer width that fits).
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.metadata.get(key)?.as_u64()?.try_into().ok()
    }

    /// A metadata signed integer (any integer width that fits).
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.metadata.get(key)?.as_i64()
    }

    /// A metadata float (f32, f64 or an integer).
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.metadata.get(key)?.as_f64().map(|v| v as f32)
    }

    /// A metadata bool.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.metadata.get(key)? {
            MetaValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A metadata array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        match self.metadata.get(key)? {
            MetaValue::Array(items) => items.iter().map(MetaValue::as_str).collect(),
            _ => None,
        }
    }

    /// A metadata array of integers (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Option<Vec<i32>> {
        match self.metadata.get(key)? {
            MetaValue::Array(items) => items
                .iter()
                .map(|v| v.as_i64().and_then(|i| i32::try_from(i).ok()))
                .collect(),
            _ => None,
        }
    }

    /// A metadata array of floats (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        match self.metadata.get(key)? {
            MetaValue::Array(items) => items.iter().map(|v| v.as_f64().map(|f| f as f32)).collect(),
            _ => None,
        }
    }

    /// A tensor's raw bytes as stored.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, &[u8]), LmError> {
        let info = self.tensor_info(name).ok_or_else(|| LmError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        let size = info
            .dtype
            .byte_size(info.n_elements())
            .ok_or_else(|| self.unsupported(info))?;
        let start = (self.data_offset + info.offset) as usize;
        Ok((info, &self.mmap[start..start + size as usize]))
    }

    /// A tensor dequantized to f32, with its row-major shape (outermost
    /// dimension first: `[out, in]` for a weight, `[vocab, dim]` for
    /// `token_embd.weight`).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), LmError> {
        let (info, bytes) = self.tensor_bytes(name)?;
        let data = quant::dequantize(info.dtype, bytes, info.n_elements() as usize)
            .ok_or_else(|| self.unsupported(info))?;
        Ok((info.shape(), data))
    }

    fn unsupported(&self, info: &TensorInfo) -> LmError {
        match info.dtype {
            GgmlType::Unknown(type_id) => LmError::UnknownTensorType {
                path: self.path.clone(),
                tensor: info.name.clone(),
                type_id,
            },
            dtype => LmError::UnsupportedTensorType {
                path: self.path.clone(),
                tensor: info.name.clone(),
                dtype: dtype.to_string(),
            },
        }
    }
}

fn malformed(path: &Path, what: String) -> LmError {
    LmError::MalformedGguf {
        path: path.to_path_buf(),
        what,
    }
}

/// A bounds-checked little-endian cursor over the mapped file.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], LmError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(LmError::Truncated {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                needed: (self.pos as u64).saturating_add(n as u64),
                len: self.buf.len() as u64,
            });
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], LmError> {
        Ok(self.take(N, what)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, LmError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, LmError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects counts that could not fit in the rest of the file.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), LmError> {
        let left = (self.buf.len() - self.pos) as u64;
        if count.saturating_mul(min_size) > left {
            return Err(LmError::Truncated {
                path: self.path.to_path_buf(),
                what: format!("{what} {count}"),
                // Saturating: the count is corrupt, and may be near 2^64.
                needed: (self.pos as u64).saturating_add(count.saturating_mul(min_size)),
                len: self.buf.len() as u64,
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, LmError> {
        let len = self.u64(what)?;
        self.check_count(len, 1, what)?;
        let bytes = self.take(len as usize, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<MetaValue, LmError> {
        let what = || format!("metadata value `{key}`");
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(&what())?[0]),
            1 => MetaValue::I8(self.array::<1>(&what())?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(&what())?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(&what())?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array(&what())?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(&what())?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(&what())?)),
            7 => MetaValue::Bool(self.array::<1>(&what())?[0] != 0),
            8 => MetaValue::String(self.string(&what())?),
            9 => {
                if depth > 8 {
                    return Err(malformed(self.path, format!("metadata `{key}`: arrays nested too deep")));
                }
                let elem_ty = self.u32(&what())?;
                let len = self.u64(&what())?;
                self.check_count(len, 1, &what())?;
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.array(&what())?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(&what())?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(&what())?)),
            other => {
                return Err(malformed(self.path, format!("metadata `{key}` has unknown value type {other}")));
            }
        })
    }

    fn tensor_info(&mut self) -> Result<TensorInfo, LmError> {
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dims")?;
        if n_dims > 4 {
            return Err(malformed(self.path, format!("tensor `{name}` has {n_dims} dimensions (max 4)")));
        }
        let dims = (0..n_dims)
            .map(|_| self.u64("tensor dims"))
            .collect::<Result<Vec<_>, _>>()?;
        if dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).is_none() {
            return Err(malformed(self.path, format!("tensor `{name}` dimensions {dims:?} overflow")));
        }
        let type_id = self.u32("tensor type")?;
        let dtype = GgmlType::from_id(type_id);
        if let GgmlType::Unknown(type_id) = dtype {
            return Err(LmError::UnknownTensorType {
                path: self.path.to_path_buf(),
                tensor: name,
                type_id,
            });
        }
        let offset = self.u64("tensor offset")?;
        Ok(TensorInfo {
            name,
            dims,
            dtype,
            offset,
        })
    }
}

mod export;
mod write;
#[cfg(test)]
mod tests;

pub use export::export_gguf;
pub use write::{write_gguf, RawTensor};
