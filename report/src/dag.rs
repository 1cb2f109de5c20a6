//! The stage graph as an SVG, drawn with the same plotters backend as the
//! curves: a layered layout (a stage's column is one more than its deepest
//! upstream stage's; rows in a column follow their upstream stages' rows),
//! boxes coloured by state, with kind and duration. Pipelines have tens of
//! stages, so this simple layout reads well and needs no JavaScript library.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use retort_engine::events::human_ms;

use crate::collect::{ReportData, State};
use crate::curves::draw_err;
use crate::ReportError;

const BOX_W: i32 = 170;
const BOX_H: i32 = 46;
const GAP_X: i32 = 56;
const GAP_Y: i32 = 16;
const MARGIN: i32 = 12;

/// Column and row of each stage.
pub fn layout(data: &ReportData) -> Vec<(usize, usize)> {
    let n = data.stages.len();
    let mut col = vec![0usize; n];
    // Stages are in dependency order, so one pass settles every column.
    for t in 0..n {
        for &(f, to, _) in &data.edges {
            if to == t {
                col[t] = col[t].max(col[f] + 1);
            }
        }
    }
    let cols = col.iter().max().map_or(0, |c| c + 1);
    let mut row = vec![0usize; n];
    for c in 0..cols {
        let mut members: Vec<(f64, usize)> = (0..n)
            .filter(|&i| col[i] == c)
            .map(|i| {
                let ups: Vec<f64> = data.edges.iter().filter(|e| e.1 == i && col[e.0] < c).map(|e| row[e.0] as f64).collect();
                let centre = if ups.is_empty() { i as f64 * 1e-3 } else { ups.iter().sum::<f64>() / ups.len() as f64 };
                (centre, i)
            })
            .collect();
        members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (r, (_, i)) in members.into_iter().enumerate() {
            row[i] = r;
        }
    }
    col.into_iter().zip(row).collect()
}

fn fill(state: &State) -> RGBColor {
    match state {
        State::Cached => RGBColor(218, 251, 225),
        State::Stale(_) => RGBColor(255, 248, 197),
        State::NotRun(_) | State::Skipped(_) => RGBColor(234, 238, 242),
        State::Failed(_) => RGBColor(255, 235, 233),
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// The graph's SVG.
pub fn svg(data: &ReportData) -> Result<String, ReportError> {
    let pos = layout(data);
    let cols = pos.iter().map(|p| p.0 + 1).max().unwrap_or(1) as i32;
    let rows = pos.iter().map(|p| p.1 + 1).max().unwrap_or(1) as i32;
    let w = 2 * MARGIN + cols * BOX_W + (cols - 1) * GAP_X;
    let h = 2 * MARGIN + rows * BOX_H + (rows - 1) * GAP_Y;
    let at = |i: usize| (MARGIN + pos[i].0 as i32 * (BOX_W + GAP_X), MARGIN + pos[i].1 as i32 * (BOX_H + GAP_Y));
    let mut svg = String::new();
    let err = draw_err("stage graph");
    {
        let root = SVGBackend::with_string(&mut svg, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let edge = RGBColor(140, 149, 159);
        for &(f, t, _) in &data.edges {
            let (fx, fy) = at(f);
            let (tx, ty) = at(t);
            let (x0, y0) = (fx + BOX_W, fy + BOX_H / 2);
            let (x1, y1) = (tx, ty + BOX_H / 2);
            let bend = x1 - GAP_X / 2;
            root.draw(&PathElement::new(vec![(x0, y0), (bend, y0), (bend, y1), (x1 - 6, y1)], edge.stroke_width(1))).map_err(&err)?;
            root.draw(&Polygon::new(vec![(x1, y1), (x1 - 7, y1 - 4), (x1 - 7, y1 + 4)], edge.filled())).map_err(&err)?;
        }
        let name_font = ("sans-serif", 13).into_font().style(FontStyle::Bold).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top));
        let sub_font = ("sans-serif", 11).into_font().color(&RGBColor(87, 96, 106)).pos(Pos::new(HPos::Left, VPos::Top));
        for (i, s) in data.stages.iter().enumerate() {
            let (x, y) = at(i);
            root.draw(&Rectangle::new([(x, y), (x + BOX_W, y + BOX_H)], fill(&s.state).filled())).map_err(&err)?;
            root.draw(&Rectangle::new([(x, y), (x + BOX_W, y + BOX_H)], RGBColor(175, 184, 193).stroke_width(1))).map_err(&err)?;
            root.draw(&Text::new(short(&s.name, 19), (x + 8, y + 7), name_font.clone())).map_err(&err)?;
            let time = s.duration_ms.map(|d| format!(" · {}", human_ms(d))).unwrap_or_default();
            let sub = format!("{} · {}{time}", s.kind, s.state.word());
            root.draw(&Text::new(short(&sub, 30), (x + 8, y + 26), sub_font.clone())).map_err(&err)?;
        }
        root.present().map_err(&err)?;
    }
    Ok(svg)
}
