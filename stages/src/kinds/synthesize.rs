//! `kind: synthesize` — a teacher writes new instructions from few-shot
//! prompts (Self-Instruct, as Montessori-Instruct's `gen_instructions.py`
//! does it, METHODS §5 M1).
//!
//! ```yaml
//! teacher_data:
//!   kind: synthesize
//!   model: teacher
//!   seeds: seeds            # rows with `instruction`
//!   prompts: 40             # few-shot prompts in all
//!   shots: 8                # examples per prompt
//!   from_generated: 2       # after the first round, this many are accepted instructions
//!   prompts_per_round: 10   # a round's prompts see the instructions accepted before it
//!   samples: 4              # samples per prompt
//!   dedupe: 0.7             # reject ROUGE-L F1 above this against seeds and accepted ones
//!   sampling: {temperature: 1.0, top_p: 0.9, max_tokens: 256}
//! ```
//!
//! Each sample's instruction is the text inside its first
//! `<instruction>…</instruction>` (`tag`); samples without one, and
//! near-duplicates, are dropped and counted in the metrics. A template
//! whose prompt ends with the opening tag prefills it (a small model that
//! would otherwise answer the examples then writes just the instruction):
//! the sample is read as if it began with that tag. Output rows:
//! `instruction` (the `field`), `seed_prompt` (the exact few-shot prompt,
//! which pairs group by and a DPO'd teacher is trained on), `raw` (the
//! teacher's whole output), `round` and `sample_index`.
//!
//! Near-duplicate rejection is this kind's `dedupe` option (not a kind of
//! its own): it needs the order in which instructions are accepted, which
//! only the loop that writes them knows. Every sample goes through the item
//! cache, so a killed run resumes; the shots are drawn from the pipeline's
//! seed, so a rerun writes the same prompts.

use anyhow::anyhow;
use retort_engine::{Ask, FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::common::model;
use crate::common::rows::{field, str_field};
use crate::common::sampler::{sample_all, Item};
use crate::common::sampling::Sampling;
use crate::common::template::Templates;
use crate::methods::instructions::{extract, pick_shots, Pool, Rejected};
use crate::methods::Rng;

/// The meta-prompt when none is given: Montessori-Instruct's, shortened.
pub const DEFAULT_TEMPLATE: &str = "Come up with one new instruction like the examples below: clear, self-contained and useful. \
Write it inside <instruction></instruction>.\n{% for e in examples %}<instruction>{{ e }}</instruction>\n{% endfor %}";

/// Write new instructions with a teacher from few-shot prompts.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthesizeStage {
    /// The teacher: a `models:` entry (local or remote) or a stage's model.
    pub model: String,
    /// Seed instructions: rows with `field`.
    pub seeds: String,
    /// The seeds' field, and the output's.
    #[serde(default = "default_field")]
    pub field: String,
    /// The few-shot prompt (Jinja2, `examples` is the list of instructions shown).
    #[serde(default)]
    pub template: Option<String>,
    /// Few-shot prompts in all.
    pub prompts: usize,
    /// Examples per prompt.
    #[serde(default = "default_shots")]
    pub shots: usize,
    /// After the first round, how many of the examples are instructions accepted so far.
    #[serde(default = "default_from_generated")]
    pub from_generated: usize,
    /// Prompts per round.
    #[serde(default = "default_per_round")]
    pub prompts_per_round: usize,
    /// Samples per prompt.
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// The tag the instruction is written in.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Reject an instruction whose ROUGE-L F1 against a seed or an accepted one is above this (null = keep all).
    #[serde(default = "default_dedupe")]
    pub dedupe: Option<f64>,
    /// Apply the tokenizer's chat template to the prompt.
    #[serde(default)]
    pub chat: bool,
    /// A system message for `chat`.
    #[serde(default)]
    pub system: Option<String>,
    /// How the teacher samples (Montessori-Instruct: T 1, top-p 0.9).
    #[serde(default = "default_sampling")]
    pub sampling: Sampling,
    /// Sequences per forward pass (a local teacher).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_field() -> String {
    "instruction".into()
}
fn default_shots() -> usize {
    8
}
fn default_from_generated() -> usize {
    2
}
fn default_per_round() -> usize {
    10
}
fn default_samples() -> usize {
    4
}
fn default_tag() -> String {
    "instruction".into()
}
fn default_dedupe() -> Option<f64> {
    Some(0.7)
}
fn default_sampling() -> Sampling {
    Sampling { temperature: 1.0, top_p: 0.9, ..Sampling::default() }
}
fn default_batch() -> usize {
    16
}

