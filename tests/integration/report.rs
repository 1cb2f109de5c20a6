//! `retort report` on a real run (the reduced quickstart, whose test calls
//! [`check_quickstart_report`] so the run is shared), then the page in a
//! real Chromium: it loads with no console message, every training stage's
//! plots hold one point per step in the browser's DOM, and a screenshot is
//! not blank. Without Chromium the browser half skips, saying so
//! (`scripts/setup-chromium.sh` installs it; `.ci/run` calls that).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Run, TestPipeline, TINY_SFT};

/// Chromium's flags for this sandboxed, offline machine (SCALEOUT.md):
/// without the background-networking ones it tries connections by the dozen.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
];

/// `$RETORT_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RETORT_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("chromium")).find(|p| p.is_file())
}

/// What one headless Chromium run printed.
struct Browser {
    stdout: String,
    /// The page's console messages (`CONSOLE` lines of Chromium's log):
    /// script errors, blocked fetches and CSP violations all land here.
    console: Vec<String>,
}

fn browse(chromium: &Path, profile: &Path, page: &Path, extra: &[&str]) -> Browser {
    let url = format!("file://{}", page.display());
    let out = Command::new(chromium)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    Browser {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        console: stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect(),
    }
}

/// The part of `html` from the training section of `stage` to its end.
fn training_section<'a>(html: &'a str, stage: &str) -> &'a str {
    let start = html
        .find(&format!("<section class=\"training\" id=\"stage-{stage}\""))
        .unwrap_or_else(|| panic!("no training section for `{stage}`"));
    let len = html[start..].find("</section>").expect("the section ends");
    &html[start..start + len]
}

/// Per curve of a training section: (metric, points drawn).
fn curve_points(section: &str) -> Vec<(String, usize)> {
    section
        .split("<figure class=\"curve\"")
        .skip(1)
        .map(|f| (f.split('"').nth(1).unwrap_or_default().to_string(), f.matches("<circle").count()))
        .collect()
}

/// Asserts that each training stage of the run has its plots in `html`,
/// each with one point per step.
fn assert_curves(html: &str, trained: &[(String, usize)], what: &str) {
    for (stage, steps) in trained {
        let section = training_section(html, stage);
        let curves = curve_points(section);
        let names: Vec<&str> = curves.iter().map(|c| c.0.as_str()).collect();
        assert!(names.starts_with(&["loss", "lr", "grad_norm"]), "{what}: `{stage}` plots {names:?}");
        for (metric, points) in &curves {
            assert_eq!(points, steps, "{what}: `{stage}`'s {metric} plot has {points} points for {steps} steps");
        }
    }
}

/// Mean and variance of the screenshot's luminance.
fn luminance_stats(png_path: &Path) -> (f64, f64, usize) {
    let file = std::io::BufReader::new(std::fs::File::open(png_path).expect("a screenshot"));
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a PNG size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    let px: Vec<f64> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| if channels >= 3 { 0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64 } else { c[0] as f64 })
        .collect();
    let mean = px.iter().sum::<f64>() / px.len() as f64;
    let var = px.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / px.len() as f64;
    (mean, var, px.len())
}

