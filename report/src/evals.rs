//! Evaluations: an `evaluate` stage's metrics (`MODEL/acc@GROUP` with
//! `_lo`/`_hi` interval ends, `MODEL/acc`, other per-model numbers, and
//! `A_vs_B/diff` comparisons) as tables and a bar chart with the intervals,
//! by number count (or whatever the group is).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;

use crate::curves::draw_err;
use crate::html::escape;
use crate::ReportError;

/// A value with its interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Lower end, when reported.
    pub lo: Option<f64>,
    /// Upper end, when reported.
    pub hi: Option<f64>,
}

/// One evaluated model.
#[derive(Clone, Debug, Default)]
pub struct ModelResult {
    /// The model's name in the evaluation.
    pub name: String,
    /// Accuracy by group (`acc@3` is group `3`).
    pub groups: BTreeMap<String, Estimate>,
    /// Accuracy over everything.
    pub all: Option<Estimate>,
    /// Its other numbers (`n`, `skill_use`, ...).
    pub other: BTreeMap<String, f64>,
}

/// A paired comparison `A − B`.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// `A_vs_B`.
    pub name: String,
    /// The difference in accuracy.
    pub diff: Estimate,
    /// Its numbers other than the difference (`n`, `p_mcnemar`).
    pub other: BTreeMap<String, f64>,
}

/// An evaluation stage's results.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    /// The groups, in order (numbers ascending, then by name).
    pub groups: Vec<String>,
    /// The models, in pipeline order where they are stages.
    pub models: Vec<ModelResult>,
    /// The comparisons.
    pub comparisons: Vec<Comparison>,
}

/// Reads an evaluation from a stage's metrics; `None` when they hold no
/// accuracy. `order` is the pipeline's stage names: models named after a
/// stage are listed in that order.
pub fn parse(metrics: &BTreeMap<String, serde_json::Value>, order: &[&str]) -> Option<Evaluation> {
    let mut models: BTreeMap<String, ModelResult> = BTreeMap::new();
    let mut comparisons: BTreeMap<String, Comparison> = BTreeMap::new();
    for (key, v) in metrics {
        let (Some((who, what)), Some(x)) = (key.rsplit_once('/'), v.as_f64()) else { continue };
        let (base, end) = match what.strip_suffix("_lo").map(|b| (b, "lo")).or_else(|| what.strip_suffix("_hi").map(|b| (b, "hi"))) {
            Some(split) => split,
            None => (what, ""),
        };
        let set = |e: &mut Estimate| match end {
            "lo" => e.lo = Some(x),
            "hi" => e.hi = Some(x),
            _ => e.value = x,
        };
        if who.contains("_vs_") {
            let c = comparisons.entry(who.to_string()).or_insert_with(|| Comparison { name: who.to_string(), ..Default::default() });
            match base {
                "diff" => set(&mut c.diff),
                _ => {
                    c.other.insert(what.to_string(), x);
                }
            }
            continue;
        }
        let m = models.entry(who.to_string()).or_insert_with(|| ModelResult { name: who.to_string(), ..Default::default() });
        if let Some(group) = base.strip_prefix("acc@") {
            set(m.groups.entry(group.to_string()).or_default());
        } else if base == "acc" {
            set(m.all.get_or_insert_with(Estimate::default));
        } else {
            m.other.insert(what.to_string(), x);
        }
    }
    let mut models: Vec<ModelResult> = models.into_values().filter(|m| m.all.is_some() || !m.groups.is_empty()).collect();
    if models.is_empty() {
        return None;
    }
    models.sort_by_key(|m| order.iter().position(|s| *s == m.name).unwrap_or(usize::MAX));
    let mut groups: Vec<String> = models.iter().flat_map(|m| m.groups.keys().cloned()).collect();
    groups.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    });
    groups.dedup();
    Some(Evaluation { groups, models, comparisons: comparisons.into_values().collect() })
}

/// A group's column title: `3 numbers` for a number count.
fn group_title(g: &str) -> String {
    if g.parse::<u32>().is_ok() {
        format!("{g} numbers")
    } else {
        g.to_string()
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

fn estimate_cell(e: &Estimate, unit: &str) -> String {
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => format!("{}{unit} [{}, {}]", pct(e.value), pct(lo), pct(hi)),
        _ => format!("{}{unit}", pct(e.value)),
    }
}

fn number(key: &str, x: f64) -> String {
    if key == "n" || key.starts_with("n_") || x.fract() == 0.0 && x.abs() > 1.0 {
        format!("{x:.0}")
    } else if key.starts_with("p_") {
        format!("{x:.3}")
    } else if (0.0..=1.0).contains(&x) {
        format!("{}%", pct(x))
    } else {
        format!("{x:.4}")
    }
}

/// The results table and the comparisons table.
pub fn tables(e: &Evaluation) -> String {
    let mut h = String::from("<table class=\"eval\"><tr><th>model</th>");
    let others: Vec<&String> = {
        let mut o: Vec<&String> = e.models.iter().flat_map(|m| m.other.keys()).collect();
        o.sort();
        o.dedup();
        o
    };
    for g in &e.groups {
        let _ = write!(h, "<th>{}</th>", escape(&group_title(g)));
    }
    h += "<th>all</th>";
    for o in &others {
        let _ = write!(h, "<th>{}</th>", escape(o));
    }
    h += "</tr>\n";
    for m in &e.models {
        let _ = write!(h, "<tr><td>{}</td>", escape(&m.name));
        for g in &e.groups {
            let c = m.groups.get(g).map(|x| estimate_cell(x, "%")).unwrap_or_else(|| "–".into());
            let _ = write!(h, "<td class=\"num\">{c}</td>");
        }
        let all = m.all.as_ref().map(|x| estimate_cell(x, "%")).unwrap_or_else(|| "–".into());
        let _ = write!(h, "<td class=\"num\">{all}</td>");
        for o in &others {
            let c = m.other.get(*o).map(|x| number(o, *x)).unwrap_or_else(|| "–".into());
            let _ = write!(h, "<td class=\"num\">{c}</td>");
        }
        h += "</tr>\n";
    }
    h += "</table>\n<p class=\"sub\">Accuracy; [interval] as the stage reports it (95% Wilson for <code>evaluate</code>).</p>\n";
    if !e.comparisons.is_empty() {
        h += "<table class=\"comparisons\"><tr><th>comparison</th><th>difference, points [interval]</th><th>items</th><th>McNemar p</th></tr>\n";
        for c in &e.comparisons {
            let name = c.name.replacen("_vs_", " − ", 1);
            let n = c.other.get("n").map(|x| format!("{x:.0}")).unwrap_or_else(|| "–".into());
            let p = c.other.get("p_mcnemar").map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{n}</td><td class=\"num\">{p}</td></tr>",
                escape(&name),
                estimate_cell(&c.diff, "")
            );
        }
        h += "</table>\n";
    }
    h
}

