//! A training stage's per-step curves: one small chart per number in its
//! step log (loss, lr, grad norm; GRPO's reward, KL and sampling/update
//! seconds; DPO's margin and reward accuracy), each step a point.

use plotters::prelude::*;

use retort_engine::StepRow;

use crate::ReportError;

/// Chart size in pixels.
const SIZE: (u32, u32) = (400, 240);
/// Up to this many steps every step is drawn as a point, too (the browser
/// test counts them); past it only the line, to keep the page small.
pub const MAX_POINTS: usize = 2000;
/// The columns shown first, in this order; the rest follow as first seen.
const FIRST: &[&str] = &["loss", "lr", "grad_norm", "reward_mean", "kl", "margin", "reward_accuracy", "sample_secs", "update_secs"];

/// Whether a step-log column is a curve: numbers only, not the step index,
/// token counts or histogram buckets.
fn plotted(name: &str) -> bool {
    name != "step" && !name.starts_with("tokens") && !name.contains("_hist_")
}

/// The columns to plot, in display order.
pub fn series(steps: &[StepRow]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for s in steps {
        for (k, v) in s {
            if v.is_number() && plotted(k) && !seen.contains(k) {
                seen.push(k.clone());
            }
        }
    }
    let mut out: Vec<String> = FIRST.iter().filter(|f| seen.iter().any(|s| s == *f)).map(|s| s.to_string()).collect();
    out.extend(seen.into_iter().filter(|s| !FIRST.contains(&s.as_str())));
    out
}

/// `(step, value)` of one column; steps without it, or with a value that is
/// not finite, are left out.
pub fn points(steps: &[StepRow], column: &str) -> Vec<(f64, f64)> {
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let x = s.get("step").and_then(|v| v.as_f64()).unwrap_or(i as f64);
            let y = s.get(column)?.as_f64()?;
            y.is_finite().then_some((x, y))
        })
        .collect()
}

/// One chart per column: `(column, svg)`.
pub fn charts(steps: &[StepRow]) -> Result<Vec<(String, String)>, ReportError> {
    series(steps)
        .into_iter()
        .map(|c| {
            let pts = points(steps, &c);
            let svg = chart(&c, &pts)?;
            Ok((c, svg))
        })
        .collect()
}

/// A range that holds every value, padded so a flat line is not on the edge.
pub(crate) fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    (lo - pad, hi + pad)
}

/// Tick labels short enough for a small chart: `0.0003` as `3.0e-4`.
pub(crate) fn tick(v: f64) -> String {
    let a = v.abs();
    // A tick computed as 0.1 - 0.1 is 1e-17, not a number to print.
    if a < 1e-12 {
        "0".into()
    } else if !(1e-2..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}

pub(crate) fn draw_err<E: std::error::Error + Send + Sync>(what: &str) -> impl Fn(DrawingAreaErrorKind<E>) -> ReportError + '_ {
    move |e| ReportError::Draw { what: what.to_string(), message: e.to_string() }
}

fn chart(name: &str, pts: &[(f64, f64)]) -> Result<String, ReportError> {
    let mut svg = String::new();
    let what = format!("`{name}` curve");
    let err = draw_err(&what);
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let (x0, x1) = range(pts.iter().map(|p| p.0));
        let (y0, y1) = range(pts.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(name, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_labels(6)
            .y_labels(6)
            // Steps are whole numbers: no tick at step 0.5.
            .x_label_formatter(&|v| if v.fract() == 0.0 { tick(*v) } else { String::new() })
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(&err)?;
        let color = RGBColor(31, 111, 235);
        chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))).map_err(&err)?;
        if pts.len() <= MAX_POINTS {
            let r = if pts.len() > 200 { 1 } else { 3 };
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, r, color.filled()))).map_err(&err)?;
        }
        root.present().map_err(&err)?;
    }
    Ok(svg)
}
