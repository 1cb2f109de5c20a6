//! `kind: influence` — local data influence (Montessori-Instruct, METHODS
//! §5 M5): for each probing example, restore a warmed-up student and its
//! AdamW state, take one optimizer step on that example alone, and score
//! the student's loss on a reference set after it.
//!
//! ```yaml
//! influence:
//!   kind: influence
//!   model: warmup          # a `train` stage with `save_optimizer: true`
//!   data: probes           # rows with `prompt` and `response`
//!   reference: refset      # rows with `prompt` and `response`
//!   tests: [test]          # refuse a reference set that shares a prompt with these
//! ```
//!
//! Each output row is its input row plus `score` (`L_after`), `l_before`
//! (the warm student's reference loss) and `helpful` (`score < l_before`:
//! the step on this example lowered the reference loss; with `threshold:
//! median`, the better half of the scores). With
//! `score: loss` (the paper's training-loss ablation) `score` is the warm
//! student's own loss on the example, no step is taken, and `helpful`
//! marks the examples above the median loss (the ones the student has
//! most to learn from: our reading, METHODS does not say).
//!
//! Influence is the costly step, so every score goes through the item
//! cache (key: the warm checkpoint, the reference set, the step's
//! settings, the example's text): a killed run resumes, and new probes
//! score only themselves.

use std::collections::HashMap;

use anyhow::{bail, Context};
use retort_cache::{fingerprint, Hash};
use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use retort_lm::tokenizer::Tokenizer;
use retort_lm::train::{Influence, SftExample, TrainConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::model::{self, prompt_text};
use crate::common::round4;
use crate::common::rows::{field, plus, str_field};

/// What scores an example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// The reference loss after one AdamW step on the example (METHODS §5 M5).
    #[default]
    Influence,
    /// The warm student's own loss on the example (the paper's ablation).
    Loss,
}

/// Where `helpful` is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// Influence: below `L_before` (METHODS §5 M6); loss: above the median.
    #[default]
    Paper,
    /// The better half of the scores (influence: below their median; loss:
    /// above it): when every step lowers the reference loss (the restored
    /// momentum can carry each one), `L_before` labels every row helpful
    /// and no pair can be built.
    Median,
    /// Influence only: below the reference loss after a step with a zero
    /// gradient (`l_drift`, where the restored moments alone go), so an
    /// example is helpful when its own gradient helps (our variant, not
    /// the paper's).
    Drift,
}

/// Score probing examples by their local data influence on a student.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InfluenceStage {
    /// The warmed-up student: a `train` stage's model saved with `save_optimizer: true`.
    pub model: String,
    /// Probing examples: rows with `prompt` and `response`.
    pub data: String,
    /// The reference set whose loss is measured: rows with `prompt` and `response`.
    pub reference: String,
    /// Test sets the reference set must be disjoint from (compared by prompt).
    #[serde(default)]
    pub tests: Vec<String>,
    /// influence (default) or loss.
    #[serde(default)]
    pub score: Scoring,
    /// paper (default: below `L_before` for influence, above the median for
    /// loss), median (the better half of the scores) or drift (influence
    /// below the loss a zero-gradient step reaches).
    #[serde(default)]
    pub threshold: Threshold,
    /// The step's learning rate (default: the warm-up's last one, as
    /// restoring the optimizer and scheduler does in the reference code).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Clip the step's gradient norm (null = off); as `train`'s default.
    #[serde(default = "default_clip")]
    pub grad_clip: Option<f64>,
    /// AdamW weight decay of the step; as `train`'s default.
    #[serde(default)]
    pub weight_decay: f64,
    /// Reference rows per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest sequence (prompt + response) in tokens.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Apply the tokenizer's chat template to prompts (as `train` would).
    #[serde(default)]
    pub chat: bool,
}

fn default_clip() -> Option<f64> {
    Some(1.0)
}
fn default_batch() -> usize {
    16
}
fn default_max_len() -> usize {
    512
}

/// The fields this kind adds.
const SCORE: &str = "score";
const BEFORE: &str = "l_before";
const HELPFUL: &str = "helpful";
const DRIFT: &str = "l_drift";

