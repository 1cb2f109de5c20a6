//! `executor:` — where a stage executes: here (`local`) or as a Slurm job
//! (`slurm: {partition, gpus, ...}`).
//!
//! Set once for the pipeline (the default of every stage) or per stage.
//! Never hashed: the same stage run here or on a GPU node is the same cache
//! entry, so moving a stage between machines keeps its results.

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Where a stage executes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorSpec {
    /// In this process, on this machine (the default).
    #[default]
    Local,
    /// As a Slurm batch job that runs `retort exec-stage` on a node.
    Slurm(SlurmSpec),
}

impl ExecutorSpec {
    /// The Slurm options, when the stage runs on Slurm.
    pub fn slurm(&self) -> Option<&SlurmSpec> {
        match self {
            ExecutorSpec::Local => None,
            ExecutorSpec::Slurm(s) => Some(s),
        }
    }
}

/// The resources of a stage's Slurm job; each maps onto one `sbatch` option.
/// Unset fields are left to the cluster's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    /// `--partition`: the queue to submit to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--gpus`: GPUs for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// `--cpus-per-task`: CPU cores for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// `--mem`: memory per node, in Slurm's syntax (`16G`, `500M`; a bare
    /// number is megabytes).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "text_or_number")]
    #[schemars(schema_with = "text_or_number_schema")]
    pub mem: Option<String>,
    /// `--time`: the wall-time limit, in Slurm's syntax (`90` minutes,
    /// `"1:30:00"`, `"2-00:00:00"`). A job past it is killed (TIMEOUT) and
    /// the next run submits the stage again.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "text_or_number")]
    #[schemars(schema_with = "text_or_number_schema")]
    pub time: Option<String>,
    /// `--account`: the account charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Further `sbatch` options, passed as given (`["--qos=high",
    /// "--constraint=a100"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// The cache directory on the node. By default the node uses this
    /// machine's cache directory at the same path (a shared filesystem).
    /// With a remote cache (`cache.remote`), a node-local directory works
    /// instead (`/scratch/retort`): the job fetches what the stage needs
    /// from the remote and pushes what it made, and the job's log stays on
    /// the node, in `slurm/` under this directory. The node must still
    /// reach the pipeline's directory and the `retort` binary at the same
    /// paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<std::path::PathBuf>,
}

impl SlurmSpec {
    /// The `sbatch` options these resources ask for, in a fixed order.
    pub fn sbatch_args(&self) -> Vec<String> {
        // `cache_dir` is not an sbatch option: it is the node's `--cache-dir`.
        let SlurmSpec { partition, gpus, cpus, mem, time, account, extra_args, cache_dir: _ } = self;
        let mut args = Vec::new();
        let mut opt = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        };
        opt("partition", partition.clone());
        opt("gpus", gpus.map(|g| g.to_string()));
        opt("cpus-per-task", cpus.map(|c| c.to_string()));
        opt("mem", mem.clone());
        opt("time", time.clone());
        opt("account", account.clone());
        args.extend(extra_args.iter().cloned());
        args
    }
}

/// A string, or a number read as its text (`time: 90`, `mem: 4000`).
fn text_or_number_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "integer", "null"]})
}

fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

const VARIANTS: &[&str] = &["local", "slurm"];

/// `local`, `slurm` (cluster defaults), `{slurm: {...}}` or `{local: {}}`.
/// Written by hand because the short forms are what people type, and so
/// that an unknown key under `slurm:` keeps its path for the error's line.
impl<'de> Deserialize<'de> for ExecutorSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExecutorSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`local`, `slurm` or a mapping `slurm: {partition, gpus, cpus, mem, time, account, extra_args, cache_dir}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "local" => Ok(ExecutorSpec::Local),
                    "slurm" => Ok(ExecutorSpec::Slurm(SlurmSpec::default())),
                    other => Err(E::unknown_variant(other, VARIANTS)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::invalid_length(0, &self));
                };
                let spec = match key.as_str() {
                    "local" => {
                        map.next_value::<de::IgnoredAny>()?;
                        ExecutorSpec::Local
                    }
                    "slurm" => ExecutorSpec::Slurm(map.next_value::<Option<SlurmSpec>>()?.unwrap_or_default()),
                    other => return Err(de::Error::unknown_variant(other, VARIANTS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "executor takes one of `local` or `slurm`, not also `{extra}`"
                    )));
                }
                Ok(spec)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ExecutorSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExecutorSpec".into()
    }

    fn json_schema(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let slurm = gen.subschema_for::<SlurmSpec>();
        schemars::json_schema!({
            "description": "Where the stage executes: `local` (default) or `slurm` with the job's resources. Not hashed.",
            "oneOf": [
                {"enum": ["local", "slurm"]},
                {"type": "object", "properties": {"local": {}}, "required": ["local"], "additionalProperties": false},
                {"type": "object", "properties": {"slurm": {"anyOf": [slurm, {"type": "null"}]}}, "required": ["slurm"], "additionalProperties": false}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ExecutorSpec, String> {
        let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn short_and_long_forms() {
        assert_eq!(parse("local").unwrap(), ExecutorSpec::Local);
        assert_eq!(parse("slurm").unwrap(), ExecutorSpec::Slurm(SlurmSpec::default()));
        assert_eq!(parse("slurm: {}").unwrap(), ExecutorSpec::Slurm(SlurmSpec::default()));
        assert_eq!(parse("slurm:").unwrap(), ExecutorSpec::Slurm(SlurmSpec::default()));
        let full = parse("slurm: {partition: gpu, gpus: 8, cpus: 16, mem: 64G, time: 90, account: lab, extra_args: ['--qos=high']}").unwrap();
        assert_eq!(
            full.slurm().unwrap().sbatch_args(),
            ["--partition=gpu", "--gpus=8", "--cpus-per-task=16", "--mem=64G", "--time=90", "--account=lab", "--qos=high"]
        );
    }

    #[test]
    fn errors_keep_their_path() {
        let e = parse("slurm: {partiton: gpu}").unwrap_err();
        assert!(e.starts_with("slurm.partiton: unknown field `partiton`"), "{e}");
        let e = parse("slurn: {}").unwrap_err();
        assert!(e.contains("unknown variant `slurn`"), "{e}");
        let e = parse("slurm: {gpus: many}").unwrap_err();
        assert!(e.starts_with("slurm.gpus: invalid type"), "{e}");
        assert!(parse("{slurm: {}, local: {}}").unwrap_err().contains("not also `local`"));
    }
}
