//! `kind: hint_rewrite` — Hinted Decoding (METHODS §4.3, §9.3): rewrite
//! reference solutions into the model's own distribution.
//!
//! Two streams of one model share one continuation: the *hinted* stream's
//! prompt (`hint`, a template over the row) holds the reference, the
//! *plain* stream's is the question alone (the row's `prompt`, or `plain`),
//! what the model sees at test time. Each token is sampled from
//! `(1−λ)·log p + λ·log q`, `λ = f(β·H(p)/log|V|)` ([`methods::hinted`]),
//! and appended to both. The first token comes from the hinted stream;
//! once `delimiter` is written, the plain stream alone writes the answer.
//! A stream stops on EOS, `max_tokens` or a repeated n-gram.
//!
//! Output rows: the input row plus the rewrite in `field` (`response`),
//! `end_reason` (`eos`, `stop`, `length`, `repeat`), `avg_phi` (mean φ of
//! the rewrite's tokens under the plain stream: how on-policy it is),
//! `avg_lambda` and `switched` (whether the delimiter was reached). A
//! `verify` stage after it keeps the rewrites whose answer is right.
//!
//! Rewrites go through the item cache like `generate`'s samples.
//!
//! [`methods::hinted`]: crate::methods::hinted

use retort_cache::{fingerprint, Hash};
use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use retort_lm::joint::{generate_joint, JointRequest, Mix, RepeatStop};
use retort_lm::tokenizer::Tokenizer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::model::{self, prompt_text};
use crate::common::round4;
use crate::common::rows::{field, plus, str_field};
use crate::common::sampling::Sampling;
use crate::common::template::Templates;
use crate::methods::hinted::{mix_logprobs, step_lambda, LambdaSchedule};

/// Rewrite references with Hinted Decoding.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HintRewriteStage {
    /// The model: a `models:` entry or a stage's model.
    pub model: String,
    /// The plain stream's model, when another one (it must share the
    /// tokenizer's vocabulary); the same model by default.
    #[serde(default)]
    pub plain_model: Option<String>,
    /// Rows with `prompt` and the reference: `STAGE` or `STAGE.OUTPUT`.
    pub data: String,
    /// The hinted stream's prompt, a template over the row's fields
    /// (Jinja2, e.g. `"Solution: {{ reference }}\n{{ prompt }}"`).
    pub hint: String,
    /// The plain stream's prompt template; the row's `prompt` by default.
    #[serde(default)]
    pub plain: Option<String>,
    /// The field holding the reference (it must contain `delimiter`).
    #[serde(default = "default_reference")]
    pub reference_field: String,
    /// Apply the tokenizer's chat template to both prompts.
    #[serde(default)]
    pub chat: bool,
    /// β of `λ = f(β·H(p)/log|V|)`; 0 is the pure hinted rewrite.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// linear (default), sigmoid or piecewise.
    #[serde(default)]
    pub schedule: LambdaSchedule,
    /// The answer delimiter: from it on, the plain stream alone writes.
    /// `null`: never switch.
    #[serde(default = "default_delimiter")]
    pub delimiter: Option<String>,
    /// max_tokens, temperature, top_p, ... (T = 0.3, top-p 0.95 by default).
    #[serde(default = "default_sampling")]
    pub sampling: Sampling,
    /// Stop on an n-gram of `n` tokens seen `times` times, checked every
    /// `every` tokens (30, 5, 100 by default); `null`: off.
    #[serde(default = "default_repeat")]
    pub repeat: Option<Repeat>,
    /// The output field that holds the rewrite.
    #[serde(default = "default_field")]
    pub field: String,
    /// Rows per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

/// `repeat:` of `hint_rewrite`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// n-gram length in tokens.
    pub n: usize,
    /// Occurrences that stop the stream.
    pub times: usize,
    /// Check every this many tokens.
    pub every: usize,
}

fn default_reference() -> String {
    "reference".into()
}
fn default_beta() -> f64 {
    3.0
}
fn default_delimiter() -> Option<String> {
    Some("\\boxed{".into())
}
fn default_sampling() -> Sampling {
    Sampling { temperature: 0.3, top_p: 0.95, ..Sampling::default() }
}
fn default_repeat() -> Option<Repeat> {
    Some(Repeat { n: 30, times: 5, every: 100 })
}
fn default_field() -> String {
    field::RESPONSE.into()
}
fn default_batch() -> usize {
    16
}