/// Bump when what a cached score means changes.
const ITEM_CACHE_VERSION: u32 = 1;

impl StageImpl for InfluenceStage {
    const KIND: &'static str = "influence";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Score examples by local data influence: a student's reference loss after one AdamW step on each (METHODS §5).";

    fn hashed(&self) -> Hashed {
        let InfluenceStage { model: _, data: _, reference: _, tests, score, threshold, lr, grad_clip, weight_decay, batch_size: _, max_len, chat } = self;
        // The test sets only guard the reference set; they change no score.
        let _ = tests;
        let h = Hashed::new();
        // Only when set, so stages without it keep their fingerprints.
        let h = if *threshold == Threshold::Paper { h } else { h.field("threshold", threshold) };
        h.field("score", score)
            .opt("lr", lr)
            .field("grad_clip", grad_clip)
            .field("weight_decay", weight_decay)
            .field("max_len", max_len)
            .field("chat", chat)
    }
}

/// What a cached score's key covers.
#[derive(Serialize)]
struct ItemKey<'a> {
    model: Hash,
    reference: Hash,
    scoring: Scoring,
    lr: f64,
    grad_clip: Option<f64>,
    weight_decay: f64,
    max_len: usize,
    prompt: &'a str,
    response: &'a str,
}

impl InfluenceStage {
    fn test_name(i: usize) -> String {
        format!("test{i}")
    }

    fn example(&self, row: &Row, tok: &Tokenizer, eos: Option<u32>) -> anyhow::Result<(String, String, SftExample)> {
        let prompt = prompt_text(row, tok, self.chat, None)?;
        let response = str_field(row, field::RESPONSE)?.to_string();
        let mut ids = tok.encode(&response, false)?;
        ids.extend(eos);
        let ex = SftExample { prompt: tok.encode(&prompt, false)?, response: ids };
        Ok((prompt, response, ex))
    }

    /// Refuses a reference row whose prompt is also a test row's.
    fn check_disjoint(&self, ctx: &StageCtx<'_>, reference: &[Row]) -> anyhow::Result<()> {
        let mut prompts: HashMap<&str, usize> = HashMap::new();
        for (i, r) in reference.iter().enumerate() {
            if let Some(p) = r.get(field::PROMPT).and_then(|v| v.as_str()) {
                prompts.entry(p.trim()).or_insert(i);
            }
        }
        for (t, name) in self.tests.iter().enumerate() {
            let rows = ctx.read_rows(&Self::test_name(t))?;
            for (j, row) in rows.iter().enumerate() {
                let Some(p) = row.get(field::PROMPT).and_then(|v| v.as_str()) else { continue };
                if let Some(&i) = prompts.get(p.trim()) {
                    bail!(
                        "reference row {i} is also row {j} of test set `{name}` (prompt {:?}): the reference set steers what the \
                         teacher learns, so keep it disjoint from every test set (draw it from other data)",
                        truncated(p)
                    );
                }
            }
        }
        Ok(())
    }
}

