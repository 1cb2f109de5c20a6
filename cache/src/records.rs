//! The plain data types of the store: what an object is, what a run
//! produced, and the reports of `du` and `gc`.
//!
//! They are serde types because run records and the lock file persist them;
//! field names are part of the on-disk formats, so renaming one needs a
//! format version bump.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// Whether an artifact is a single file or a directory of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A single file (a JSON Lines dataset).
    File,
    /// A directory (a model checkpoint).
    Dir,
}

/// An object just put into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// Its name in the store.
    pub hash: Hash,
    /// File or directory.
    pub kind: ArtifactKind,
    /// Size in bytes (for a directory, of all its files).
    pub bytes: u64,
}

/// One output of a stage run, as kept in run records and the lock file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OutputRecord {
    /// The output artifact's hash.
    pub hash: Hash,
    /// File or directory.
    pub kind: ArtifactKind,
    /// Size in bytes.
    pub bytes: u64,
    /// Row count, for datasets.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rows: Option<u64>,
}

/// What a stage run produced: the value stored under its fingerprint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// Output name to artifact.
    pub outputs: BTreeMap<String, OutputRecord>,
    /// Headline metrics reported by the stage.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// How long the run took; reported as time saved on a hit.
    pub duration_ms: u64,
    /// When the run finished, for `cache ls` ordering.
    pub created_unix_ms: u64,
    /// The backend the stage ran its model on (`cpu (burn flex)`,
    /// `wgpu (llvmpipe ..., Vulkan, cpu adapter)`), for stages that ran
    /// one. Provenance only: the device is not part of a fingerprint, so a
    /// model trained on wgpu is reused by a CPU run, and this says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Wall-clock seconds per step by phase (GRPO's `sample_secs` and
    /// `update_secs`), for `retort report`. Kept here, beside
    /// `duration_ms`, and not in an output or the lock: timings differ on
    /// every run, and outputs and the lock must not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings: BTreeMap<String, Vec<f64>>,
}

/// Counts for `cache du`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Number of objects.
    pub objects: u64,
    /// Their total size in bytes.
    pub object_bytes: u64,
    /// Number of run records.
    pub runs: u64,
    /// Number of cached items (distinct keys over every item log).
    pub items: u64,
    /// The item logs' size in bytes.
    pub item_bytes: u64,
}

/// What `gc` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct GcStats {
    /// Objects deleted.
    pub removed_objects: u64,
    /// Their total size in bytes.
    pub removed_bytes: u64,
    /// Run records deleted.
    pub removed_runs: u64,
    /// Item files of the earlier one-file-per-item layout deleted (item
    /// logs are kept: they are what lets a stage resume).
    pub removed_legacy_items: u64,
}

/// The state of an object, as seen by [`Store::state`](crate::Store::state) or
/// [`Store::verify`](crate::Store::verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectState {
    /// Present, and its bytes hash to its name.
    Valid,
    /// Not in the store.
    Missing,
    /// Present but its bytes do not match its name (or cannot be read).
    Corrupt,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    #[test]
    fn kinds_serialize_lowercase() {
        assert_eq!(
            serde_json::to_string(&ArtifactKind::File).unwrap(),
            "\"file\""
        );
        assert_eq!(
            serde_json::to_string(&ArtifactKind::Dir).unwrap(),
            "\"dir\""
        );
        assert!(serde_json::from_str::<ArtifactKind>("\"File\"").is_err());
    }

    #[test]
    fn output_record_omits_missing_rows() {
        let h = hash_bytes(b"m");
        let mut out = OutputRecord {
            hash: h,
            kind: ArtifactKind::Dir,
            bytes: 9,
            rows: None,
        };
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(text, format!(r#"{{"hash":"{h}","kind":"dir","bytes":9}}"#));
        assert_eq!(serde_json::from_str::<OutputRecord>(&text).unwrap(), out);
        out.rows = Some(3);
        assert!(serde_json::to_string(&out)
            .unwrap()
            .ends_with(r#""rows":3}"#));
    }
}
