//! `kind: judge` — which of two models answers the same instructions
//! better, by a judge model, each pair judged in both orders (AlpacaEval's
//! pairwise setting with position swapping; Montessori-Instruct's
//! in-domain metric, METHODS §5).
//!
//! ```yaml
//! judged:
//!   kind: judge
//!   model: judge_model        # a `models:` entry (local or `openai:`) or a stage's model
//!   a: answers_tuned          # rows with `prompt` and `response`
//!   b: answers_untuned        # the same prompts, answered by the other model
//! ```
//!
//! Rows of `a` and `b` are matched by `key` (default `prompt`); both sides
//! must hold the same keys, once each. The judge's prompt is `template`
//! (Jinja2 over the `a` row's fields plus `instruction`, `first`, `second`),
//! by default a short "answer 1 or 2" question; its reply's first `1` or `2`
//! is the verdict (see [`crate::methods::judge`]). Every judgment goes
//! through the item cache. Output rows: the key, `a` and `b` answers, both
//! replies and verdicts, and A's `score` (1 win, 0 loss, ½ for a split or
//! unreadable pair). Metrics: A's win rate with a bootstrap interval, wins,
//! losses and ties, the sign test, position consistency and first-position
//! bias.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use retort_engine::{BadInput, FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::common::model;
use crate::common::round4;
use crate::common::rows::field;
use crate::common::sampler::{sample_all, Item, Prompt};
use crate::common::sampling::Sampling;
use crate::common::template::Templates;
use crate::methods::judge::{parse_verdict, summarize};

/// The judge's prompt unless `template` is given.
pub const DEFAULT_TEMPLATE: &str = "Which response follows the instruction better? Reply with 1 or 2 only.\n\n\
Instruction: {{ instruction }}\n\nResponse 1: {{ first }}\n\nResponse 2: {{ second }}\n\nBetter response:";

/// Judge two models' answers to the same instructions, in both orders.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgeStage {
    /// The judge: a `models:` entry or a stage that outputs a model.
    pub model: String,
    /// Model A's answers: `STAGE` or `STAGE.OUTPUT`, rows with `key` and `field`.
    pub a: String,
    /// Model B's answers to the same instructions.
    pub b: String,
    /// The field that matches a row of `a` with its row of `b`; also the
    /// instruction the judge sees.
    #[serde(default = "default_key")]
    pub key: String,
    /// The field that holds each answer.
    #[serde(default = "default_field")]
    pub field: String,
    /// The judge's prompt (Jinja2): the `a` row's fields plus `instruction`,
    /// `first` and `second`. Default: [`DEFAULT_TEMPLATE`].
    #[serde(default)]
    pub template: Option<String>,
    /// Apply the judge's chat template.
    #[serde(default)]
    pub chat: bool,
    /// A system message for `chat`.
    #[serde(default)]
    pub system: Option<String>,
    /// Text that starts the judge's reply (after the chat template's
    /// assistant turn with `chat`), e.g. `"Response "`, so that a small
    /// model continues with a number; the verdict is read from it and the
    /// reply together. Local models only.
    #[serde(default)]
    pub prefill: Option<String>,
    /// The judge's sampling: greedy, up to 8 new tokens, by default.
    #[serde(default = "default_sampling")]
    pub sampling: Sampling,
    /// Judgments per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_key() -> String {
    field::PROMPT.into()
}
fn default_field() -> String {
    field::RESPONSE.into()
}
fn default_sampling() -> Sampling {
    Sampling { max_tokens: 8, temperature: 0.0, ..Sampling::default() }
}
fn default_batch() -> usize {
    16
}

impl StageImpl for JudgeStage {
    const KIND: &'static str = "judge";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Pairwise judging of two models' answers by a judge model, in both orders (win rate with an interval).";

    fn hashed(&self) -> Hashed {
        // batch_size is not hashed: a judgment does not depend on its batch.
        let JudgeStage { model: _, a: _, b: _, key, field, template, chat, system, prefill, sampling, batch_size: _ } = self;
        Hashed::new()
            .field("key", key)
            .field("field", field)
            .field("template", template.as_deref().unwrap_or(DEFAULT_TEMPLATE))
            .field("chat", chat)
            .opt("system", system)
            // Only when set, so judges without it keep their fingerprints.
            .opt("prefill", prefill)
            .field("sampling", sampling.hashed().into_value())
    }
}

/// A row's value of `name` as the text the judge and the join use.
fn text_of(row: &Row, name: &str) -> Option<String> {
    match row.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v => Some(v.to_string()),
    }
}