impl StageImpl for HintRewriteStage {
    const KIND: &'static str = "hint_rewrite";
    // 2: each stream's log-softmax and entropy from one f32 exponential per
    // logit (sums in f64), where two f64 exponentials were: log-probs and λ
    // move in their last bits, so a sampled token can differ.
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Rewrite references into the model's own words with Hinted Decoding (METHODS §4.3).";

    fn hashed(&self) -> Hashed {
        let HintRewriteStage {
            model: _,
            plain_model: _,
            data: _,
            hint,
            plain,
            reference_field,
            chat,
            beta,
            schedule,
            delimiter,
            sampling,
            repeat,
            field,
            batch_size: _,
        } = self;
        Hashed::new()
            .field("hint", hint)
            .opt("plain", plain)
            .field("reference_field", reference_field)
            .field("chat", chat)
            .field("beta", beta)
            .field("schedule", schedule)
            .field("delimiter", delimiter)
            .field("sampling", sampling.hashed().into_value())
            .field("repeat", repeat)
            .field("field", field)
    }
}

/// The fields this kind adds besides `field`.
const END_REASON: &str = "end_reason";
const AVG_PHI: &str = "avg_phi";
const AVG_LAMBDA: &str = "avg_lambda";
const SWITCHED: &str = "switched";

/// What a rewrite leaves in the item cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rewrite {
    text: String,
    end_reason: String,
    avg_phi: f64,
    avg_lambda: f64,
    switched: bool,
    tokens: usize,
}

/// Bump when what a cached item means changes.
const ITEM_CACHE_VERSION: u32 = 1;

