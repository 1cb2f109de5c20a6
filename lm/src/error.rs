//! The crate's error type: every variant names the file (or device) and
//! what is wrong with it, so the CLI can print it as is.

use std::path::PathBuf;

/// Errors from loading, converting and running models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LmError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{}: not a GGUF file (starts with {magic:02x?}, expected \"GGUF\")", path.display())]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        magic: Vec<u8>,
    },
    /// A GGUF version this reader does not know.
    #[error("{}: unsupported GGUF version {version} (supported: 2 and 3)", path.display())]
    UnsupportedGgufVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        version: u32,
    },
    /// The file ends before a structure it declares.
    #[error("{}: truncated file: {what} needs bytes up to {needed} but the file has {len}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: String,
        /// The end offset it needs.
        needed: u64,
        /// The file's length.
        len: u64,
    },
    /// A structural problem in a GGUF file other than truncation.
    #[error("{}: malformed GGUF: {what}", path.display())]
    MalformedGguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A tensor of a ggml type id this crate does not know.
    #[error("{}: tensor `{tensor}` has unknown ggml type id {type_id}", path.display())]
    UnknownTensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The raw type id.
        type_id: u32,
    },
    /// A tensor type that is known but that this crate cannot dequantize.
    #[error("{}: tensor `{tensor}` has unsupported type {dtype}", path.display())]
    UnsupportedTensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The type's name.
        dtype: String,
    },
    /// A tensor the model needs is absent.
    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor has a shape other than the model needs.
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A metadata key the model needs is absent or has the wrong type.
    #[error("{}: missing or mistyped metadata key `{key}`", path.display())]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A model architecture other than the Llama family.
    #[error("{}: unsupported architecture `{arch}` (supported: llama, qwen2, mistral)", path.display())]
    UnsupportedArchitecture {
        /// The file.
        path: PathBuf,
        /// The architecture named in it.
        arch: String,
    },
    /// A config that is inconsistent or out of range.
    #[error("{}: invalid model config: {what}", path.display())]
    InvalidConfig {
        /// The file (or preset name).
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// An optimizer state (`optimizer.bpk`, `trainer_state.json`) that
    /// cannot be read or written.
    #[error("{}: optimizer state: {what}", path.display())]
    OptimizerState {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        what: String,
    },
    /// Training data or training settings that cannot be used, found
    /// before training starts. Its own variant (not [`LmError::InvalidConfig`])
    /// because the fix is in the data or the `train` stage's settings, not
    /// in the model: `what` names the example or field and what to change.
    #[error("cannot train: {what}")]
    Train {
        /// What is wrong and how to fix it.
        what: String,
    },
    /// A JSON file that does not parse.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file that does not parse.
    #[error("{}: invalid safetensors: {what}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A path that is neither a GGUF file nor a model directory.
    #[error("{}: not a model (expected a .gguf file or a directory with config.json and *.safetensors)", path.display())]
    NotAModel {
        /// The path.
        path: PathBuf,
    },
    /// A device whose backend was not compiled in, or an unknown name.
    #[error("device `{device}` is not available: {why}")]
    Device {
        /// The requested device.
        device: String,
        /// Why it cannot be used.
        why: String,
    },
    /// One prompt of a generation request cannot be run (empty, a token
    /// outside the vocabulary, or too long for the model's context). The
    /// message leaves the index out: `index` is the position in the request,
    /// which only the caller can turn into a row or item it names.
    #[error("{what}")]
    Prompt {
        /// Position of the prompt in the request.
        index: usize,
        /// What is wrong and how to fix it.
        what: String,
    },
    /// A generation request that is inconsistent as a whole (a caller's bug
    /// rather than bad data): `item_ids` and `prompts` of different lengths,
    /// stop strings without a decoder.
    #[error("invalid generation request: {what}")]
    Request {
        /// What is wrong.
        what: String,
    },
    /// The tokenizer could not be loaded or used.
    #[error("{}: tokenizer: {what}", path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl LmError {
    /// The index of the prompt a [`LmError::Prompt`] is about, so that a
    /// caller that batched rows can name the row.
    pub fn prompt_index(&self) -> Option<usize> {
        match self {
            LmError::Prompt { index, .. } => Some(*index),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LmError::Io {
            path: path.into(),
            source,
        }
    }
}
