//! `evaluate`'s `cascade:` block: CasCoD's inference (METHODS §3 C5) and the
//! one-pass reading of the same prompt, both from each task's question.
//!
//! The prompts are `methods::cascade`'s, byte for byte what training saw:
//!
//! - `mode: cascade` (default): step 1 samples the rationale from
//!   `P + "Rationale:"` until EOS or the marker; step 2 samples the answer
//!   from `P + "Rationale:" + r + "\n" + marker`. The response scored is
//!   `r + "\n" + marker + answer`.
//! - `mode: one_pass`: one sample from `P + "Rationale:"`, which should
//!   write `r`, the marker and the answer itself (how Std-CoT is read).
//!
//! Both steps go through the item cache, like any sampled item: a step's
//! key is its own prompt and sampling settings (step 1 adds the marker to
//! `stop`), so re-running, or adding tasks, samples only what is new.
//!
//! On a model loaded here, step 2 continues step 1's KV cache
//! (`common::two_step`): the answer prompt is re-tokenized as before, and
//! only what it does not share with step 1's token stream is encoded (see
//! BENCHMARKS.md).

use retort_cache::Hash;
use retort_engine::{Hashed, Row, StageCtx};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::model::Sampler;
use crate::common::rows::{field, str_field};
use crate::common::sampler::{sample_all, Item, Prompt, Sampled};
use crate::common::two_step::{sample_two_steps, TwoSteps};
use crate::common::sampling::Sampling;
use crate::methods::cascade::{answer_prompt, base_prompt, rationale_prompt, split_response};
use crate::methods::CascadeSpec;

/// Read each task's question with CasCoD's prompt forms.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CascadeEval {
    /// The phrase that ends the rationale (as in `cascade_split`).
    #[serde(default = "default_marker")]
    pub marker: String,
    /// Row field holding a task description, if any (as in `cascade_split`).
    #[serde(default)]
    pub task_field: Option<String>,
    /// `cascade` (two steps, default) or `one_pass`.
    #[serde(default)]
    pub mode: CascadeMode,
}

/// How the answer is produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CascadeMode {
    /// Rationale, then the answer after the forced marker.
    #[default]
    Cascade,
    /// One generation from the rationale prompt.
    OnePass,
}

fn default_marker() -> String {
    CascadeSpec::default().marker
}

/// One sample's text, cut at the marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CascadeSample {
    /// The whole response the verifier reads.
    pub response: String,
    /// The rationale (before the marker), trimmed.
    pub rationale: String,
    /// What follows the marker (empty when one-pass wrote no marker).
    pub answer: String,
}

impl CascadeEval {
    /// Everything here changes what is sampled.
    pub fn hashed(&self) -> serde_json::Value {
        let CascadeEval {
            marker,
            task_field,
            mode,
        } = self;
        // Two-step inference's version, hashed only for `mode: cascade`
        // (one-pass output is unchanged, so its stages keep their
        // fingerprints, as evaluate's own VERSION would not allow).
        // 2: step 2 continues step 1's KV cache instead of re-encoding
        //    prompt + rationale, so an answer may differ in the last float
        //    bits (rarely, in a token) from version 1's.
        let version = (*mode == CascadeMode::Cascade).then_some(2u32);
        Hashed::new()
            .field("marker", marker)
            .opt("task_field", task_field)
            .field("mode", mode)
            .opt("version", &version)
            .into_value()
    }

    /// Checks for load time.
    pub fn check(&self) -> Result<(), String> {
        if self.marker.trim().is_empty() {
            return Err("`cascade.marker` must not be empty".into());
        }
        Ok(())
    }