/// `retort report` after the reduced quickstart ran with `sets` in `cache`.
pub fn check_quickstart_report(t: &TestPipeline, pipeline: &Path, cache: &Path, sets: &[&str], run: &Run) {
    let out = t.path("quickstart-report.html");
    let mut args = vec!["report".to_string(), pipeline.display().to_string(), "--cache-dir".into(), cache.display().to_string()];
    for s in sets {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    args.extend(["-o".to_string(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = t.retort(&args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let html = std::fs::read_to_string(&out).expect("the report");

    let trained: Vec<(String, usize)> = run.json()["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "train")
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["metrics"]["steps"].as_u64().unwrap() as usize))
        .collect();
    assert_eq!(trained.len(), 4, "base, sf_sft, sf_grpo and rl_only train");
    assert_curves(&html, &trained, "the report");
    let grpo: Vec<String> = curve_points(training_section(&html, "sf_grpo")).into_iter().map(|c| c.0).collect();
    for metric in ["reward_mean", "kl", "sample_secs", "update_secs"] {
        assert!(grpo.iter().any(|c| c == metric), "GRPO does not plot {metric}: {grpo:?}");
    }
    for (stage, _) in &trained {
        assert!(html.contains(&format!("data-stage=\"{stage}\"")));
    }
    for stage in ["pretrain_tasks", "samples", "eval"] {
        assert!(html.contains(&format!(">{stage}</a>")), "`{stage}` missing from the stage table");
    }
    assert!(html.contains("<figure class=\"eval-chart\">") && html.contains("3 numbers"), "no evaluation chart by number count");
    assert!(html.contains("<code>pretrain_tasks.out</code>: first 5 of 60 rows"), "no dataset head");
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"), "the report names a URL");

    let Some(chromium) = chromium() else {
        eprintln!("SKIP: the browser check of `retort report` needs chromium (scripts/setup-chromium.sh installs it)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();

    // The console check can fail: a page that logs an error is caught.
    let bad = t.path("console-error.html");
    std::fs::write(&bad, "<!DOCTYPE html><title>x</title><script>console.error('boom')</script>").unwrap();
    let b = browse(&chromium, profile.path(), &bad, &["--dump-dom"]);
    assert!(b.console.iter().any(|l| l.contains("boom")), "chromium's console log is not where this test looks: {:?}", b.console);

    let b = browse(&chromium, profile.path(), &out, &["--dump-dom"]);
    assert!(b.console.is_empty(), "the report logged to the console: {:#?}", b.console);
    assert!(b.stdout.contains("<h1>quickstart</h1>"), "the DOM dump: {}", &b.stdout[..b.stdout.len().min(500)]);
    assert_curves(&b.stdout, &trained, "chromium's DOM");

    let shot = t.path("report.png");
    let b = browse(&chromium, profile.path(), &out, &["--window-size=1280,1600", &format!("--screenshot={}", shot.display())]);
    assert!(b.console.is_empty(), "{:#?}", b.console);
    let (mean, var, pixels) = luminance_stats(&shot);
    assert_eq!(pixels, 1280 * 1600, "the screenshot's size");
    // A blank page is one colour (variance 0); the report's text, boxes and
    // curves on white give a spread of several hundred.
    assert!(var > 100.0 && mean > 128.0, "the screenshot looks blank: mean {mean:.1}, variance {var:.1}");
    if let Some(keep) = std::env::var_os("RETORT_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("copy the screenshot");
    }
}

/// Two `command` stages; the first writes a row of user text that would be
/// markup if it were not escaped.
fn rows_pipeline(t: &TestPipeline, k: u32) {
    t.write("mk.sh", "printf '%s\\n' '{\"prompt\": \"</script><b>bold</b>\", \"n\": 1}'\n");
    let mk = t.path("mk.sh");
    t.write(
        "p.yaml",
        &format!(
            "name: rep\nseed: 1\nstages:\n  rows:\n    kind: command\n    run: sh {} > $RETORT_OUT_OUT\n    outputs: [out]\n    params: {{k: {k}}}\n  \
             copy:\n    kind: command\n    run: cat $RETORT_IN_SRC > $RETORT_OUT_OUT\n    inputs: {{src: rows.out}}\n    outputs: [out]\n",
            mk.display()
        ),
    );
}

#[test]
fn the_report_escapes_rows_and_marks_what_changed_since_the_run() {
    let t = TestPipeline::new("stages: {}\n");
    rows_pipeline(&t, 1);
    t.run_ok(&[]);
    let r = t.retort(&["report", "p.yaml", "-o", "r.html"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = t.read("r.html");
    assert!(!html.contains("</script><b>"), "a dataset row became markup");
    assert!(html.contains("&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"), "the row is not shown");
    assert_eq!(html.matches("<span class=\"state cached\">cached</span>").count(), 2);
    assert_eq!(html.matches("<td class=\"mono\">same</td>").count(), 2, "the lock's fingerprints are today's");

    // A changed parameter: `rows` would run again, and `copy` after it; the
    // page shows their locked runs, marked stale, with the reason.
    rows_pipeline(&t, 2);
    let r = t.retort(&["report", "p.yaml", "-o", "r.html"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = t.read("r.html");
    assert_eq!(html.matches("<span class=\"state stale\">stale</span>").count(), 2, "{html}");
    assert!(html.contains("params.k"), "the reason names the parameter");
    assert!(html.contains("&lt;/script&gt;"), "the stale run's rows are still shown");
    assert_eq!(html.matches("<td class=\"mono\">same</td>").count(), 0);
}

#[test]
fn a_bad_pipeline_is_exit_2_and_writes_no_report() {
    let t = TestPipeline::new("stages:\n  a:\n    kind: nope\n");
    let r = t.retort(&["report", "p.yaml", "-o", "r.html"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("p.yaml") && r.stderr.contains("nope"), "{}", r.stderr);
    assert!(!t.path("r.html").exists());
    let r = t.retort(&["report", "missing.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}


/// A training stage's progress carries its latest loss (the bar's postfix),
/// in JSON events and plain lines; the report plots its three steps.
#[test]
fn training_progress_shows_the_loss_and_the_report_plots_each_step() {
    let t = TestPipeline::new(TINY_SFT);
    let r = t.retort(&["run", "p.yaml", "--log-format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let postfixes: Vec<String> = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "progress" && e["stage"] == "sft")
        .map(|e| e["postfix"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(postfixes.len(), 3, "{}", r.stderr);
    assert!(postfixes.iter().all(|p| p.starts_with("loss=") && p[5..].parse::<f64>().is_ok()), "{postfixes:?}");
    let plain = t.retort(&["run", "p.yaml", "--log-format", "plain", "--force", "sft"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(plain.stderr.lines().any(|l| l.starts_with("[sft] 3/3 steps") && l.contains(" loss=")), "{}", plain.stderr);

    let r = t.retort(&["report", "p.yaml", "-o", "r.html"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_curves(&t.read("r.html"), &[("sft".to_string(), 3)], "the report");
}
