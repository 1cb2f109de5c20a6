//! `kind: cll_score` — how "in distribution" each row's response is for a
//! model: the centred log-likelihood `φ_t = log p_t(y_t) + H(p_t)` of every
//! response token (METHODS §4.1).
//!
//! Each output row is its input row plus `phi` (per token, EOS included
//! when the tokenizer has one, as `train` scores it), `avg_phi`, and the
//! shares of tokens with φ below −1, −3 and −5 (`phi_below_1`, ...), the
//! figures the reference code reports. φ averages 0 on text the model
//! writes itself; the reference README reads avg φ ≈ −0.05 as on-policy
//! and below −0.1 as off-policy. The stage metrics hold the token-level
//! shares and a 10-bin histogram of φ over `[−9, 1]`.
//!
//! Rows are scored a batch at a time through the item cache (key: the
//! model's content hash and the exact prompt and response text), so a
//! killed run resumes and a grown dataset scores only its new rows.

use retort_cache::{fingerprint, Hash};
use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use retort_lm::score::token_stats_many_at;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::model::{self, prompt_text};
use crate::common::round4;
use crate::common::rows::{field, plus, str_field};

/// Score responses by their centred log-likelihood under a model.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CllScoreStage {
    /// The model that judges: a `models:` entry or a stage's model.
    pub model: String,
    /// Rows with `prompt` and the text to score: `STAGE` or `STAGE.OUTPUT`.
    pub data: String,
    /// The field holding the text scored after the prompt.
    #[serde(default = "default_field")]
    pub field: String,
    /// Apply the tokenizer's chat template to the prompt (as `train` would).
    #[serde(default)]
    pub chat: bool,
    /// Keep the per-token `phi` list in the output rows (off: only the summaries).
    #[serde(default = "yes")]
    pub per_token: bool,
    /// Rows per batch (scored side by side, stored in the item cache together).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Also the mean negative log-likelihood of each row's tokens (`avg_nll`,
    /// the SFT loss of the row), and in the metrics its mean over rows with
    /// a bootstrap 95% interval (`nll`, `nll_lo`, `nll_hi`): a model's loss
    /// on a held-out set.
    #[serde(default)]
    pub nll: bool,
    /// The weight products' arithmetic: `f32` (the model's own outputs) or
    /// `bf16` (both operands rounded to bf16, products summed in f32: about
    /// twice as fast on CPUs with AVX-512 BF16, and each φ moves by about
    /// a hundredth). `bf16` needs a GGUF model on the CPU.
    #[serde(default)]
    pub precision: Precision,
}

/// [`CllScoreStage::precision`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands.
    #[default]
    F32,
    /// bf16 operands, f32 sums.
    Bf16,
}

impl From<Precision> for retort_lm::score::Precision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F32 => Self::F32,
            Precision::Bf16 => Self::Bf16,
        }
    }
}

fn default_field() -> String {
    field::RESPONSE.into()
}
fn yes() -> bool {
    true
}
fn default_batch() -> usize {
    32
}

/// The fields this kind adds.
const AVG_PHI: &str = "avg_phi";
const AVG_NLL: &str = "avg_nll";
const PHI: &str = "phi";
const BELOW: [(f32, &str); 3] = [(-1.0, "phi_below_1"), (-3.0, "phi_below_3"), (-5.0, "phi_below_5")];

impl StageImpl for CllScoreStage {
    const KIND: &'static str = "cll_score";
    // 2: φ in one pass over the logits, and a packed model's rows in one
    // ragged forward pass (same values to ~1e-6, not the same bits).
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Score each row's response by its centred log-likelihood φ under a model (METHODS §4.1).";

    fn hashed(&self) -> Hashed {
        let CllScoreStage { model: _, data: _, field, chat, per_token, batch_size: _, nll, precision } = self;
        let mut h = Hashed::new().field("field", field).field("chat", chat).field("per_token", per_token);
        // Each only when set, so stages without them keep their fingerprints.
        if *nll {
            h = h.field("nll", true);
        }
        if *precision != Precision::F32 {
            h = h.field("precision", precision);
        }
        h
    }
}

/// What a cached row's key covers.
#[derive(Serialize)]
struct ItemKey<'a> {
    model: Hash,
    prompt: &'a str,
    text: &'a str,
    eos: bool,
    /// With `nll`, an item holds `[φ..., log p...]` (twice the tokens).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    nll: bool,
    #[serde(skip_serializing_if = "is_f32")]
    precision: Precision,
}

fn is_f32(p: &Precision) -> bool {
    *p == Precision::F32
}

/// Bump when what a cached item means changes (2: as `VERSION` 2).
const ITEM_CACHE_VERSION: u32 = 2;

