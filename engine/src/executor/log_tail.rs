//! Copying a job's log file into the stage log while the job runs.
//!
//! The job's `retort exec-stage` writes the stage's log lines (`[stage]
//! message`, as `--log-format plain` prints them) and any error to the file
//! Slurm's `--output` names, on the shared filesystem. Each poll reads what
//! was appended since the last one and re-emits the complete lines as the
//! stage's own log events, so they look as they would had the stage run
//! here; the last lines are kept for a failure message.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How many of the log's last lines a failure message repeats.
pub const TAIL_LINES: usize = 20;

/// A log file being followed.
pub struct LogTail {
    path: PathBuf,
    prefix: String,
    offset: u64,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl LogTail {
    /// Follows `path` (which may not exist yet) for stage `stage`.
    pub fn new(path: &Path, stage: &str) -> LogTail {
        LogTail { path: path.to_path_buf(), prefix: format!("[{stage}] "), offset: 0, partial: Vec::new(), tail: VecDeque::new() }
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Emits every complete line appended since the last call.
    pub fn poll(&mut self, emit: &mut dyn FnMut(String)) {
        let Ok(mut f) = File::open(&self.path) else { return };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else { return };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.line(&line[..end], emit);
        }
    }

    /// Emits what is left once the job has ended: new lines, and a last
    /// line without a newline.
    pub fn finish(&mut self, emit: &mut dyn FnMut(String)) {
        self.poll(emit);
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest, emit);
        }
    }

    /// The last [`TAIL_LINES`] lines seen.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    fn line(&mut self, bytes: &[u8], emit: &mut dyn FnMut(String)) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches('\r');
        let line = text.strip_prefix(&self.prefix).unwrap_or(text).to_string();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        emit(line);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn emits_complete_lines_as_they_appear_without_the_stage_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        let mut tail = LogTail::new(&path, "train");
        let mut seen = Vec::new();
        tail.poll(&mut |l| seen.push(l));
        assert!(seen.is_empty(), "no file yet");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"[train] step 1\nerror: half").unwrap();
        tail.poll(&mut |l| seen.push(l));
        assert_eq!(seen, ["step 1"]);
        f.write_all(b" a line\n[other] kept\nlast").unwrap();
        tail.poll(&mut |l| seen.push(l));
        tail.finish(&mut |l| seen.push(l));
        assert_eq!(seen, ["step 1", "error: half a line", "[other] kept", "last"]);
        for i in 0..30 {
            writeln!(f, "[train] line {i}").unwrap();
        }
        tail.finish(&mut |_| {});
        let t = tail.tail();
        assert_eq!((t.len(), t[0].as_str(), t[19].as_str()), (TAIL_LINES, "line 10", "line 29"));
    }
}
