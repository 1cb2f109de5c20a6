//! Progress and lifecycle events, and how they are shown.
//!
//! Stages emit [`Event`]s; a [`Reporter`] renders them: progress bars on a
//! terminal (indicatif), plain lines in CI, or JSON lines for machines.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

/// Something that happened during a run.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage started executing (cache misses only).
    Started {
        /// Stage name.
        stage: String,
        /// Why it runs.
        reason: String,
    },
    /// A stage made progress.
    Progress {
        /// Stage name.
        stage: String,
        /// Units done so far.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
        /// What is counted (`rows`, `steps`, `samples`).
        unit: String,
        /// The latest numbers worth watching, shown after the bar as tqdm's
        /// postfix is (a trainer's `loss=1.234`, GRPO's `reward=0.42`).
        #[serde(skip_serializing_if = "Option::is_none")]
        postfix: Option<String>,
    },
    /// A free-form message from a stage.
    Log {
        /// Stage name.
        stage: String,
        /// The message.
        message: String,
    },
    /// A stage's job on a cluster changed state (`executor: slurm`).
    Job {
        /// Stage name.
        stage: String,
        /// The executor (`slurm`).
        executor: String,
        /// The scheduler's job id.
        job_id: String,
        /// Its state as the scheduler names it: PENDING, RUNNING, COMPLETED...
        state: String,
        /// Why it waits or ended, when the scheduler says (`Resources`).
        reason: Option<String>,
    },
    /// A stage finished: `ran`, `cached`, `failed` or `skipped`.
    Finished {
        /// Stage name.
        stage: String,
        /// Final status.
        status: String,
        /// Wall time of the execution (0 for cache hits).
        duration_ms: u64,
    },
}

/// Receives events; must be cheap, it is called from stage threads.
pub trait Reporter: Send + Sync {
    /// Handles one event.
    fn event(&self, event: &Event);
    /// Called once before the summary is printed (clears progress bars).
    fn finish(&self) {}
}

/// How to show events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Progress bars on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Builds the reporter for a log format, writing to stderr.
pub fn reporter(format: LogFormat, quiet: bool) -> Box<dyn Reporter> {
    match format {
        LogFormat::Json => Box::new(JsonReporter),
        _ if quiet => Box::new(QuietReporter),
        LogFormat::Auto if std::io::stderr().is_terminal() => Box::new(BarReporter::default()),
        _ => Box::new(PlainReporter::default()),
    }
}

/// Shows nothing.
pub struct QuietReporter;

impl Reporter for QuietReporter {
    fn event(&self, _: &Event) {}
}

/// JSON lines on stderr.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// Plain lines on stderr, progress at most every few seconds per stage, so CI
/// logs stay readable.
#[derive(Default)]
pub struct PlainReporter {
    last: Mutex<HashMap<String, (Instant, Instant)>>,
}

impl Reporter for PlainReporter {
    fn event(&self, event: &Event) {
        let mut err = std::io::stderr().lock();
        match event {
            Event::Started { stage, reason } => {
                self.last.lock().unwrap().insert(stage.clone(), (Instant::now(), Instant::now()));
                let _ = writeln!(err, "[{stage}] running: {reason}");
            }
            Event::Progress { stage, done, total, unit, postfix } => {
                let mut last = self.last.lock().unwrap();
                let now = Instant::now();
                let (start, shown) = last.entry(stage.clone()).or_insert((now, now));
                let finished = total.is_some_and(|t| *done >= t);
                if now.duration_since(*shown) < Duration::from_secs(5) && !finished {
                    return;
                }
                *shown = now;
                let secs = now.duration_since(*start).as_secs_f64().max(1e-9);
                let rate = *done as f64 / secs;
                let mut line = match total {
                    Some(t) if rate > 0.0 => {
                        let eta = (*t as f64 - *done as f64).max(0.0) / rate;
                        format!("{done}/{t} {unit} ({rate:.1}/s, eta {eta:.0}s)")
                    }
                    Some(t) => format!("{done}/{t} {unit}"),
                    None => format!("{done} {unit} ({rate:.1}/s)"),
                };
                if let Some(p) = postfix {
                    line += &format!(" {p}");
                }
                let _ = writeln!(err, "[{stage}] {line}");
            }
            Event::Log { stage, message } => {
                let _ = writeln!(err, "[{stage}] {message}");
            }
            Event::Job { stage, .. } => {
                let _ = writeln!(err, "[{stage}] {}", job_line(event));
            }
            Event::Finished { stage, status, duration_ms } => {
                if status != "cached" {
                    let _ = writeln!(err, "[{stage}] {status} in {}", human_ms(*duration_ms));
                }
            }
        }
    }
}

/// indicatif progress bars, one per running stage.
#[derive(Default)]
pub struct BarReporter {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl BarReporter {
    fn bar(&self, stage: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap();
        bars.entry(stage.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_prefix(stage.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }
}

impl Reporter for BarReporter {
    fn event(&self, event: &Event) {
        match event {
            Event::Started { stage, reason } => {
                let bar = self.bar(stage);
                bar.set_style(ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}").unwrap());
                bar.set_message(reason.clone());
            }
            Event::Progress { stage, done, total, unit, postfix } => {
                let bar = self.bar(stage);
                if let Some(t) = total {
                    if bar.length() != Some(*t) {
                        bar.set_length(*t);
                        let tpl = format!(
                            "{{spinner}} {{prefix:.bold}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}}) {{msg}}"
                        );
                        bar.set_style(ProgressStyle::with_template(&tpl).unwrap().progress_chars("=> "));
                        // The start reason was the message until now.
                        bar.set_message("");
                    }
                }
                if let Some(p) = postfix {
                    bar.set_message(p.clone());
                }
                bar.set_position(*done);
            }
            Event::Log { message, stage } => {
                let _ = self.multi.println(format!("[{stage}] {message}"));
            }
            Event::Job { stage, .. } => self.bar(stage).set_message(job_line(event)),
            Event::Finished { stage, status, duration_ms } => {
                if let Some(bar) = self.bars.lock().unwrap().remove(stage) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if status != "cached" {
                    let _ = self.multi.println(format!("[{stage}] {status} in {}", human_ms(*duration_ms)));
                }
            }
        }
    }

    fn finish(&self) {
        for (_, bar) in self.bars.lock().unwrap().drain() {
            bar.finish_and_clear();
        }
    }
}

/// `slurm job 42: PENDING (Resources)`.
fn job_line(event: &Event) -> String {
    let Event::Job { executor, job_id, state, reason, .. } = event else { return String::new() };
    match reason {
        Some(r) => format!("{executor} job {job_id}: {state} ({r})"),
        None => format!("{executor} job {job_id}: {state}"),
    }
}

/// `1.2s`, `340ms`, `2m05s`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}
