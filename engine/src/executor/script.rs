//! The batch script and `sbatch` options of one stage's job.
//!
//! The script only runs `retort exec-stage` for the stage, with the same
//! pipeline file, `--set` overrides and cache directory as the run that
//! submits it; the resources are `sbatch` options on the command line, so
//! no value needs quoting for Slurm's `#SBATCH` parser. The script and the
//! job's log live in `slurm/` under the cache directory, which the node
//! reaches through the shared filesystem.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use retort_cache::Hash;

use super::config::SlurmSpec;

/// One stage's job, before it is submitted.
pub struct JobFiles {
    /// The batch script (on this machine: `sbatch` reads it when it submits).
    pub script: PathBuf,
    /// The log, with Slurm's `%j` for the job id.
    pub log_pattern: PathBuf,
    /// Whether the log is in a node-local cache directory (`cache_dir:`),
    /// which Slurm cannot be trusted to find: the script creates it and
    /// sends its own output there, instead of `sbatch --output`.
    pub log_on_node: bool,
}

impl JobFiles {
    /// The files for stage `stage`'s run with fingerprint `fp` in the store
    /// at `store_root`, with the log under `node_root` when the node has a
    /// cache directory of its own. Two stages can share a fingerprint (the
    /// name is not hashed) and run at once, so the name is in the file name
    /// too.
    pub fn new(store_root: &Path, node_root: Option<&Path>, fp: &Hash, stage: &str) -> JobFiles {
        let tag = &retort_cache::hash_bytes(stage.as_bytes()).to_hex()[..8];
        let stem = format!("{}-{tag}", fp.to_hex());
        let log_dir = node_root.unwrap_or(store_root).join("slurm");
        JobFiles {
            script: store_root.join("slurm").join(format!("{stem}.sh")),
            log_pattern: log_dir.join(format!("{stem}-%j.log")),
            log_on_node: node_root.is_some(),
        }
    }

    /// The log of job `id`.
    pub fn log(&self, id: &str) -> PathBuf {
        PathBuf::from(self.log_pattern.to_string_lossy().replace("%j", id))
    }
}

/// Removes the job files (scripts and logs) under `store_root/slurm/` of
/// every run not in `keep`, for `cache gc`; returns how many files and
/// bytes went. Files are named by fingerprint ([`JobFiles::new`]), so a
/// kept run keeps its job's log; a failed job's files go with it. The
/// caller holds the store lock, so no job of this cache is being written.
pub fn gc(store_root: &Path, keep: &BTreeSet<Hash>) -> std::io::Result<(usize, u64)> {
    let dir = store_root.join("slurm");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let fp = name.to_str().and_then(|n| n.get(..64)).and_then(|hex| hex.parse::<Hash>().ok());
        if fp.is_some_and(|fp| keep.contains(&fp)) || !entry.file_type()?.is_file() {
            continue;
        }
        bytes += entry.metadata()?.len();
        std::fs::remove_file(entry.path())?;
        files += 1;
    }
    Ok((files, bytes))
}

/// What the job runs.
pub struct NodeCommand<'a> {
    /// The `retort` binary (the node reaches it at the same path).
    pub retort: &'a Path,
    /// The cache directory.
    pub cache_dir: &'a Path,
    /// The pipeline file, absolute.
    pub pipeline: &'a Path,
    /// The `--set` overrides of the run.
    pub overrides: &'a [String],
    /// The stage.
    pub stage: &'a str,
    /// Its fingerprint as planned here; the node refuses to run another.
    pub fingerprint: &'a Hash,
    /// The remote cache of the run (`--remote`), if it has one.
    pub remote: Option<&'a str>,
    /// Where the script sends its output itself (a log under a node-local
    /// cache directory, with `%j` for the job id); `None` when `sbatch
    /// --output` does.
    pub log: Option<&'a Path>,
}

impl NodeCommand<'_> {
    /// `retort exec-stage ...` as words.
    pub fn argv(&self) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut argv = vec![
            path(self.retort),
            "--cache-dir".into(),
            path(self.cache_dir),
            "--log-format".into(),
            "plain".into(),
            "exec-stage".into(),
            path(self.pipeline),
            "--stage".into(),
            self.stage.to_string(),
            "--fingerprint".into(),
            self.fingerprint.to_hex(),
        ];
        for o in self.overrides {
            argv.push("--set".into());
            argv.push(o.clone());
        }
        if let Some(url) = self.remote {
            argv.push("--remote".into());
            argv.push(url.to_string());
        }
        argv
    }

    /// The batch script: `exec` of [`Self::argv`], each word quoted, after
    /// redirecting its output to [`Self::log`] if there is one.
    pub fn script(&self) -> String {
        let words: Vec<String> = self.argv().iter().map(|w| quote(w)).collect();
        let redirect = match self.log {
            None => String::new(),
            Some(log) => {
                let log = log.to_string_lossy();
                let (before, after) = log.split_once("%j").unwrap_or((&log, ""));
                let dir = Path::new(before).parent().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
                format!("mkdir -p {} && exec >>{}\"$SLURM_JOB_ID\"{} 2>&1\n", quote(&dir), quote(before), quote(after))
            }
        };
        format!(
            "#!/bin/sh\n# Written by retort: runs stage `{}` (fingerprint {}) of {} on the node.\n{redirect}exec {}\n",
            self.stage.replace('\n', " "),
            self.fingerprint.short(),
            self.pipeline.display().to_string().replace('\n', " "),
            words.join(" ")
        )
    }
}