impl Stage for JudgeStage {
    fn inputs(&self) -> Vec<InputDecl> {
        // The defaults are checked at load time (other names when the rows are read).
        let need = |d: InputDecl| {
            let d = if self.key == default_key() { d.needing(&[field::PROMPT], "judge's `key`") } else { d };
            if self.field == default_field() { d.needing(&[field::RESPONSE], "judge's `field`") } else { d }
        };
        vec![
            InputDecl::sampler("model", &self.model, "model"),
            need(InputDecl::rows("a", &self.a, "a")),
            need(InputDecl::rows("b", &self.b, "b")),
        ]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        Some(
            [self.key.as_str(), "a", "b", "judge_ab", "judge_ba", "verdict_ab", "verdict_ba", "score"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    }

    fn check(&self) -> Result<(), FieldError> {
        for (name, v) in [("key", &self.key), ("field", &self.field)] {
            if v.is_empty() {
                return Err(FieldError::new(name, "must name a field"));
            }
        }
        if self.a == self.b {
            return Err(FieldError::new("b", "names the same rows as `a`: judge two different models' answers"));
        }
        let template = self.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
        Templates::new([("template", template)]).map_err(|e| FieldError::new("template", e))?;
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let input = ctx.input("model")?.clone();
        let judge = model::sampler(&input, &self.model, ctx)?;
        let a = ctx.read_rows_nonempty("a", "model A's answers")?;
        let b = ctx.read_rows_nonempty("b", "model B's answers")?;
        // Rows that do not match are bad input (exit 2), not a failed run.
        let bad = |e: anyhow::Error| anyhow::Error::new(BadInput(format!("{e:#}").into()));
        let pairs = self.match_rows(&a, &b).map_err(bad)?;
        let template = self.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
        let templates = Templates::new([("template", template)]).map_err(anyhow::Error::msg)?;
        // Two items per pair: A shown first, then B shown first.
        let mut items = Vec::with_capacity(2 * pairs.len());
        for (i, &(ai, bi)) in pairs.iter().enumerate() {
            let (ans_a, ans_b) = (self.answer(&a[ai], "a", ai).map_err(bad)?, self.answer(&b[bi], "b", bi).map_err(bad)?);
            for (first, second) in [(&ans_a, &ans_b), (&ans_b, &ans_a)] {
                let mut row = a[ai].clone();
                row.insert("instruction".into(), text_of(&a[ai], &self.key).unwrap_or_default().into());
                row.insert("first".into(), first.clone().into());
                row.insert("second".into(), second.clone().into());
                let text = templates.render("template", &row).map_err(|e| anyhow!("judge: row {ai} of `a`: {e}"))?;
                let mut prompt_row = Row::new();
                prompt_row.insert(field::PROMPT.into(), text.into());
                let prompt = judge.prompt(&prompt_row, self.chat, self.system.as_deref()).map_err(|e| anyhow!("judge: row {ai} of `a`: {e}"))?;
                let prompt = match (prompt, &self.prefill) {
                    (Prompt::Text(t), Some(p)) => Prompt::Text(t + p),
                    (Prompt::Chat(_), Some(_)) => {
                        return Err(bad(anyhow!("judge: `prefill` needs a model loaded here; an `openai:` model takes chat turns, which cannot start the reply")))
                    }
                    (prompt, None) => prompt,
                };
                items.push(Item { prompt, sample_index: 0, row: i });
            }
        }
        let (replies, cached) = sample_all(ctx, &judge, input.hash, &self.sampling, ctx.seed, None, &items, self.batch_size)?;
        let mut verdicts = Vec::with_capacity(pairs.len());
        let mut out = Vec::with_capacity(pairs.len());
        let prefill = self.prefill.as_deref().unwrap_or("");
        for (&(ai, bi), r) in pairs.iter().zip(replies.chunks(2)) {
            let (ab, ba) = (parse_verdict(&format!("{prefill}{}", r[0].response)), parse_verdict(&format!("{prefill}{}", r[1].response)));
            verdicts.push((ab, ba));
            let mut row = Row::new();
            row.insert(self.key.clone(), a[ai].get(&self.key).cloned().unwrap_or(Value::Null));
            row.insert("a".into(), a[ai].get(&self.field).cloned().unwrap_or(Value::Null));
            row.insert("b".into(), b[bi].get(&self.field).cloned().unwrap_or(Value::Null));
            row.insert("judge_ab".into(), r[0].response.clone().into());
            row.insert("judge_ba".into(), r[1].response.clone().into());
            row.insert("verdict_ab".into(), ab.map_or(Value::Null, Value::from));
            row.insert("verdict_ba".into(), ba.map_or(Value::Null, Value::from));
            row.insert("score".into(), crate::methods::judge::pair_score(ab, ba).into());
            out.push(row);
        }
        ctx.write_rows("out", &out)?;
        let s = summarize(&verdicts, ctx.seed);
        ctx.log(format!(
            "A's win rate {:.1}% [{:.1}, {:.1}] over {} pairs: {} won, {} lost, {} tied (sign test p = {:.3}); \
             {:.0}% of verdicts name the first position, {} of {} replies named neither; {cached} of {} judgments from the item cache",
            100.0 * s.win_rate,
            100.0 * s.interval.lo,
            100.0 * s.interval.hi,
            s.pairs,
            s.a_wins,
            s.b_wins,
            s.ties,
            s.p_value,
            100.0 * s.first_position,
            s.unparsed,
            2 * s.pairs,
            2 * s.pairs,
        ));
        Ok(Metrics::from([
            ("pairs".to_string(), s.pairs.into()),
            ("win_rate".to_string(), round4(s.win_rate).into()),
            ("win_rate_lo".to_string(), round4(s.interval.lo).into()),
            ("win_rate_hi".to_string(), round4(s.interval.hi).into()),
            ("a_wins".to_string(), s.a_wins.into()),
            ("b_wins".to_string(), s.b_wins.into()),
            ("ties".to_string(), s.ties.into()),
            ("sign_test_p".to_string(), round4(s.p_value).into()),
            ("consistency".to_string(), round4(s.consistency).into()),
            ("first_position".to_string(), round4(s.first_position).into()),
            ("unparsed".to_string(), s.unparsed.into()),
        ]))
    }
}

impl JudgeStage {
    /// `(row of a, row of b)` for each of `a`'s rows, in `a`'s order.
    fn match_rows(&self, a: &[Row], b: &[Row]) -> anyhow::Result<Vec<(usize, usize)>> {
        let index = |rows: &[Row], side: &str| -> anyhow::Result<HashMap<String, usize>> {
            let mut at = HashMap::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                let k = text_of(row, &self.key).ok_or_else(|| anyhow!("judge: row {i} of `{side}` has no `{}`", self.key))?;
                if let Some(j) = at.insert(k, i) {
                    bail!("judge: rows {j} and {i} of `{side}` have the same `{}`; each instruction must be answered once per side", self.key);
                }
            }
            Ok(at)
        };
        let (ia, ib) = (index(a, "a")?, index(b, "b")?);
        let mut pairs = Vec::with_capacity(a.len());
        for (i, row) in a.iter().enumerate() {
            let k = text_of(row, &self.key).expect("indexed above");
            let j = *ib.get(&k).ok_or_else(|| {
                anyhow!("judge: row {i} of `a` has a `{}` that no row of `b` has; both sides must answer the same instructions", self.key)
            })?;
            pairs.push((i, j));
        }
        if let Some(j) = (0..b.len()).find(|j| !ia.contains_key(&text_of(&b[*j], &self.key).expect("indexed above"))) {
            bail!("judge: row {j} of `b` has a `{}` that no row of `a` has; both sides must answer the same instructions", self.key);
        }
        Ok(pairs)
    }

    fn answer(&self, row: &Row, side: &str, i: usize) -> anyhow::Result<String> {
        text_of(row, &self.field).ok_or_else(|| anyhow!("judge: row {i} of `{side}` has no `{}`", self.field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> JudgeStage {
        serde_yaml::from_str("{model: j, a: x, b: y}").unwrap()
    }

    fn rows(v: Value) -> Vec<Row> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rows_match_by_key_in_a_order() {
        let a = rows(serde_json::json!([{"prompt": "p1", "response": "x"}, {"prompt": "p2", "response": "y"}]));
        let b = rows(serde_json::json!([{"prompt": "p2", "response": "u"}, {"prompt": "p1", "response": "v"}]));
        assert_eq!(stage().match_rows(&a, &b).unwrap(), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn unmatched_or_repeated_keys_name_the_row() {
        let a = rows(serde_json::json!([{"prompt": "p1", "response": "x"}, {"prompt": "p2", "response": "y"}]));
        let b = rows(serde_json::json!([{"prompt": "p1", "response": "u"}]));
        let e = stage().match_rows(&a, &b).unwrap_err().to_string();
        assert!(e.contains("row 1 of `a`") && e.contains("no row of `b`"), "{e}");
        let e = stage().match_rows(&b, &a).unwrap_err().to_string();
        assert!(e.contains("row 1 of `b`"), "{e}");
        let twice = rows(serde_json::json!([{"prompt": "p1", "response": "u"}, {"prompt": "p1", "response": "w"}]));
        let e = stage().match_rows(&twice, &b).unwrap_err().to_string();
        assert!(e.contains("rows 0 and 1 of `a`"), "{e}");
    }

    #[test]
    fn the_default_template_renders_both_orders() {
        let t = Templates::new([("template", DEFAULT_TEMPLATE)]).unwrap();
        let mut row = Row::new();
        row.insert("instruction".into(), "Add 2 and 3.".into());
        row.insert("first".into(), "5".into());
        row.insert("second".into(), "6".into());
        let text = t.render("template", &row).unwrap();
        assert!(text.contains("Instruction: Add 2 and 3.\n\nResponse 1: 5\n\nResponse 2: 6\n\nBetter response:"), "{text}");
    }

    #[test]
    fn the_same_rows_on_both_sides_are_refused() {
        let s: JudgeStage = serde_yaml::from_str("{model: j, a: x, b: x}").unwrap();
        assert_eq!(s.check().unwrap_err().field, "b");
    }
}
