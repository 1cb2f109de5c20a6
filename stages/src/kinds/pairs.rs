//! `kind: pairs` — preference pairs from labelled rows, grouped by the
//! prompt they came from (Montessori-Instruct's M6, METHODS §5).
//!
//! ```yaml
//! teacher_pairs:
//!   kind: pairs
//!   data: influence        # rows with the group, text and label fields
//!   group: seed_prompt     # the pair's prompt: rows are paired within a group
//!   text: raw              # what is compared: the teacher's raw output
//!   label: helpful         # true: may be chosen; false: may be rejected
//!   labels: as_is          # or `shuffled`: the random-label control
//! ```
//!
//! Every (helpful, unhelpful) cross pair of a group is emitted, groups
//! lacking either are skipped, in the order groups and rows first appear.
//! Rows: `prompt` (the group's value), `chosen`, `rejected`, and
//! `chosen_score` / `rejected_score` when the rows have a `score`: the
//! preference format `train`'s `dpo` and `export` read. `labels: shuffled`
//! keeps the same pairs and swaps chosen and rejected in a seeded half of
//! them: a DPO teacher trained on those learns from the same texts with no
//! signal in the labels.

use anyhow::{anyhow, bail};
use retort_engine::{FieldError, Fields, Hashed, InputDecl, Metrics, Row, Stage, StageCtx, StageImpl};
use retort_lm::rng::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::rows::field;

/// Whether the labels are used as they are or shuffled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Labels {
    /// Chosen = labelled true.
    #[default]
    AsIs,
    /// The same pairs, each swapped with probability ½ (seeded).
    Shuffled,
}

/// Build preference pairs within groups of labelled rows.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairsStage {
    /// Labelled rows: `STAGE` or `STAGE.OUTPUT`.
    pub data: String,
    /// The field rows are grouped by; its value becomes the pair's `prompt`.
    #[serde(default = "default_group")]
    pub group: String,
    /// The field holding the text compared: by default `raw`, the teacher's
    /// whole output after the prompt (Montessori-Instruct's `raw_inst`), which
    /// is what DPO must raise or lower; the extracted `instruction` alone is
    /// not a text the teacher writes after its prompt.
    #[serde(default = "default_text")]
    pub text: String,
    /// The boolean field: true may be chosen, false may be rejected.
    #[serde(default = "default_label")]
    pub label: String,
    /// as_is (default) or shuffled (the random-label control).
    #[serde(default)]
    pub labels: Labels,
}

fn default_group() -> String {
    "seed_prompt".into()
}
fn default_text() -> String {
    "raw".into()
}
fn default_label() -> String {
    "helpful".into()
}

impl StageImpl for PairsStage {
    const KIND: &'static str = "pairs";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Preference pairs: every (true, false)-labelled cross pair of rows within a group (METHODS §5 M6).";

    fn hashed(&self) -> Hashed {
        let PairsStage { data: _, group, text, label, labels } = self;
        Hashed::new().field("group", group).field("text", text).field("label", label).field("labels", labels)
    }
}

/// One pair before it is a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The group's value.
    pub prompt: String,
    /// The text labelled true (or, shuffled, either).
    pub chosen: String,
    /// The text labelled false.
    pub rejected: String,
    /// Their `score` fields, when the rows have one.
    pub scores: Option<(Value, Value)>,
}

/// What [`build_pairs`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairCounts {
    /// Distinct groups.
    pub groups: usize,
    /// Groups with both labels (the ones that gave pairs).
    pub used: usize,
}

/// Every cross pair within each group (see the module docs); row `i`'s
/// problems name it.
pub fn build_pairs(rows: &[Row], group: &str, text: &str, label: &str) -> anyhow::Result<(Vec<Pair>, PairCounts)> {
    // Groups in order of first appearance, each its true and false rows.
    let mut order: Vec<String> = Vec::new();
    let mut members: std::collections::HashMap<String, (Vec<usize>, Vec<usize>)> = Default::default();
    for (i, r) in rows.iter().enumerate() {
        let g = r
            .get(group)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("data row {i} has no string field `{group}`: pairs are built within groups of rows sharing it"))?;
        r.get(text).and_then(Value::as_str).ok_or_else(|| anyhow!("data row {i} has no string field `{text}` to compare"))?;
        let l = r
            .get(label)
            .and_then(Value::as_bool)
            .ok_or_else(|| anyhow!("data row {i}: `{label}` must be true or false (what labels the row chosen or rejected)"))?;
        let entry = members.entry(g.to_string()).or_insert_with(|| {
            order.push(g.to_string());
            Default::default()
        });
        if l {
            entry.0.push(i)
        } else {
            entry.1.push(i)
        }
    }
    let mut pairs = Vec::new();
    let mut counts = PairCounts { groups: order.len(), used: 0 };
    let str_of = |i: usize| rows[i][text].as_str().expect("checked").to_string();
    for g in &order {
        let (yes, no) = &members[g];
        if yes.is_empty() || no.is_empty() {
            continue;
        }
        counts.used += 1;
        for &c in yes {
            for &r in no {
                let scores = match (rows[c].get("score"), rows[r].get("score")) {
                    (Some(a), Some(b)) => Some((a.clone(), b.clone())),
                    _ => None,
                };
                pairs.push(Pair { prompt: g.clone(), chosen: str_of(c), rejected: str_of(r), scores });
            }
        }
    }
    Ok((pairs, counts))
}