impl Stage for CllScoreStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let data = InputDecl::rows("data", &self.data, "data").needing(&[field::PROMPT, field::MESSAGES], "cll_score's prompt");
        vec![InputDecl::model("model", &self.model, "model", true), data]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        let mut extra = vec![AVG_PHI];
        extra.extend(BELOW.iter().map(|b| b.1));
        if self.per_token {
            extra.push(PHI);
        }
        if self.nll {
            extra.push(AVG_NLL);
        }
        plus(input("data"), &extra)
    }

    fn check(&self) -> Result<(), FieldError> {
        if self.field.is_empty() {
            return Err(FieldError::new("field", "must name the field to score, e.g. `response`"));
        }
        if self.batch_size == 0 {
            return Err(FieldError::new("batch_size", "must be at least 1"));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let input = ctx.input("model")?.clone();
        let lm = model::load(&input, &self.model, ctx)?;
        if self.precision == Precision::Bf16 && !lm.model().is_packed() {
            anyhow::bail!(
                "`precision: bf16` needs model `{}` in a GGUF block format (Q4_0, Q4_1 or Q8_0) on the CPU, which this model is not; use `precision: f32`",
                self.model
            );
        }
        let tok = lm.text_tokenizer()?;
        let rows = ctx.read_rows_nonempty("data", "rows to score")?;
        let eos = tok.eos_id();
        // Each row's prompt and text, which name its item; only rows not in
        // the item cache are tokenized and scored.
        let mut texts = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let (prompt, text) = (|| -> anyhow::Result<_> { Ok((prompt_text(row, tok, self.chat, None)?, str_field(row, &self.field)?.to_string())) })()
                .map_err(|e| anyhow::anyhow!("data row {i}: {e}"))?;
            texts.push((prompt, text));
        }
        let keys: Vec<Hash> =
            texts.iter().map(|(prompt, text)| fingerprint(&ItemKey { model: input.hash, prompt, text, eos: eos.is_some(), nll: self.nll, precision: self.precision })).collect();
        let log = ctx.store.items(&fingerprint(&("cll_score", input.hash, ITEM_CACHE_VERSION)))?;
        let mut phis: Vec<Option<Vec<f32>>> = keys.iter().map(|k| log.get(k).and_then(|b| serde_json::from_slice(&b).ok())).collect();
        let cached = phis.iter().filter(|p| p.is_some()).count();
        let todo: Vec<usize> = (0..rows.len()).filter(|&i| phis[i].is_none()).collect();
        let total = rows.len() as u64;
        let mut done = cached as u64;
        ctx.progress(done, Some(total), "rows");
        let max = lm.model().config().max_position_embeddings;
        // Row `i`'s tokens and where its scored part starts.
        let sequence = |i: usize| -> anyhow::Result<(Vec<u32>, usize)> {
            let mut ids = tok.encode(&texts[i].0, false)?;
            if ids.is_empty() {
                anyhow::bail!("data row {i}: the prompt is empty; φ of the first token needs a context");
            }
            let start = ids.len();
            ids.extend(tok.encode(&texts[i].1, false)?);
            ids.extend(eos);
            if ids.len() > max {
                anyhow::bail!("data row {i}: prompt and `{}` are {} tokens, more than the model's context ({max})", self.field, ids.len());
            }
            Ok((ids, start))
        };
        for chunk in todo.chunks(self.batch_size) {
            let batch = chunk.iter().map(|&i| sequence(i)).collect::<anyhow::Result<Vec<_>>>()?;
            for (&i, stats) in chunk.iter().zip(token_stats_many_at(lm.model(), &batch, self.precision.into())) {
                let mut phi: Vec<f32> = stats.iter().map(|s| s.phi()).collect();
                if self.nll {
                    phi.extend(stats.iter().map(|s| s.logprob));
                }
                log.put(&keys[i], &serde_json::to_vec(&phi)?)?;
                phis[i] = Some(phi);
            }
            done += chunk.len() as u64;
            ctx.progress(done, Some(total), "rows");
        }
        let mut phis: Vec<Vec<f32>> = phis.into_iter().map(|p| p.expect("every row scored")).collect();
        // With `nll`, each item is φ then log p: split them.
        let nlls: Vec<f64> = if self.nll {
            phis.iter_mut()
                .map(|p| {
                    let lp = p.split_off(p.len() / 2);
                    -lp.iter().map(|&x| x as f64).sum::<f64>() / lp.len().max(1) as f64
                })
                .collect()
        } else {
            Vec::new()
        };
        let out: Vec<Row> = rows
            .into_iter()
            .zip(&phis)
            .enumerate()
            .map(|(i, (row, phi))| {
                let mut row = self.annotate(row, phi);
                if self.nll {
                    row.insert(AVG_NLL.into(), round4(nlls[i]).into());
                }
                row
            })
            .collect();
        ctx.write_rows("out", &out)?;
        ctx.log(format!("{cached} of {} rows came from the item cache", out.len()));
        let mut m = summary(&phis);
        if self.nll {
            let ci = crate::stats::bootstrap_mean(&nlls, 2000, ctx.seed);
            m.insert("nll".into(), round4(nlls.iter().sum::<f64>() / nlls.len().max(1) as f64).into());
            m.insert("nll_lo".into(), round4(ci.lo).into());
            m.insert("nll_hi".into(), round4(ci.hi).into());
        }
        Ok(m)
    }
}