/// The `sbatch` options of a submission: the stage's resources, a job name,
/// the log and the working directory.
pub fn sbatch_args(spec: &SlurmSpec, stage: &str, files: &JobFiles, workdir: &Path) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name=retort:{stage}"),
        match files.log_on_node {
            // The script writes its log itself (see [`NodeCommand::log`]).
            true => "--output=/dev/null".to_string(),
            false => format!("--output={}", files.log_pattern.display()),
        },
        format!("--chdir={}", workdir.display()),
    ];
    args.extend(spec.sbatch_args());
    args.push(files.script.to_string_lossy().into_owned());
    args
}

/// `word` as one POSIX shell word.
pub fn quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:@,+".contains(&b)) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn the_script_passes_every_word_through_the_shell_unchanged() {
        let fp = retort_cache::fingerprint(&"x");
        let overrides = ["stages.a.run=echo 'hi' $HOME \"x\"".to_string(), "seed=3".into()];
        let cmd = NodeCommand {
            retort: Path::new("/opt/re tort/retort"),
            cache_dir: Path::new("/shared/.retort"),
            pipeline: Path::new("/work/p.yaml"),
            overrides: &overrides,
            stage: "train@lr=0.1,seed=2",
            fingerprint: &fp,
            remote: Some("s3://b/p x"),
            log: None,
        };
        let script = cmd.script();
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        // Run the script with `exec` replaced by printing each word.
        let body = script.replace("\nexec ", "\nprintf '%s\\n' ");
        let out = Command::new("sh").arg("-c").arg(body).output().unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
        assert_eq!(words, cmd.argv());
        assert!(words.contains(&"exec-stage".to_string()) && words.contains(&fp.to_hex()));
        assert_eq!(words[words.len() - 2..], ["--remote", "s3://b/p x"]);
    }

    #[test]
    fn with_a_node_local_cache_the_script_writes_its_own_log() {
        let root = tempfile::tempdir().unwrap();
        let fp = retort_cache::fingerprint(&"x");
        let node = root.path().join("node cache");
        let files = JobFiles::new(Path::new("/c"), Some(&node), &fp, "train");
        assert!(files.log_on_node && files.script.starts_with("/c/slurm"));
        assert_eq!(sbatch_args(&SlurmSpec::default(), "s", &files, Path::new("/w"))[2], "--output=/dev/null");
        let cmd = NodeCommand {
            retort: Path::new("/bin/retort"),
            cache_dir: &node,
            pipeline: Path::new("/work/p.yaml"),
            overrides: &[],
            stage: "train",
            fingerprint: &fp,
            remote: None,
            log: Some(&files.log_pattern),
        };
        // The node's `slurm/` does not exist yet: the script makes it.
        let body = cmd.script().replace("\nexec /bin/retort", "\necho ran");
        let out = Command::new("sh").arg("-c").arg(body).env("SLURM_JOB_ID", "77").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read_to_string(files.log("77")).unwrap().starts_with("ran"));
    }

    #[test]
    fn logs_are_named_by_fingerprint_and_job_id() {
        let fp = retort_cache::fingerprint(&"x");
        let files = JobFiles::new(Path::new("/c"), None, &fp, "train");
        let tag = &retort_cache::hash_bytes(b"train").to_hex()[..8];
        let stem = format!("{}-{tag}", fp.to_hex());
        assert_eq!(files.log("42"), PathBuf::from(format!("/c/slurm/{stem}-42.log")));
        assert_ne!(JobFiles::new(Path::new("/c"), None, &fp, "eval").script, files.script, "two stages with one fingerprint");
        let spec = SlurmSpec { cpus: Some(2), ..SlurmSpec::default() };
        let args = sbatch_args(&spec, "s", &files, Path::new("/w"));
        assert_eq!(args[..4], ["--parsable", "--job-name=retort:s", &format!("--output=/c/slurm/{stem}-%j.log"), "--chdir=/w"]);
        assert_eq!(args[4..], ["--cpus-per-task=2".to_string(), files.script.display().to_string()]);
    }

    #[test]
    fn gc_removes_the_job_files_of_runs_not_kept() {
        let root = tempfile::tempdir().unwrap();
        let (kept, gone) = (retort_cache::fingerprint(&"kept"), retort_cache::fingerprint(&"gone"));
        let (a, b) = (JobFiles::new(root.path(), None, &kept, "train"), JobFiles::new(root.path(), None, &gone, "train"));
        std::fs::create_dir_all(root.path().join("slurm")).unwrap();
        for path in [&a.script, &a.log("7"), &b.script, &b.log("8"), &b.log("9")] {
            std::fs::write(path, "0123456789").unwrap();
        }
        std::fs::write(root.path().join("slurm/notes.txt"), "x").unwrap();
        assert_eq!(gc(root.path(), &BTreeSet::from([kept])).unwrap(), (4, 31));
        assert!(a.script.exists() && a.log("7").exists() && !b.script.exists() && !b.log("9").exists());
        assert_eq!(gc(root.path(), &BTreeSet::from([kept])).unwrap(), (0, 0), "nothing left to remove");
        assert_eq!(gc(&root.path().join("none"), &BTreeSet::new()).unwrap(), (0, 0), "no slurm/ directory");
    }
}