/// Colours of the models' bars.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 111, 235),
    RGBColor(218, 54, 51),
    RGBColor(26, 127, 55),
    RGBColor(191, 135, 0),
    RGBColor(130, 80, 223),
    RGBColor(9, 105, 218),
    RGBColor(188, 76, 0),
    RGBColor(87, 96, 106),
];

/// Bars of accuracy per group (and over all), one per model, with the
/// intervals as error bars.
pub fn chart(e: &Evaluation) -> Result<String, ReportError> {
    let mut columns: Vec<(String, Vec<Option<Estimate>>)> =
        e.groups.iter().map(|g| (group_title(g), e.models.iter().map(|m| m.groups.get(g).copied()).collect())).collect();
    if e.models.iter().any(|m| m.all.is_some()) {
        columns.push(("all".into(), e.models.iter().map(|m| m.all).collect()));
    }
    let top = columns
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().map(|x| x.hi.unwrap_or(x.value).max(x.value)))
        .fold(0.0f64, f64::max);
    let top = (100.0 * top * 1.15).clamp(5.0, 100.0);
    let width = (160 + 90 * columns.len() * e.models.len().max(1)).clamp(480, 1100) as u32;
    let mut svg = String::new();
    let err = draw_err("evaluation chart");
    {
        let root = SVGBackend::with_string(&mut svg, (width, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let n = columns.len();
        let titles: Vec<String> = columns.iter().map(|(t, _)| t.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("accuracy, % [interval]", ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 10 + 1)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    titles.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("%")
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(&err)?;
        let k = e.models.len().max(1) as f64;
        let w = 0.8 / k;
        for (mi, m) in e.models.iter().enumerate() {
            let color = PALETTE[mi % PALETTE.len()];
            let bars: Vec<(f64, Estimate)> =
                columns.iter().enumerate().filter_map(|(ci, (_, v))| v[mi].map(|x| (ci as f64 - 0.4 + w * mi as f64, x))).collect();
            chart
                .draw_series(bars.iter().map(|(x, est)| {
                    Rectangle::new([(*x + 0.1 * w, 0.0), (*x + 0.9 * w, 100.0 * est.value)], color.filled())
                }))
                .map_err(&err)?
                .label(m.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart
                .draw_series(bars.iter().filter(|(_, est)| est.lo.is_some() && est.hi.is_some()).map(|(x, est)| {
                    let lo = 100.0 * est.lo.unwrap_or(est.value);
                    let hi = 100.0 * est.hi.unwrap_or(est.value);
                    ErrorBar::new_vertical(*x + 0.5 * w, lo, 100.0 * est.value, hi, BLACK.stroke_width(1), 6)
                }))
                .map_err(&err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(208, 215, 222))
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_become_models_groups_and_comparisons() {
        let m: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"b/acc":0.1,"b/acc_lo":0.05,"b/acc_hi":0.2,"b/acc@10":0.3,"b/acc@3":0.2,"b/acc@3_lo":0.1,"b/acc@3_hi":0.3,"b/n":600,
                "a/acc@3":0.5,"a_vs_b/diff":0.1,"a_vs_b/diff_lo":0.05,"a_vs_b/diff_hi":0.15,"a_vs_b/p_mcnemar":0.01,"rows":3}"#,
        )
        .unwrap();
        let e = parse(&m, &["b", "a"]).unwrap();
        assert_eq!(e.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(e.groups, ["3", "10"], "number groups sort as numbers");
        assert_eq!(e.models[0].groups["3"], Estimate { value: 0.2, lo: Some(0.1), hi: Some(0.3) });
        assert_eq!(e.models[0].all, Some(Estimate { value: 0.1, lo: Some(0.05), hi: Some(0.2) }));
        assert_eq!(e.models[0].other["n"], 600.0);
        assert_eq!(e.comparisons[0].diff.hi, Some(0.15));
        let t = tables(&e);
        assert!(t.contains("20.0% [10.0, 30.0]"), "{t}");
        assert!(t.contains("a − b"), "{t}");
        let svg = chart(&e).unwrap();
        assert!(svg.matches("<rect").count() >= 4, "{svg}");
        assert!(parse(&serde_json::from_str(r#"{"rows":3,"loss_last":1.0}"#).unwrap(), &[]).is_none());
    }
}