impl CllScoreStage {
    fn annotate(&self, mut row: Row, phi: &[f32]) -> Row {
        let s = PhiSummary::of(phi.iter().copied());
        row.insert(AVG_PHI.into(), round4(s.mean).into());
        for (k, (_, name)) in BELOW.iter().enumerate() {
            row.insert((*name).into(), round4(s.below[k]).into());
        }
        if self.per_token {
            row.insert(PHI.into(), phi.iter().map(|&x| round4(x as f64)).collect::<Vec<_>>().into());
        }
        row
    }
}

/// Mean of φ and the shares below −1, −3, −5.
#[derive(Debug, Clone, PartialEq)]
pub struct PhiSummary {
    /// Tokens counted.
    pub n: usize,
    /// Mean φ (0 without tokens).
    pub mean: f64,
    /// Shares below −1, −3, −5.
    pub below: [f64; 3],
}

impl PhiSummary {
    /// The summary of these φ values.
    pub fn of(phi: impl Iterator<Item = f32>) -> Self {
        let (mut n, mut sum, mut below) = (0usize, 0f64, [0usize; 3]);
        for x in phi {
            n += 1;
            sum += x as f64;
            for (k, (t, _)) in BELOW.iter().enumerate() {
                below[k] += usize::from(x < *t);
            }
        }
        let share = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        PhiSummary { n, mean: if n == 0 { 0.0 } else { sum / n as f64 }, below: below.map(share) }
    }
}

/// The stage metrics: row and token means, the shares, and the histogram.
fn summary(phis: &[Vec<f32>]) -> Metrics {
    let tokens = PhiSummary::of(phis.iter().flatten().copied());
    let rows_mean = phis.iter().map(|p| PhiSummary::of(p.iter().copied()).mean).sum::<f64>() / phis.len().max(1) as f64;
    let mut hist = [0usize; 10];
    for &x in phis.iter().flatten() {
        hist[((x + 9.0).floor() as i64).clamp(0, 9) as usize] += 1;
    }
    let mut m = Metrics::from([
        ("rows".to_string(), phis.len().into()),
        ("tokens".to_string(), tokens.n.into()),
        ("avg_phi".to_string(), round4(rows_mean).into()),
        ("token_phi".to_string(), round4(tokens.mean).into()),
    ]);
    for (k, (_, name)) in BELOW.iter().enumerate() {
        m.insert((*name).to_string(), round4(tokens.below[k]).into());
    }
    let n = tokens.n.max(1) as f64;
    m.insert("phi_hist".to_string(), hist.iter().map(|&c| round4(c as f64 / n)).collect::<Vec<_>>().into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_by_hand() {
        let s = PhiSummary::of([0.5f32, -2.0, -4.0, -6.0].into_iter());
        assert_eq!(s.n, 4);
        assert!((s.mean - (-11.5 / 4.0)).abs() < 1e-9);
        assert_eq!(s.below, [0.75, 0.5, 0.25]);
        assert_eq!(PhiSummary::of(std::iter::empty()).mean, 0.0);
        let m = summary(&[vec![0.5, -2.0], vec![-20.0]]);
        assert_eq!(m["rows"], 2);
        assert_eq!(m["tokens"], 3);
        // Row means: −0.75 and −20 → −10.375; token mean −7.1667.
        assert_eq!(m["avg_phi"], round4(-10.375));
        assert_eq!(m["token_phi"], round4(-21.5 / 3.0));
        // −20 lands in the first bin, −2 in [−2, −1) = bin 7, 0.5 in [0, 1) = bin 9.
        let hist: Vec<f64> = serde_json::from_value(m["phi_hist"].clone()).unwrap();
        assert_eq!(hist[0], round4(1.0 / 3.0));
        assert_eq!(hist[7], round4(1.0 / 3.0));
        assert_eq!(hist[9], round4(1.0 / 3.0));
    }
}