    /// `P` of every task row, from its question (`prompt`) and task field.
    fn bases(&self, tasks: &[Row]) -> anyhow::Result<Vec<String>> {
        tasks
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let q = str_field(row, field::PROMPT)
                    .map_err(|e| anyhow::anyhow!("task row {i}: {e}"))?;
                let task = match &self.task_field {
                    Some(f) => {
                        Some(str_field(row, f).map_err(|e| anyhow::anyhow!("task row {i}: {e}"))?)
                    }
                    None => None,
                };
                Ok(base_prompt(q, task))
            })
            .collect()
    }

    /// Samples `samples` answers per task row (row-major, like one-pass
    /// evaluation).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        ctx: &StageCtx<'_>,
        lm: &Sampler,
        model_hash: Hash,
        sampling: &Sampling,
        seed: u64,
        tasks: &[Row],
        samples: usize,
        batch_size: usize,
    ) -> anyhow::Result<Vec<CascadeSample>> {
        let bases = self.bases(tasks)?;
        let items = |prompt: &dyn Fn(usize, usize) -> String| -> Vec<Item> {
            (0..tasks.len() * samples)
                .map(|k| Item {
                    prompt: Prompt::Text(prompt(k / samples, k % samples)),
                    sample_index: k % samples,
                    row: k / samples,
                })
                .collect()
        };
        let first = items(&|row, _| rationale_prompt(&bases[row]));
        if self.mode == CascadeMode::OnePass {
            let (out, _) = sample_all(ctx, lm, model_hash, sampling, seed, None, &first, batch_size)?;
            return Ok(out.into_iter().map(|s| self.one_pass(s.response)).collect());
        }
        let step1 = self.rationale_sampling(sampling);
        let steps = TwoSteps { model: lm, model_hash, first: &step1, second: sampling, seed, batch_size };
        let next = |i: usize, s: &Sampled| {
            Prompt::Text(answer_prompt(&bases[first[i].row], &self.rationale_of(&s.response), &self.marker))
        };
        let (out, answers) = sample_two_steps(ctx, &steps, &first, &next)?;
        Ok(out
            .into_iter()
            .zip(answers)
            .map(|(r, a)| self.joined(self.rationale_of(&r.response), a.response))
            .collect())
    }

    /// Step 1's settings: the stage's, stopping at the marker too.
    pub fn rationale_sampling(&self, sampling: &Sampling) -> Sampling {
        let mut s = sampling.clone();
        if !s.stop.contains(&self.marker) {
            s.stop.push(self.marker.clone());
        }
        s
    }

    /// Step 1's text up to the marker (the stop string is kept in a
    /// sample), trimmed as `cascade_split` trims training rationales.
    pub fn rationale_of(&self, text: &str) -> String {
        text.split(self.marker.as_str())
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The response scored after two steps.
    pub fn joined(&self, rationale: String, answer: String) -> CascadeSample {
        let response = format!("{rationale}\n{}{answer}", self.marker);
        CascadeSample {
            response,
            rationale,
            answer,
        }
    }

    fn one_pass(&self, response: String) -> CascadeSample {
        let (rationale, answer) = match split_response(&response, &self.marker) {
            Some((r, a)) => (r.to_string(), a.to_string()),
            None => (response.trim().to_string(), String::new()),
        };
        CascadeSample {
            response,
            rationale,
            answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(yaml: &str) -> CascadeEval {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn step_one_stops_at_the_marker_and_is_cut_there() {
        let c = eval("{}");
        assert_eq!(c.marker, "Therefore, the answer is");
        let s = c.rationale_sampling(&Sampling {
            stop: vec!["\n\n".into()],
            ..Sampling::greedy()
        });
        assert_eq!(s.stop, ["\n\n", "Therefore, the answer is"]);
        assert_eq!(
            c.rationale_of(" 2 + 3 = 5.\nTherefore, the answer is"),
            "2 + 3 = 5."
        );
        assert_eq!(
            c.rationale_of("2 + 3 = 5."),
            "2 + 3 = 5.",
            "EOS before the marker"
        );
        let j = c.joined("2 + 3 = 5.".into(), " 5.".into());
        assert_eq!(j.response, "2 + 3 = 5.\nTherefore, the answer is 5.");
    }

    #[test]
    fn one_pass_splits_what_the_model_wrote() {
        let c = eval("{mode: one_pass}");
        let s = c.one_pass("2 + 3 = 5.\nTherefore, the answer is 5.".into());
        assert_eq!(
            (s.rationale.as_str(), s.answer.as_str()),
            ("2 + 3 = 5.", "5.")
        );
        let s = c.one_pass("no marker".into());
        assert_eq!((s.rationale.as_str(), s.answer.as_str()), ("no marker", ""));
        assert!(eval("{marker: ' '}").check().is_err());
    }
}