impl Stage for HintRewriteStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let data = InputDecl::rows("data", &self.data, "data");
        let data = if self.plain.is_none() { data.needing(&[field::PROMPT, field::MESSAGES], "hint_rewrite's plain stream") } else { data };
        let mut v = vec![InputDecl::model("model", &self.model, "model", true), data];
        if let Some(p) = &self.plain_model {
            v.push(InputDecl::model("plain_model", p, "plain_model", true));
        }
        v
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, input: &dyn Fn(&str) -> Fields) -> Fields {
        plus(input("data"), &[self.field.as_str(), END_REASON, AVG_PHI, AVG_LAMBDA, SWITCHED])
    }

    fn check(&self) -> Result<(), FieldError> {
        if !self.beta.is_finite() || self.beta < 0.0 {
            return Err(FieldError::new("beta", format!("`beta` is {}: it must be 0 or more (0 = the pure hinted rewrite; the demo uses 3)", self.beta)));
        }
        if self.delimiter.as_deref() == Some("") {
            return Err(FieldError::new("delimiter", "an empty delimiter would switch at once: give the answer marker (e.g. \"\\\\boxed{\") or null"));
        }
        if let Some(r) = self.repeat {
            if r.n == 0 || r.times < 2 || r.every == 0 {
                return Err(FieldError::new("repeat", "`n` and `every` must be at least 1 and `times` at least 2 (or set `repeat: null`)"));
            }
        }
        if self.field.is_empty() {
            return Err(FieldError::new("field", "must name an output field, e.g. `response`"));
        }
        if self.batch_size == 0 {
            return Err(FieldError::new("batch_size", "must be at least 1"));
        }
        self.templates().map(|_| ()).map_err(|(f, e)| FieldError::new(f, e))
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let input = ctx.input("model")?.clone();
        let lm = model::load(&input, &self.model, ctx)?;
        let plain_lm = match &self.plain_model {
            Some(name) => {
                let plain_input = ctx.input("plain_model")?.clone();
                Some((model::load(&plain_input, name, ctx)?, plain_input.hash))
            }
            None => None,
        };
        // A plain model of another vocabulary is refused by the joint decoder.
        let tok = lm.text_tokenizer()?;
        let rows = ctx.read_rows_nonempty("data", "rows to rewrite")?;
        let templates = self.templates().map_err(|(_, e)| anyhow::anyhow!(e))?;
        // Every row's prompts (checked, and named in the item keys); only
        // the rows not in the item cache are tokenized, below.
        let mut texts = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            texts.push(self.prompts(&templates, row, tok).map_err(|e| anyhow::anyhow!("data row {i}: {e}"))?);
        }
        let models_hash = match &plain_lm {
            Some((_, h)) => fingerprint(&(input.hash, *h)),
            None => input.hash,
        };
        let hashed = self.hashed().into_value();
        let keys: Vec<Hash> =
            texts.iter().map(|(h, p)| fingerprint(&("hint_rewrite", models_hash, &hashed, ctx.seed, h, p, ITEM_CACHE_VERSION))).collect();
        let log = ctx.store.items(&fingerprint(&("hint_rewrite", models_hash, &hashed, ctx.seed, ITEM_CACHE_VERSION)))?;
        let mut out: Vec<Option<Rewrite>> = keys.iter().map(|k| log.get(k).and_then(|b| serde_json::from_slice(&b).ok())).collect();
        let cached = out.iter().filter(|o| o.is_some()).count();
        let todo: Vec<usize> = (0..rows.len()).filter(|&i| out[i].is_none()).collect();
        let total = rows.len() as u64;
        let mut done = cached as u64;
        ctx.progress(done, Some(total), "rewrites");

        let models = [lm.model(), plain_lm.as_ref().map_or(lm.model(), |(p, _)| p.model())];
        let decode = |t: &[u32]| tok.decode(t);
        let mix = HintMix { beta: self.beta, schedule: self.schedule, vocab: lm.model().config().vocab_size, delimiter: self.delimiter.as_deref(), decode: &decode };
        let params = self.sampling.params(ctx.seed);
        let repeat = self.repeat.map(|r| RepeatStop { n: r.n, times: r.times, every: r.every });
        for chunk in todo.chunks(self.batch_size) {
            let ctxs = chunk
                .iter()
                .map(|&i| Ok(vec![tok.encode(&texts[i].0, false)?, tok.encode(&texts[i].1, false)?]))
                .collect::<anyhow::Result<Vec<Vec<Vec<u32>>>>>()?;
            let ids: Vec<u64> = chunk.iter().map(|&i| item_id(&texts[i].0, &texts[i].1)).collect();
            let req = JointRequest { models: &models, contexts: &ctxs, item_ids: &ids, params: &params, decode: Some(&decode), repeat };
            let gens = generate_joint(&req, &mix).map_err(|e| match e.prompt_index() {
                Some(k) => anyhow::anyhow!("data row {}: {e}", chunk[k]),
                None => e.into(),
            })?;
            for (&i, g) in chunk.iter().zip(gens) {
                let n = g.tokens.len().max(1) as f64;
                let r = Rewrite {
                    text: tok.decode_skip_special(&g.tokens),
                    end_reason: serde_json::to_value(g.finish_reason)?.as_str().unwrap_or("").to_string(),
                    avg_phi: round4(g.stats.iter().map(|s| f64::from(s[1].phi())).sum::<f64>() / n),
                    avg_lambda: round4(g.state.lambda_sum / n),
                    switched: g.state.switched_at.is_some(),
                    tokens: g.tokens.len(),
                };
                log.put(&keys[i], &serde_json::to_vec(&r)?)?;
                out[i] = Some(r);
            }
            done += chunk.len() as u64;
            ctx.progress(done, Some(total), "rewrites");
        }
        let rewrites: Vec<Rewrite> = out.into_iter().map(|o| o.expect("every row rewritten")).collect();
        let mut rows_out = Vec::with_capacity(rows.len());
        for (mut row, r) in rows.into_iter().zip(&rewrites) {
            row.insert(self.field.clone(), r.text.clone().into());
            row.insert(END_REASON.into(), r.end_reason.clone().into());
            row.insert(AVG_PHI.into(), r.avg_phi.into());
            row.insert(AVG_LAMBDA.into(), r.avg_lambda.into());
            row.insert(SWITCHED.into(), r.switched.into());
            rows_out.push(row);
        }
        ctx.write_rows("out", &rows_out)?;
        ctx.log(format!("{cached} of {} rewrites came from the item cache", rows_out.len()));
        let n = rewrites.len().max(1) as f64;
        let mut m = Metrics::from([
            ("rows".to_string(), rewrites.len().into()),
            ("avg_phi".to_string(), round4(rewrites.iter().map(|r| r.avg_phi).sum::<f64>() / n).into()),
            ("avg_lambda".to_string(), round4(rewrites.iter().map(|r| r.avg_lambda).sum::<f64>() / n).into()),
            ("switched".to_string(), round4(rewrites.iter().filter(|r| r.switched).count() as f64 / n).into()),
            ("mean_tokens".to_string(), round4(rewrites.iter().map(|r| r.tokens as f64).sum::<f64>() / n).into()),
        ]);
        for reason in ["eos", "stop", "length", "repeat"] {
            let c = rewrites.iter().filter(|r| r.end_reason == reason).count();
            m.insert(format!("end_{reason}"), c.into());
        }
        Ok(m)
    }
}