impl StageImpl for SynthesizeStage {
    const KIND: &'static str = "synthesize";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "A teacher writes new instructions from few-shot prompts, with ROUGE-L near-duplicate rejection (METHODS §5 M1).";

    fn hashed(&self) -> Hashed {
        let SynthesizeStage {
            model: _,
            seeds: _,
            field,
            template,
            prompts,
            shots,
            from_generated,
            prompts_per_round,
            samples,
            tag,
            dedupe,
            chat,
            system,
            sampling,
            batch_size: _,
        } = self;
        Hashed::new()
            .field("field", field)
            .field("template", template.as_deref().unwrap_or(DEFAULT_TEMPLATE))
            .field("prompts", prompts)
            .field("shots", shots)
            .field("from_generated", from_generated)
            .field("prompts_per_round", prompts_per_round)
            .field("samples", samples)
            .field("tag", tag)
            .field("dedupe", dedupe)
            .field("chat", chat)
            .opt("system", system)
            .field("sampling", sampling.hashed().into_value())
    }
}

/// Output fields besides the instruction.
const SEED_PROMPT: &str = "seed_prompt";
const RAW: &str = "raw";
const ROUND: &str = "round";

impl SynthesizeStage {
    fn templates(&self) -> Result<Templates, String> {
        Templates::new([("prompt", self.template.as_deref().unwrap_or(DEFAULT_TEMPLATE))])
    }
}

impl Stage for SynthesizeStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let mut model = InputDecl::sampler("model", &self.model, "model");
        if self.chat {
            model = model.asking(Ask::ChatTurns, "chat");
        }
        vec![model, InputDecl::rows("seeds", &self.seeds, "seeds")]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        Some([self.field.as_str(), SEED_PROMPT, RAW, ROUND, field::SAMPLE_INDEX].iter().map(|s| s.to_string()).collect())
    }

    fn check(&self) -> Result<(), FieldError> {
        for (name, v) in [("prompts", self.prompts), ("shots", self.shots), ("prompts_per_round", self.prompts_per_round), ("samples", self.samples)] {
            if v == 0 {
                return Err(FieldError::new(name, "must be at least 1"));
            }
        }
        if self.from_generated > self.shots {
            return Err(FieldError::new("from_generated", format!("is {} but a prompt shows {} examples (`shots`)", self.from_generated, self.shots)));
        }
        if let Some(d) = self.dedupe.filter(|d| !(0.0..=1.0).contains(d)) {
            return Err(FieldError::new("dedupe", format!("is {d}: a ROUGE-L F1 threshold, between 0 and 1 (Self-Instruct: 0.7)")));
        }
        if self.tag.is_empty() || self.tag.contains(['<', '>']) {
            return Err(FieldError::new("tag", "name the tag without brackets, e.g. `instruction`"));
        }
        self.templates().map_err(|e| FieldError::new("template", e))?;
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let input = ctx.input("model")?.clone();
        let sampler = model::sampler(&input, &self.model, ctx)?;
        let seed_rows = ctx.read_rows_nonempty("seeds", "seed instructions")?;
        let seeds: Vec<String> = seed_rows
            .iter()
            .enumerate()
            .map(|(i, r)| str_field(r, &self.field).map(|s| s.trim().to_string()).map_err(|e| anyhow!("seeds row {i}: {e}")))
            .collect::<anyhow::Result<_>>()?;
        let templates = self.templates().map_err(anyhow::Error::msg)?;
        let mut pool = Pool::new(&seeds);
        let mut accepted: Vec<String> = Vec::new();
        let mut out: Vec<Row> = Vec::new();
        let (mut no_tag, mut near_seed, mut near_accepted, mut cached_all, mut sampled_all) = (0usize, 0usize, 0usize, 0usize, 0usize);
        let rounds = self.prompts.div_ceil(self.prompts_per_round);
        for round in 0..rounds {
            let n = self.prompts_per_round.min(self.prompts - round * self.prompts_per_round);
            let mut rng = Rng::for_item(ctx.seed, 0x5359_4e00 + round as u64); // "SYN"
            let mut texts = Vec::with_capacity(n);
            let mut items = Vec::with_capacity(n * self.samples);
            for k in 0..n {
                let shots = pick_shots(&mut rng, &seeds, &accepted, self.shots, self.from_generated, round == 0);
                let mut row = Row::new();
                row.insert("examples".into(), shots.into());
                let text = templates.render("prompt", &row).map_err(|e| anyhow!("round {round}, prompt {k}: {e}"))?;
                let mut p = Row::new();
                p.insert(field::PROMPT.into(), text.clone().into());
                let prompt = sampler.prompt(&p, self.chat, self.system.as_deref())?;
                items.extend((0..self.samples).map(|s| Item { prompt: prompt.clone(), sample_index: s, row: round * self.prompts_per_round + k }));
                texts.push(text);
            }
            let (sampled, cached) = sample_all(ctx, &sampler, input.hash, &self.sampling, ctx.seed, None, &items, self.batch_size)?;
            cached_all += cached;
            sampled_all += sampled.len();
            for (k, group) in sampled.chunks(self.samples).enumerate() {
                for (s, sample) in group.iter().enumerate() {
                    let Some(inst) = read_sample(&texts[k], &sample.response, &self.tag) else {
                        no_tag += 1;
                        continue;
                    };
                    match pool.admit(&inst, self.dedupe) {
                        Err(Rejected::NearSeed(..)) => near_seed += 1,
                        Err(Rejected::NearAccepted(..)) => near_accepted += 1,
                        Ok(()) => {
                            let mut row = Row::new();
                            row.insert(self.field.clone(), inst.clone().into());
                            row.insert(SEED_PROMPT.into(), texts[k].clone().into());
                            row.insert(RAW.into(), sample.response.clone().into());
                            row.insert(ROUND.into(), round.into());
                            row.insert(field::SAMPLE_INDEX.into(), s.into());
                            out.push(row);
                            accepted.push(inst);
                        }
                    }
                }
            }
        }
        ctx.write_rows("out", &out)?;
        ctx.log(format!("{cached_all} of {sampled_all} samples came from the item cache"));
        let share = |c: usize| crate::common::round4(c as f64 / sampled_all.max(1) as f64);
        Ok(Metrics::from([
            ("prompts".to_string(), self.prompts.into()),
            ("samples".to_string(), sampled_all.into()),
            ("accepted".to_string(), out.len().into()),
            ("accepted_share".to_string(), share(out.len()).into()),
            ("no_tag".to_string(), no_tag.into()),
            ("near_seed".to_string(), near_seed.into()),
            ("near_accepted".to_string(), near_accepted.into()),
        ]))
    }
}

