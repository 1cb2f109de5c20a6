//! The batch script and `sbatch` options of one stage's job.
//!
//! The script only runs `retort exec-stage` for the stage, with the same
//! pipeline file, `--set` overrides and cache directory as the run that
//! submits it; the resources are `sbatch` options on the command line, so
//! no value needs quoting for Slurm's `#SBATCH` parser. The script and the
//! job's log live in `slurm/` under the cache directory, which the node
//! reaches through the shared filesystem.

use std::path::{Path, PathBuf};

use retort_cache::Hash;

use super::config::SlurmSpec;

/// One stage's job, before it is submitted.
pub struct JobFiles {
    /// The batch script.
    pub script: PathBuf,
    /// The log, with Slurm's `%j` for the job id.
    pub log_pattern: PathBuf,
}

impl JobFiles {
    /// The files for stage `stage`'s run with fingerprint `fp` in the store
    /// at `store_root`. Two stages can share a fingerprint (the name is not
    /// hashed) and run at once, so the name is in the file name too.
    pub fn new(store_root: &Path, fp: &Hash, stage: &str) -> JobFiles {
        let dir = store_root.join("slurm");
        let hex = fp.to_hex();
        let tag = &retort_cache::hash_bytes(stage.as_bytes()).to_hex()[..8];
        JobFiles { script: dir.join(format!("{hex}-{tag}.sh")), log_pattern: dir.join(format!("{hex}-{tag}-%j.log")) }
    }

    /// The log of job `id`.
    pub fn log(&self, id: &str) -> PathBuf {
        PathBuf::from(self.log_pattern.to_string_lossy().replace("%j", id))
    }
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
        argv
    }

    /// The batch script: `exec` of [`Self::argv`], each word quoted.
    pub fn script(&self) -> String {
        let words: Vec<String> = self.argv().iter().map(|w| quote(w)).collect();
        format!(
            "#!/bin/sh\n# Written by retort: runs stage `{}` (fingerprint {}) of {} on the node.\nexec {}\n",
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
        format!("--output={}", files.log_pattern.display()),
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
        };
        let script = cmd.script();
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        // Run the script with `exec` replaced by printing each word.
        let body = script.replace("\nexec ", "\nprintf '%s\\n' ");
        let out = Command::new("sh").arg("-c").arg(body).output().unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
        assert_eq!(words, cmd.argv());
        assert!(words.contains(&"exec-stage".to_string()) && words.contains(&fp.to_hex()));
    }

    #[test]
    fn logs_are_named_by_fingerprint_and_job_id() {
        let fp = retort_cache::fingerprint(&"x");
        let files = JobFiles::new(Path::new("/c"), &fp, "train");
        let tag = &retort_cache::hash_bytes(b"train").to_hex()[..8];
        let stem = format!("{}-{tag}", fp.to_hex());
        assert_eq!(files.log("42"), PathBuf::from(format!("/c/slurm/{stem}-42.log")));
        assert_ne!(JobFiles::new(Path::new("/c"), &fp, "eval").script, files.script, "two stages with one fingerprint");
        let spec = SlurmSpec { cpus: Some(2), ..SlurmSpec::default() };
        let args = sbatch_args(&spec, "s", &files, Path::new("/w"));
        assert_eq!(args[..4], ["--parsable", "--job-name=retort:s", &format!("--output=/c/slurm/{stem}-%j.log"), "--chdir=/w"]);
        assert_eq!(args[4..], ["--cpus-per-task=2".to_string(), files.script.display().to_string()]);
    }
}