impl HintRewriteStage {
    /// The compiled `hint` and `plain` templates (the error names the field).
    fn templates(&self) -> Result<Templates, (&'static str, String)> {
        let hint = ("hint", self.hint.as_str());
        let mut sources = vec![hint];
        sources.extend(self.plain.as_deref().map(|p| ("plain", p)));
        // The error names its template; the field is `plain` only if `hint` alone compiles.
        Templates::new(sources).map_err(|e| (if Templates::new([hint]).is_ok() { "plain" } else { "hint" }, e))
    }

    /// The two streams' prompt texts for `row`; checks the reference.
    fn prompts(&self, templates: &Templates, row: &Row, tok: &Tokenizer) -> anyhow::Result<(String, String)> {
        let reference = str_field(row, &self.reference_field)?;
        if let Some(d) = &self.delimiter {
            if !reference.contains(d.as_str()) {
                anyhow::bail!(
                    "the reference (`{}`) has no answer delimiter {d:?}: Hinted Decoding switches to the plain stream at it. \
                     Fix the reference, or set `delimiter:` to the marker the references use",
                    self.reference_field
                );
            }
        }
        let with = |text: String| {
            let mut r = row.clone();
            r.insert(field::PROMPT.into(), text.into());
            r.remove(field::MESSAGES);
            r
        };
        let hinted = templates.render("hint", row).map_err(anyhow::Error::msg)?;
        let hinted = prompt_text(&with(hinted), tok, self.chat, None)?;
        let plain = match &self.plain {
            Some(_) => prompt_text(&with(templates.render("plain", row).map_err(anyhow::Error::msg)?), tok, self.chat, None)?,
            None => prompt_text(row, tok, self.chat, None)?,
        };
        Ok((hinted, plain))
    }
}

/// The item id that seeds a rewrite's RNG: from its two prompts.
fn item_id(hinted: &str, plain: &str) -> u64 {
    let h = blake3::hash(format!("{hinted}\u{0}{plain}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Hinted Decoding's mix of the hinted (0) and plain (1) streams.
pub struct HintMix<'a> {
    /// β.
    pub beta: f64,
    /// λ's shape.
    pub schedule: LambdaSchedule,
    /// |V|.
    pub vocab: usize,
    /// Switch to the plain stream once the text holds this.
    pub delimiter: Option<&'a str>,
    /// Detokenizer (for the delimiter).
    pub decode: &'a (dyn Fn(&[u32]) -> String + Sync),
}

/// What [`HintMix`] keeps per rewrite.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HintState {
    /// The number of tokens written when the delimiter was seen: from that
    /// token on, the plain stream alone.
    pub switched_at: Option<usize>,
    /// Sum of λ over the steps (1 after the switch, 0 for the first token).
    pub lambda_sum: f64,
}

impl Mix for HintMix<'_> {
    type State = HintState;

    fn start(&self, _item: usize) -> HintState {
        HintState::default()
    }

    fn mix(&self, state: &mut HintState, tokens: &[u32], logp: &[&[f32]], entropy: &[f32], out: &mut [f32]) {
        if state.switched_at.is_none() {
            if let Some(d) = self.delimiter {
                // The delimiter's last byte came with the last token, so it
                // lies within the last `len + 1` tokens (each at least a byte).
                let tail = &tokens[tokens.len().saturating_sub(d.len() + 1)..];
                if !tokens.is_empty() && (self.decode)(tail).contains(d) {
                    state.switched_at = Some(tokens.len());
                }
            }
        }
        let lambda = if state.switched_at.is_some() {
            1.0
        } else if tokens.is_empty() {
            0.0
        } else {
            step_lambda(self.schedule, self.beta, f64::from(entropy[0]), self.vocab)
        };
        state.lambda_sum += lambda;
        mix_logprobs(lambda, logp[0], logp[1], out);
    }
}

#[cfg(test)]
#[path = "hint_rewrite_tests.rs"]
mod tests;