/// The instruction in `response` to `prompt`: inside the first tagged
/// span, the opening tag taken from the prompt's end when it prefilled it.
fn read_sample(prompt: &str, response: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    if prompt.ends_with(&open) {
        extract(&format!("{open}{response}"), tag)
    } else {
        extract(response, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_ending_in_the_opening_tag_prefills_it() {
        let t = "instruction";
        assert_eq!(read_sample("...\n<instruction>", "What is 2 + 3?</instruction>\nmore", t).as_deref(), Some("What is 2 + 3?"));
        assert_eq!(read_sample("...\n", "What is 2 + 3?</instruction>", t), None, "no tag, no prefill");
        assert_eq!(read_sample("...\n", "ok <instruction>Add 1.</instruction>", t).as_deref(), Some("Add 1."));
    }

    #[test]
    fn the_default_template_renders_the_examples_in_tags() {
        let s: SynthesizeStage = serde_yaml::from_str("{model: t, seeds: s, prompts: 4}").unwrap();
        s.check().unwrap();
        let mut row = Row::new();
        row.insert("examples".into(), vec!["Add 1 and 2.", "Add 3 and 4."].into());
        let text = s.templates().unwrap().render("prompt", &row).unwrap();
        assert!(text.ends_with("\n<instruction>Add 1 and 2.</instruction>\n<instruction>Add 3 and 4.</instruction>\n"), "{text:?}");
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |y: &str| serde_yaml::from_str::<SynthesizeStage>(y).unwrap().check().unwrap_err().field;
        assert_eq!(bad("{model: t, seeds: s, prompts: 4, shots: 2, from_generated: 3}"), "from_generated");
        assert_eq!(bad("{model: t, seeds: s, prompts: 4, dedupe: 1.5}"), "dedupe");
        assert_eq!(bad("{model: t, seeds: s, prompts: 0}"), "prompts");
        assert_eq!(bad("{model: t, seeds: s, prompts: 4, tag: '<i>'}"), "tag");
        assert_eq!(bad("{model: t, seeds: s, prompts: 4, template: '{{ oops'}"), "template");
    }
}
