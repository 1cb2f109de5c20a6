//! The page: sections in a fixed order, every piece of user text escaped,
//! plots inlined as SVG. No script, and a Content-Security-Policy that lets
//! the page load nothing from anywhere.

use std::fmt::Write as _;

use retort_engine::events::human_ms;

use crate::collect::{ReportData, StageInfo};
use crate::{curves, dag, evals, ReportError};

/// How much of a dataset cell the page shows.
const CELL_CHARS: usize = 400;

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1280px;padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:2em}
h3{margin-bottom:4px}.sub{color:#57606a;margin-top:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.cell{white-space:pre-wrap;max-width:420px;overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:12px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots figure{margin:0}
figure svg{border:1px solid #eaeef2}figure.dag svg{max-width:100%;height:auto}
.state{padding:1px 6px;border-radius:8px;font-size:12px}
.cached{background:#dafbe1}.stale{background:#fff8c5}.not-run,.skipped{background:#eaeef2}.failed{background:#ffebe9}
.note{color:#9a6700}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
";

/// The whole page.
pub fn render(data: &ReportData) -> Result<String, ReportError> {
    let mut h = String::new();
    let title = format!("retort report: {}", data.pipeline);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n<h1>{}</h1>\n<p class=\"sub\">{} · {} stages</p>\n",
        escape(&title),
        escape(&data.pipeline),
        escape(&data.file),
        data.stages.len()
    );
    graph_section(&mut h, data)?;
    training_section(&mut h, data)?;
    evaluation_section(&mut h, data)?;
    datasets_section(&mut h, data);
    lock_section(&mut h, data);
    h += "</body></html>\n";
    Ok(h)
}

fn state_badge(s: &StageInfo) -> String {
    let word = s.state.word();
    format!("<span class=\"state {}\">{word}</span>", word.replace(' ', "-"))
}

fn graph_section(h: &mut String, data: &ReportData) -> Result<(), ReportError> {
    h.push_str("<h2 id=\"graph\">Stages</h2>\n<figure class=\"dag\">");
    h.push_str(&dag::svg(data)?);
    h.push_str("</figure>\n<table class=\"stages\"><tr><th>stage</th><th>kind</th><th>state</th><th>duration</th><th>why</th></tr>\n");
    for s in &data.stages {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#out-{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td class=\"num\">{3}</td><td>{4}</td></tr>",
            escape(&s.name),
            escape(&s.kind),
            state_badge(s),
            s.duration_ms.map(human_ms).unwrap_or_else(|| "–".into()),
            escape(s.state.reason().unwrap_or("up to date"))
        );
    }
    h.push_str("</table>\n");
    Ok(())
}

fn training_section(h: &mut String, data: &ReportData) -> Result<(), ReportError> {
    let trained: Vec<&StageInfo> = data.stages.iter().filter(|s| s.steps.is_some()).collect();
    if trained.is_empty() {
        return Ok(());
    }
    h.push_str("<h2 id=\"training\">Training</h2>\n");
    for s in trained {
        let steps = s.steps.as_deref().unwrap_or_default();
        let _ = writeln!(
            h,
            "<section class=\"training\" id=\"stage-{0}\" data-stage=\"{0}\" data-steps=\"{1}\"><h3>{0} {2}</h3>",
            escape(&s.name),
            steps.len(),
            state_badge(s)
        );
        metrics_line(h, s);
        h.push_str("<div class=\"plots\">");
        for (series, svg) in curves::charts(steps)? {
            let _ = write!(h, "<figure class=\"curve\" data-metric=\"{}\">{svg}</figure>", escape(&series));
        }
        h.push_str("</div></section>\n");
    }
    Ok(())
}

fn metrics_line(h: &mut String, s: &StageInfo) {
    let parts: Vec<String> = s
        .metrics
        .iter()
        .filter(|(_, v)| !v.is_object() && !v.is_array())
        .map(|(k, v)| format!("{}={}", escape(k), escape(&cell(v))))
        .collect();
    let duration = s.duration_ms.map(|d| format!(" · ran in {}", human_ms(d))).unwrap_or_default();
    let _ = writeln!(h, "<p class=\"sub mono\">{}{duration}</p>", parts.join(" · "));
    for n in &s.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
    }
}

fn evaluation_section(h: &mut String, data: &ReportData) -> Result<(), ReportError> {
    let order: Vec<&str> = data.stages.iter().map(|s| s.name.as_str()).collect();
    let evaluations: Vec<(&StageInfo, evals::Evaluation)> =
        data.stages.iter().filter_map(|s| evals::parse(&s.metrics, &order).map(|e| (s, e))).collect();
    if evaluations.is_empty() {
        return Ok(());
    }
    h.push_str("<h2 id=\"evaluation\">Evaluation</h2>\n");
    for (s, e) in evaluations {
        let _ = writeln!(h, "<section class=\"evaluation\" id=\"stage-{0}\"><h3>{0} {1}</h3>", escape(&s.name), state_badge(s));
        h.push_str(&evals::tables(&e));
        let _ = write!(h, "<figure class=\"eval-chart\">{}</figure>", evals::chart(&e)?);
        h.push_str("</section>\n");
    }
    Ok(())
}

fn datasets_section(h: &mut String, data: &ReportData) {
    h.push_str("<h2 id=\"datasets\">Outputs</h2>\n");
    for s in &data.stages {
        if s.datasets.is_empty() && s.texts.is_empty() && s.models.is_empty() && s.notes.is_empty() {
            continue;
        }
        let _ = writeln!(h, "<section class=\"outputs\"><h3 id=\"out-{0}\">{0} <span class=\"sub\">({1})</span></h3>", escape(&s.name), escape(&s.kind));
        for n in &s.notes {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
        }
        for d in &s.datasets {
            let total = d.rows.map(|r| format!(" of {r}")).unwrap_or_default();
            let _ = writeln!(h, "<p><code>{}.{}</code>: first {}{total} rows</p>", escape(&s.name), escape(&d.output), d.head.len());
            rows_table(h, &d.head);
        }
        for (name, text) in &s.texts {
            let _ = writeln!(h, "<p><code>{}.{}</code></p><pre>{}</pre>", escape(&s.name), escape(name), escape(text));
        }
        for (name, bytes) in &s.models {
            let _ = writeln!(h, "<p><code>{}.{}</code>: a model, {:.1} MB</p>", escape(&s.name), escape(name), *bytes as f64 / 1e6);
        }
        h.push_str("</section>\n");
    }
}

fn rows_table(h: &mut String, rows: &[retort_engine::StepRow]) {
    let mut cols: Vec<&str> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if !cols.contains(&k.as_str()) {
                cols.push(k);
            }
        }
    }
    h.push_str("<table class=\"rows\"><tr>");
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for r in rows {
        h.push_str("<tr>");
        for c in &cols {
            let text = r.get(*c).map(cell).unwrap_or_default();
            let shown: String = text.chars().take(CELL_CHARS).collect();
            let more = if shown.len() < text.len() { "…" } else { "" };
            let _ = write!(h, "<td class=\"cell\">{}{more}</td>", escape(&shown));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn lock_section(h: &mut String, data: &ReportData) {
    h.push_str("<h2 id=\"lock\">Fingerprints</h2>\n<p class=\"sub\">The fingerprint each stage has now, and the one <code>retort.lock</code> records.</p>\n");
    h.push_str("<table class=\"lock\"><tr><th>stage</th><th>seed</th><th>fingerprint now</th><th>in retort.lock</th></tr>\n");
    for s in &data.stages {
        let (locked, seed) = match &s.locked {
            Some((f, seed)) if Some(f) == s.fingerprint.as_ref() => ("same".to_string(), *seed),
            Some((f, seed)) => (f.clone(), *seed),
            None => ("–".to_string(), None),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            escape(&s.name),
            seed.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
            escape(s.fingerprint.as_deref().unwrap_or("–")),
            escape(&locked)
        );
    }
    h.push_str("</table>\n");
}

/// A JSON value for a cell: strings raw (escaped later), others compact JSON.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{Dataset, State};

    fn step(i: usize, loss: f64) -> retort_engine::StepRow {
        serde_json::from_value(serde_json::json!({"step": i, "loss": loss, "lr": 1e-3, "grad_norm": 0.5, "tokens": 40})).unwrap()
    }

    fn data() -> ReportData {
        let mut tasks = StageInfo::new("tasks", "task", State::Cached);
        tasks.duration_ms = Some(12);
        let row: retort_engine::StepRow =
            serde_json::from_value(serde_json::json!({"prompt": "</script><b>bold</b> & 'q'", "target": 24})).unwrap();
        tasks.datasets.push(Dataset { output: "out".into(), rows: Some(100), head: vec![row] });
        let mut sft = StageInfo::new("sft", "train", State::Stale("params.lr: 0.1 -> 0.2".into()));
        sft.steps = Some((0..7).map(|i| step(i, 2.0 - 0.1 * i as f64)).collect());
        let mut grpo = StageInfo::new("grpo", "train", State::Cached);
        grpo.steps = Some(
            (0..3)
                .map(|i| serde_json::from_value(serde_json::json!({"step": i, "loss": 0.1, "lr": 1e-5, "grad_norm": 1.0, "extra": {"reward_mean": 0.1 * i as f64, "kl": 0.01}})).unwrap())
                .map(|mut s: retort_engine::StepRow| {
                    // As read_step_log gives them: `extra` flattened.
                    if let Some(serde_json::Value::Object(inner)) = s.remove("extra") {
                        s.extend(inner);
                    }
                    s
                })
                .collect(),
        );
        let mut eval = StageInfo::new("eval", "evaluate", State::NotRun("new stage".into()));
        eval.metrics = serde_json::from_str(r#"{"sft/acc@3":0.5,"sft/acc@3_lo":0.4,"sft/acc@3_hi":0.6,"sft/acc":0.5}"#).unwrap();
        ReportData {
            pipeline: "demo <p>".into(),
            file: "pipelines/demo.yaml".into(),
            stages: vec![tasks, sft, grpo, eval],
            edges: vec![(0, 1, "out".into()), (1, 2, "model".into()), (2, 3, "model".into()), (1, 3, "model".into())],
        }
    }

    /// The `<figure class="curve">` blocks of one training section.
    fn curves_of<'a>(html: &'a str, stage: &str) -> Vec<&'a str> {
        let start = html.find(&format!("<section class=\"training\" id=\"stage-{stage}\"")).expect("a training section");
        let section = &html[start..start + html[start..].find("</section>").unwrap()];
        section.split("<figure class=\"curve\"").skip(1).collect()
    }

    #[test]
    fn each_training_stage_has_a_plot_per_number_with_every_step_as_a_point() {
        let html = render(&data()).unwrap();
        let sft = curves_of(&html, "sft");
        let metrics: Vec<&str> = sft.iter().map(|f| f.split('"').nth(1).unwrap()).collect();
        assert_eq!(metrics, ["loss", "lr", "grad_norm"], "tokens are not a curve");
        for f in &sft {
            assert_eq!(f.matches("<circle").count(), 7, "{f}");
            assert!(f.contains("<polyline"), "{f}");
        }
        let grpo = curves_of(&html, "grpo");
        let metrics: Vec<&str> = grpo.iter().map(|f| f.split('"').nth(1).unwrap()).collect();
        assert_eq!(metrics, ["loss", "lr", "grad_norm", "reward_mean", "kl"]);
        assert!(grpo.iter().all(|f| f.matches("<circle").count() == 3));
    }

    #[test]
    fn user_text_is_escaped() {
        let html = render(&data()).unwrap();
        assert!(!html.contains("</script><b>"), "a dataset row ended up as markup");
        assert!(html.contains("&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; &#39;q&#39;"));
        assert!(html.contains("<h1>demo &lt;p&gt;</h1>"));
        assert!(!html.contains("<script"), "the page runs no script");
    }

    #[test]
    fn the_page_fetches_nothing() {
        let html = render(&data()).unwrap();
        // SVG's namespace URI is an identifier, not a fetch.
        let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!without_ns.contains("http://") && !without_ns.contains("https://"), "a URL in the page");
        for attr in ["src=", "href=\"http", "@import", "url("] {
            assert!(!without_ns.contains(attr), "{attr} in the page");
        }
        assert!(html.contains("default-src 'none'"));
    }

    #[test]
    fn the_graph_shows_every_stage_with_its_state_and_the_tables_say_why() {
        let html = render(&data()).unwrap();
        let graph = &html[html.find("<figure class=\"dag\">").unwrap()..html.find("</figure>").unwrap()];
        for s in ["tasks", "sft", "grpo", "eval"] {
            assert!(graph.contains(&format!(">{s}<")) || graph.contains(&format!(">\n{s}")), "{s} missing from the graph");
        }
        assert!(graph.contains("task · cached · 12ms"), "{graph}");
        assert!(graph.contains("train · stale"));
        assert!(html.contains("params.lr: 0.1 -&gt; 0.2"));
        // Four edges, each with an arrow head.
        assert_eq!(graph.matches("<polygon").count(), 4, "{graph}");
        assert!(html.contains("50.0% [40.0, 60.0]"));
        assert!(html.contains("first 1 of 100 rows"));
    }

    #[test]
    fn the_layout_puts_a_stage_right_of_everything_it_reads() {
        let d = data();
        let pos = crate::dag::layout(&d);
        for (f, t, _) in &d.edges {
            assert!(pos[*f].0 < pos[*t].0, "{f} -> {t}: {pos:?}");
        }
        assert_eq!(pos[3].0, 3, "eval reads grpo, which reads sft");
    }
}