fn truncated(s: &str) -> String {
    let mut t: String = s.chars().take(60).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

impl Stage for InfluenceStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let rows = |name: &str, r: &str, f: &str, why: &'static str| {
            InputDecl::rows(name, r, f).needing(&[field::PROMPT, field::MESSAGES], why).needing(&[field::RESPONSE], why)
        };
        let mut v = vec![
            InputDecl::model("model", &self.model, "model", true),
            rows("data", &self.data, "data", "influence's probing examples"),
            rows("reference", &self.reference, "reference", "influence's reference set"),
        ];
        v.extend(self.tests.iter().enumerate().map(|(i, t)| InputDecl::rows(Self::test_name(i), t, "tests")));
        v
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        if self.threshold == Threshold::Drift {
            plus(input("data"), &[SCORE, BEFORE, HELPFUL, DRIFT])
        } else {
            plus(input("data"), &[SCORE, BEFORE, HELPFUL])
        }
    }

    fn check(&self) -> Result<(), FieldError> {
        if let Some(lr) = self.lr.filter(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(FieldError::new("lr", format!("`lr` is {lr}: set a positive learning rate, or leave it out for the warm-up's last")));
        }
        if self.batch_size == 0 {
            return Err(FieldError::new("batch_size", "must be at least 1"));
        }
        if self.threshold == Threshold::Drift && self.score == Scoring::Loss {
            return Err(FieldError::new("threshold", "`drift` compares influence scores; with `score: loss` use `paper` or `median`"));
        }
        if self.max_len < 2 {
            return Err(FieldError::new("max_len", "must be at least 2"));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let input = ctx.input("model")?.clone();
        let reference_hash = ctx.input("reference")?.hash;
        let reference_rows = ctx.read_rows_nonempty("reference", "the reference set")?;
        self.check_disjoint(ctx, &reference_rows)?;
        let rows = ctx.read_rows_nonempty("data", "probing examples")?;
        let (model, tok) = model::load(&input, &self.model, ctx)?.into_parts();
        let tok = tok.expect("model::load checks for a tokenizer");
        let eos = tok.eos_id();
        let cfg = TrainConfig {
            batch_size: self.batch_size,
            max_len: self.max_len,
            grad_clip: self.grad_clip.map(|c| c as f32),
            weight_decay: self.weight_decay,
            ..TrainConfig::default()
        };
        let state = model::optimizer_state(&input, &self.model, "influence", &cfg)?;
        let lr = self.lr.unwrap_or(state.last_lr);
        if lr.is_nan() || lr <= 0.0 {
            bail!("the warm-up of `{}` took no step at a positive learning rate; give influence an `lr`", self.model);
        }
        let reference = reference_rows
            .iter()
            .enumerate()
            .map(|(i, r)| self.example(r, &tok, eos).map(|e| e.2).with_context(|| format!("reference row {i}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let probes =
            rows.iter().enumerate().map(|(i, r)| self.example(r, &tok, eos).with_context(|| format!("data row {i}"))).collect::<anyhow::Result<Vec<_>>>()?;
        let inf = Influence::new(model, state, &reference, lr, &cfg)?;
        let before = inf.before();
        let drift = if self.threshold == Threshold::Drift { Some(inf.drift()?) } else { None };

        let log = ctx.store.items(&fingerprint(&("influence", input.hash, reference_hash, ITEM_CACHE_VERSION)))?;
        let keys: Vec<Hash> = probes
            .iter()
            .map(|p| {
                fingerprint(&ItemKey {
                    model: input.hash,
                    reference: reference_hash,
                    scoring: self.score,
                    lr,
                    grad_clip: self.grad_clip,
                    weight_decay: self.weight_decay,
                    max_len: self.max_len,
                    prompt: &p.0,
                    response: &p.1,
                })
            })
            .collect();
        let mut scores: Vec<Option<f64>> = keys.iter().map(|k| log.get(k).and_then(|b| serde_json::from_slice(&b).ok())).collect();
        let cached = scores.iter().filter(|s| s.is_some()).count();
        let total = probes.len() as u64;
        let mut done = cached as u64;
        ctx.progress(done, Some(total), "examples");
        let t = std::time::Instant::now();
        let todo: Vec<usize> = (0..probes.len()).filter(|&i| scores[i].is_none()).collect();
        // A few probes at a time (one per thread for a small student), each
        // stored as soon as its group is done.
        for group in todo.chunks(inf.parallelism()) {
            let results = match self.score {
                Scoring::Influence => inf.score_many(&group.iter().map(|&i| (i, &probes[i].2)).collect::<Vec<_>>()),
                Scoring::Loss => group.iter().map(|&i| inf.training_loss(i, &probes[i].2)).collect(),
            };
            for (&i, s) in group.iter().zip(results) {
                let s = s.with_context(|| format!("data row {i}"))?;
                log.put(&keys[i], &serde_json::to_vec(&s)?)?;
                scores[i] = Some(s);
                done += 1;
            }
            ctx.progress(done, Some(total), "examples");
        }
        let secs = t.elapsed().as_secs_f64();
        let scores: Vec<f64> = scores.into_iter().map(|s| s.expect("every example scored")).collect();
        let threshold = match (self.score, self.threshold) {
            (Scoring::Influence, Threshold::Paper) => before,
            (Scoring::Influence, Threshold::Drift) => drift.expect("computed above"),
            _ => median(&scores),
        };
        let helpful = |s: f64| match self.score {
            Scoring::Influence => s < threshold,
            Scoring::Loss => s > threshold,
        };
        let out: Vec<Row> = rows
            .into_iter()
            .zip(&scores)
            .map(|(mut row, &s)| {
                row.insert(SCORE.into(), round6(s).into());
                row.insert(BEFORE.into(), round6(before).into());
                if let Some(d) = drift {
                    row.insert(DRIFT.into(), round6(d).into());
                }
                row.insert(HELPFUL.into(), helpful(s).into());
                row
            })
            .collect();
        ctx.write_rows("out", &out)?;
        let fresh = out.len() - cached;
        ctx.log(format!(
            "{cached} of {} examples came from the item cache; {fresh} scored in {secs:.2} s ({:.3} per second, restoring {:.3} s in all)",
            out.len(),
            fresh as f64 / secs.max(1e-9),
            inf.restore_secs()
        ));
        let mut m = summary(&scores, before, helpful);
        if let Some(d) = drift {
            m.insert(DRIFT.into(), round6(d).into());
        }
        Ok(m)
    }
}

/// Scores to 6 decimals: influence differences are small.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The stage metrics: the helpful share, `L_before`, and the scores' spread.
fn summary(scores: &[f64], before: f64, helpful: impl Fn(f64) -> bool) -> Metrics {
    let n = scores.len().max(1) as f64;
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let mean = scores.iter().sum::<f64>() / n;
    Metrics::from([
        ("examples".to_string(), scores.len().into()),
        ("helpful_share".to_string(), round4(scores.iter().filter(|&&s| helpful(s)).count() as f64 / n).into()),
        ("l_before".to_string(), round6(before).into()),
        ("score_mean".to_string(), round6(mean).into()),
        ("score_min".to_string(), round6(q(0.0)).into()),
        ("score_p25".to_string(), round6(q(0.25)).into()),
        ("score_median".to_string(), round6(q(0.5)).into()),
        ("score_p75".to_string(), round6(q(0.75)).into()),
        ("score_max".to_string(), round6(q(1.0)).into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_helpful_examples_and_quartiles() {
        let m = summary(&[1.0, 2.0, 3.0, 4.0, 5.0], 2.5, |s| s < 2.5);
        assert_eq!(m["helpful_share"], serde_json::json!(0.4));
        assert_eq!(m["score_median"], serde_json::json!(3.0));
        assert_eq!(m["score_p25"], serde_json::json!(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn settings_are_checked_and_tests_are_not_hashed() {
        let s: InfluenceStage = serde_yaml::from_str("{model: w, data: p, reference: r, lr: -1}").unwrap();
        assert_eq!(s.check().unwrap_err().field, "lr");
        let a: InfluenceStage = serde_yaml::from_str("{model: w, data: p, reference: r}").unwrap();
        let b: InfluenceStage = serde_yaml::from_str("{model: w, data: p, reference: r, tests: [t]}").unwrap();
        assert_eq!(a.hashed(), b.hashed());
        let c: InfluenceStage = serde_yaml::from_str("{model: w, data: p, reference: r, score: loss}").unwrap();
        assert_ne!(a.hashed(), c.hashed());
        let d: InfluenceStage = serde_yaml::from_str("{model: w, data: p, reference: r, score: loss, threshold: drift}").unwrap();
        assert_eq!(d.check().unwrap_err().field, "threshold");
        let e: InfluenceStage = serde_yaml::from_str("{model: w, data: p, reference: r, threshold: paper}").unwrap();
        assert_eq!(a.hashed(), e.hashed(), "the default threshold is not hashed");
    }
}