impl Stage for PairsStage {
    fn inputs(&self) -> Vec<InputDecl> {
        let data = InputDecl::rows("data", &self.data, "data");
        // The defaults are checked where the field names are known: the
        // usual case (seed_prompt, raw, helpful) gets a load-time error.
        let data = if self.group == default_group() { data.needing(&["seed_prompt"], "pairs' `group`") } else { data };
        let data = if self.text == default_text() { data.needing(&["raw"], "pairs' `text`") } else { data };
        let data = if self.label == default_label() { data.needing(&["helpful"], "pairs' `label`") } else { data };
        vec![data]
    }

    fn outputs(&self) -> Vec<String> {
        vec!["out".into()]
    }

    fn output_fields(&self, _name: &str, _input: &dyn Fn(&str) -> Fields) -> Fields {
        Some([field::PROMPT, field::CHOSEN, field::REJECTED].iter().map(|s| s.to_string()).collect())
    }

    fn check(&self) -> Result<(), FieldError> {
        for (name, v) in [("group", &self.group), ("text", &self.text), ("label", &self.label)] {
            if v.is_empty() {
                return Err(FieldError::new(name, "must name a field"));
            }
        }
        Ok(())
    }

    fn run(&self, ctx: &mut StageCtx<'_>) -> anyhow::Result<Metrics> {
        let rows = ctx.read_rows_nonempty("data", "labelled rows")?;
        let (mut pairs, counts) = build_pairs(&rows, &self.group, &self.text, &self.label)?;
        if pairs.is_empty() {
            let (yes, no) = rows.iter().fold((0, 0), |(y, n), r| match r.get(&self.label).and_then(Value::as_bool) {
                Some(true) => (y + 1, n),
                _ => (y, n + 1),
            });
            bail!(
                "no pairs: none of the {} groups of `{}` has both a `{}: true` and a `{}: false` row ({yes} true, {no} false in all); \
                 sample more rows per prompt, or check the labels upstream",
                counts.groups,
                self.group,
                self.label,
                self.label
            );
        }
        let mut swapped = 0usize;
        if self.labels == Labels::Shuffled {
            let mut rng = Rng::for_item(ctx.seed, 0x5041_4952); // "PAIR"
            for p in &mut pairs {
                if rng.next_u64() & 1 == 1 {
                    std::mem::swap(&mut p.chosen, &mut p.rejected);
                    p.scores = p.scores.take().map(|(a, b)| (b, a));
                    swapped += 1;
                }
            }
        }
        let out: Vec<Row> = pairs
            .iter()
            .map(|p| {
                let mut row = Row::new();
                row.insert(field::PROMPT.into(), p.prompt.clone().into());
                row.insert(field::CHOSEN.into(), p.chosen.clone().into());
                row.insert(field::REJECTED.into(), p.rejected.clone().into());
                if let Some((a, b)) = &p.scores {
                    row.insert("chosen_score".into(), a.clone());
                    row.insert("rejected_score".into(), b.clone());
                }
                row
            })
            .collect();
        ctx.write_rows("out", &out)?;
        Ok(Metrics::from([
            ("rows_in".to_string(), rows.len().into()),
            ("groups".to_string(), counts.groups.into()),
            ("groups_used".to_string(), counts.used.into()),
            ("pairs".to_string(), out.len().into()),
            ("swapped".to_string(), swapped.into()),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: serde_json::Value) -> Vec<Row> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_cross_pair_within_a_group_and_groups_lacking_a_side_are_skipped() {
        let r = rows(serde_json::json!([
            {"seed_prompt": "P1", "instruction": "a", "helpful": true, "score": 1.0},
            {"seed_prompt": "P2", "instruction": "x", "helpful": true},
            {"seed_prompt": "P1", "instruction": "b", "helpful": false, "score": 3.0},
            {"seed_prompt": "P1", "instruction": "c", "helpful": true, "score": 2.0},
            {"seed_prompt": "P1", "instruction": "d", "helpful": false, "score": 4.0},
            {"seed_prompt": "P3", "instruction": "y", "helpful": false},
        ]));
        let (pairs, counts) = build_pairs(&r, "seed_prompt", "instruction", "helpful").unwrap();
        assert_eq!(counts, PairCounts { groups: 3, used: 1 });
        let got: Vec<(&str, &str)> = pairs.iter().map(|p| (p.chosen.as_str(), p.rejected.as_str())).collect();
        assert_eq!(got, [("a", "b"), ("a", "d"), ("c", "b"), ("c", "d")]);
        assert!(pairs.iter().all(|p| p.prompt == "P1"));
        assert_eq!(pairs[1].scores, Some((serde_json::json!(1.0), serde_json::json!(4.0))));
    }

    #[test]
    fn a_row_without_the_group_or_a_boolean_label_is_named() {
        let r = rows(serde_json::json!([{"instruction": "a", "helpful": true}]));
        let e = build_pairs(&r, "seed_prompt", "instruction", "helpful").unwrap_err();
        assert!(e.to_string().contains("data row 0 has no string field `seed_prompt`"), "{e}");
        let r = rows(serde_json::json!([{"seed_prompt": "p", "instruction": "a", "helpful": "yes"}]));
        let e = build_pairs(&r, "seed_prompt", "instruction", "helpful").unwrap_err();
        assert!(e.to_string().contains("must be true or false"), "{e}");
    }
}
