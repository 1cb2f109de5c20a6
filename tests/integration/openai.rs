//! `openai:` models (issue 14): generate and evaluate against a real
//! llama-server, the item cache across a killed server, the checks before a
//! run, the API key kept out of everything, and retries under injected
//! faults. Tests that need the server skip (saying so) only when the
//! `xllamacpp` wheel cannot be installed; `.ci/run` installs it.

use std::time::{Duration, Instant};

use crate::llama::{self, Fault, Proxy, MODEL};
use crate::util::{files_under, TestPipeline};

/// Rows with a `prompt` (and a numeric `answer` for evaluate), written by a
/// `command` stage.
fn prompts(n: usize) -> String {
    let rows: Vec<String> = (0..n).map(|i| format!(r#"{{"id": "q{i}", "prompt": "Question {i}: what is {i} plus {i}? Answer:", "answer": {}}}"#, 2 * i)).collect();
    rows_stage(&rows)
}

/// A `command` stage `prompts` writing `rows`.
fn rows_stage(rows: &[String]) -> String {
    format!("  prompts:\n    kind: command\n    run: |\n      printf '%s\\n' '{}' > $RETORT_OUT_OUT\n    outputs: [out]\n", rows.join("' '"))
}

/// A pipeline with one `openai:` model called `remote` and `stages`.
fn pipeline(url: &str, model_extra: &str, stages: &str) -> String {
    format!(
        "name: remote\nseed: 7\nmodels:\n  remote:\n    openai:\n      base_url: {url}\n      model: {MODEL}\n      revision: \"1\"\n{model_extra}stages:\n{stages}"
    )
}

fn generate(samples: usize, tokens: usize) -> String {
    format!("  gen:\n    kind: generate\n    model: remote\n    prompts: prompts\n    samples: {samples}\n    sampling: {{max_tokens: {tokens}, temperature: 1.0}}\n")
}

#[test]
fn generate_and_evaluate_sample_a_real_server_and_split_n_at_its_slot_cap() {
    let Some(server) = llama::server(2, None) else { return };
    let proxy = Proxy::new(server.port);
    let eval = "  eval:\n    kind: evaluate\n    models: [remote]\n    tasks: [prompts]\n    verifier: numeric\n    sampling: {max_tokens: 6}\n";
    let stages = format!("{}{}{eval}", prompts(4), generate(3, 8));
    let t = TestPipeline::new(&pipeline(&proxy.base_url(), "      max_concurrency: 4\n", &stages));
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("gen"), "ran");
    assert_eq!(r.stage("gen")["outputs"]["out"]["rows"], 12);
    assert_eq!(r.status_of("eval"), "ran");
    assert!(r.stage("eval")["metrics"].as_object().unwrap().keys().any(|k| k.contains("acc")), "{}", r.stdout);
    // n = 3 is above the 2 slots: the 400 is learnt once, then each prompt
    // takes two requests (2 + 1); evaluate asks once per task.
    let gen_requests = proxy.passed() - 4;
    assert_eq!(gen_requests, 8, "requests for generate");
    let rows = t.retort(&["show", "p.yaml", "gen", "--head", "20"]).stdout;
    assert_eq!(rows.matches("\"response\":").count(), 12, "{rows}");

    // Where the server is and how fast to ask it are not its identity.
    let moved = pipeline(&server.base_url(), "      max_concurrency: 1\n      timeout: 30\n", &stages);
    t.write("p.yaml", &moved);
    let again = t.run_ok(&[]);
    assert_eq!(again.status_of("gen"), "cached");
    assert_eq!(again.status_of("eval"), "cached");
    // The revision is.
    t.write("p.yaml", &moved.replace("revision: \"1\"", "revision: \"2\""));
    let plan = t.retort(&["plan", "p.yaml", "--format", "json"]);
    assert!(plan.stdout.contains("would-run"), "{}", plan.stdout);
}

#[test]
fn https_reaches_a_real_server_behind_tls_and_refuses_a_certificate_it_cannot_trust() {
    let Some(server) = llama::server(1, None) else { return };
    let Some(tls) = llama::tls_terminator(server.port) else { return };
    let stages = format!("{}{}", prompts(2), generate(2, 6));
    // Over plain http first, for the rows https must give back.
    let plain = TestPipeline::new(&pipeline(&server.base_url(), "", &stages));
    plain.run_ok(&[]);
    let want = plain.retort(&["show", "p.yaml", "gen"]).stdout;
    let t = TestPipeline::new(&pipeline(&format!("https://localhost:{}/v1", tls.port), "", &stages));
    // Its certificate is signed by a private CA: without being told to
    // trust that CA, the handshake is refused, and the error says so.
    let r = t.retort(&["run", "p.yaml"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("TLS") && r.stderr.contains("certificate"), "{}", r.stderr);
    // With SSL_CERT_FILE naming the CA, the same samples come back (the seed
    // is sent to the server: an https base URL is the same model).
    let out = t.cmd().env("SSL_CERT_FILE", &tls.ca).args(["run", "p.yaml", "--format", "json", "-q"]).output().unwrap();
    let r = crate::util::Run::from(out);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.status_of("gen"), "ran");
    assert_eq!(t.retort(&["show", "p.yaml", "gen"]).stdout, want);
}

#[test]
fn teacher_synthesis_samples_a_remote_teacher() {
    let Some(server) = llama::server(2, None) else { return };
    let seeds = rows_stage(&[r#"{"instruction": "What is 23 + 45?"}"#.into(), r#"{"instruction": "What is 71 + 18?"}"#.into(), r#"{"instruction": "What is 12 + 60?"}"#.into()]);
    let synth = "  synth:\n    kind: synthesize\n    model: remote\n    seeds: prompts\n    prompts: 4\n    shots: 2\n    from_generated: 1\n    prompts_per_round: 2\n    samples: 2\n    dedupe: null\n    template: \"{% for e in examples %}<instruction>{{ e }}</instruction>\\n{% endfor %}<instruction>\"\n    sampling: {max_tokens: 24, temperature: 1.0, stop: [\"</instruction>\"]}\n";
    let t = TestPipeline::new(&pipeline(&server.base_url(), "", &format!("{seeds}{synth}")));
    let r = t.run_ok(&[]);
    let m = r.stage("synth")["metrics"].clone();
    assert_eq!(m["samples"], 8, "{m}");
    let kept = m["accepted"].as_u64().unwrap();
    let rows = t.retort(&["show", "p.yaml", "synth"]).stdout;
    assert_eq!(rows.lines().count() as u64, kept, "{rows}");
    assert!(rows.lines().all(|l| l.contains("\"seed_prompt\"") && l.contains("\"raw\"")), "{rows}");
    // Cached per item like any remote sample: a rerun asks the server nothing.
    assert_eq!(t.run_ok(&[]).status_of("synth"), "cached");
}

#[test]
fn seeds_make_remote_samples_reproducible() {
    let Some(server) = llama::server(2, None) else { return };
    // One request at a time: how a server batches concurrent requests may
    // change its floating point, and so its samples.
    let yaml = pipeline(&server.base_url(), "      max_concurrency: 1\n", &format!("{}{}", prompts(3), generate(2, 12)));
    let hash = |t: &TestPipeline| t.run_ok(&[]).stage("gen")["outputs"]["out"]["hash"].clone();
    let (a, b) = (TestPipeline::new(&yaml), TestPipeline::new(&yaml));
    assert_eq!(hash(&a), hash(&b), "two fresh caches, same seed: same samples at temperature 1");
    let c = TestPipeline::new(&yaml.replace("seed: 7", "seed: 8"));
    assert_ne!(hash(&a), hash(&c), "another seed samples differently");
}

#[test]
fn a_server_killed_mid_stage_resumes_with_finished_items_kept() {
    let Some(mut server) = llama::server(1, None) else { return };
    let proxy = Proxy::new(server.port);
    let n = 16;
    let yaml = pipeline(&proxy.base_url(), "      max_concurrency: 1\n      max_retries: 1\n", &format!("{}{}", prompts(n), generate(1, 24)));
    let t = TestPipeline::new(&yaml);
    let child = t.cmd().args(["run", "p.yaml", "--format", "json", "-q"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.passed() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let first: crate::util::Run = child.wait_with_output().unwrap().into();
    let done = proxy.passed();
    assert_eq!(first.code, 1, "{}\n{}", first.stdout, first.stderr);
    assert!(done >= 3 && done < n, "{done} of {n} before the kill");
    let err = first.stage("gen")["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains(&format!("127.0.0.1:{}/v1/completions", proxy.port)) && err.contains("502") && err.contains("retries"), "{err}");

    server.start();
    let second = t.run_ok(&[]);
    assert_eq!(second.status_of("gen"), "ran");
    assert_eq!(proxy.passed() - done, n - done, "only the unfinished items are asked for again");
}

#[test]
fn a_wrong_model_name_fails_before_anything_runs() {
    let Some(server) = llama::server(1, None) else { return };
    let yaml = pipeline(&server.base_url(), "", &format!("{}{}", prompts(1), generate(1, 4))).replace(&format!("model: {MODEL}"), "model: nope");
    let t = TestPipeline::new(&yaml);
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("does not serve model `nope`") && r.stderr.contains("`smollm2`") && r.stderr.contains("p.yaml:"), "{}", r.stderr);
    assert_eq!(r.stderr.matches("error").count(), 1, "one message: {}", r.stderr);
    assert!(!t.path(".retort/items").exists() && !t.path("retort.lock").exists());
}

#[test]
fn a_server_that_is_down_or_a_missing_key_fails_at_once() {
    let port = llama::free_port();
    let stages = format!("{}{}", prompts(1), generate(1, 4));
    let t = TestPipeline::new(&pipeline(&format!("http://127.0.0.1:{port}/v1"), "", &stages));
    let started = Instant::now();
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach") && r.stderr.contains("is the server running"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "no retries at the start");

    let t = TestPipeline::new(&pipeline(&format!("http://127.0.0.1:{port}/v1"), "      api_key_env: RETORT_TEST_NO_SUCH_KEY\n", &stages));
    let r = t.cmd().args(["run", "p.yaml"]).env_remove("RETORT_TEST_NO_SUCH_KEY").output().unwrap();
    let r: crate::util::Run = r.into();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`RETORT_TEST_NO_SUCH_KEY`") && r.stderr.contains("not set"), "{}", r.stderr);
}

#[test]
fn stages_that_need_weights_refuse_a_remote_model_naming_the_field() {
    let stages = format!("{}  sft:\n    kind: train\n    model: remote\n    data: prompts\n    objective: sft\n    steps: 1\n", prompts(1));
    crate::util::rejects(&pipeline("http://127.0.0.1:9/v1", "", &stages), &["p.yaml:", "`model` needs", "remote model", "local weights"]);
}

#[test]
fn the_api_key_appears_in_no_file_log_error_or_plan() {
    const KEY: &str = "sk-retort-test-4c1d9e";
    let Some(server) = llama::server(2, Some(KEY)) else { return };
    let stages = format!("{}{}", prompts(2), generate(2, 6));
    let yaml = pipeline(&server.base_url(), "      api_key_env: RETORT_TEST_KEY\n", &stages);
    let t = TestPipeline::new(&yaml);
    let mut seen = String::new();
    let mut run = |args: &[&str], key: &str| {
        let o = t.cmd().args(args).env("RETORT_TEST_KEY", key).output().unwrap();
        let r: crate::util::Run = o.into();
        seen += &r.stdout;
        seen += &r.stderr;
        r
    };
    assert_eq!(run(&["run", "p.yaml", "--log-format", "json"], KEY).code, 0);
    run(&["run", "p.yaml", "--force", "gen", "--format", "json"], KEY);
    run(&["plan", "p.yaml", "--format", "json"], KEY);
    run(&["plan", "p.yaml"], KEY);
    run(&["status", "p.yaml"], KEY);
    run(&["show", "p.yaml", "gen"], KEY);
    // A key the server refuses: the error names the variable, not the value.
    let wrong = format!("{KEY}-wrong");
    let r = run(&["run", "p.yaml", "--force", "gen"], &wrong);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`RETORT_TEST_KEY`") && r.stderr.contains("401"), "{}", r.stderr);
    assert!(!seen.contains(KEY), "the key leaked into output:\n{seen}");
    for entry in files_under(t.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "the key is in {}", entry.display());
    }
}

#[test]
fn rate_limits_errors_stalls_and_resets_are_retried() {
    let Some(server) = llama::server(2, None) else { return };
    let proxy = Proxy::new(server.port);
    proxy.push(&[Fault::TooMany(1), Fault::Internal, Fault::Stall(Duration::from_secs(3)), Fault::Reset]);
    let yaml = pipeline(&proxy.base_url(), "      max_concurrency: 1\n      timeout: 1\n      max_retries: 6\n", &format!("{}{}", prompts(2), generate(1, 4)));
    let t = TestPipeline::new(&yaml);
    let started = Instant::now();
    let r = t.run_ok(&[]);
    assert_eq!(r.stage("gen")["outputs"]["out"]["rows"], 2);
    assert_eq!(proxy.faults_left(), 0);
    assert_eq!(proxy.passed(), 2);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After and the timeout were waited for");
}

#[test]
fn a_server_that_keeps_failing_fails_the_stage_and_keeps_finished_items() {
    let Some(server) = llama::server(2, None) else { return };
    let proxy = Proxy::new(server.port);
    let yaml = pipeline(&proxy.base_url(), "      max_concurrency: 1\n      max_retries: 2\n", &format!("{}{}", prompts(3), generate(1, 4)));
    let t = TestPipeline::new(&yaml);
    let first = pipeline(&proxy.base_url(), "      max_concurrency: 1\n      max_retries: 2\n", &format!("{}{}", prompts(2), generate(1, 4)));
    t.write("p.yaml", &first);
    t.run_ok(&[]);
    t.write("p.yaml", &yaml);
    proxy.always(Some(Fault::Internal));
    let r = t.retort(&["run", "p.yaml", "--format", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let err = r.stage("gen")["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("/v1/completions") && err.contains("HTTP 500") && err.contains("injected failure") && err.contains("after 2 retries"), "{err}");
    proxy.always(None);
    let before = proxy.passed();
    t.run_ok(&[]);
    assert_eq!(proxy.passed() - before, 1, "the two earlier prompts came from the item cache");
}

/// The `generate` rows of stage `stage` (all of them).
fn rows_of(t: &TestPipeline, stage: &str) -> Vec<serde_json::Value> {
    let out = t.retort(&["show", "p.yaml", stage, "--head", "1000"]).stdout;
    out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Each row's `logprobs` is one entry per generated token, every log-prob
/// a finite number <= 0, `top` alternatives most likely first; greedy, the
/// sampled token is the most likely one. Returns the first token's log-prob.
fn check_logprobs(row: &serde_json::Value, top: usize) -> f64 {
    let lp = row["logprobs"].as_array().unwrap_or_else(|| panic!("no logprobs in {row}"));
    assert!(!lp.is_empty(), "{row}");
    for t in lp {
        let logprob = t["logprob"].as_f64().unwrap();
        assert!(logprob.is_finite() && logprob <= 1e-6, "{t}");
        let alts = t["top_logprobs"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert_eq!(alts.len(), top, "{t}");
        let values: Vec<f64> = alts.iter().map(|a| a["logprob"].as_f64().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "most likely first: {t}");
        if top > 0 {
            assert!((values[0] - logprob).abs() < 1e-4, "greedy picks the most likely token: {t}");
        }
    }
    lp[0]["logprob"].as_f64().unwrap()
}

#[test]
fn log_probs_come_from_both_endpoints_of_a_real_server_and_a_local_model() {
    let Some(server) = llama::server(2, None) else { return };
    let url = server.base_url();
    let yaml = format!(
        "name: lp\nseed: 7\nmodels:\n  remote:\n    openai: {{base_url: \"{url}\", model: {MODEL}, revision: \"1\"}}\n  chat:\n    openai: {{base_url: \"{url}\", model: {MODEL}, revision: \"1\", endpoint: chat}}\n  local:\n    path: {}\nstages:\n{}{}{}{}",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf").display(),
        // Prompts the model continues (it ends "Question 0..." at once).
        rows_stage(&[r#"{"prompt": "The capital of France is"}"#.into(), r#"{"prompt": "Monday, Tuesday, Wednesday,"}"#.into()]),
        "  text:\n    kind: generate\n    model: remote\n    prompts: prompts\n    logprobs: 2\n    sampling: {max_tokens: 5, temperature: 0}\n",
        "  turns:\n    kind: generate\n    model: chat\n    prompts: prompts\n    chat: true\n    logprobs: 3\n    sampling: {max_tokens: 5, temperature: 0}\n",
        "  own:\n    kind: generate\n    model: local\n    prompts: prompts\n    logprobs: 0\n    sampling: {max_tokens: 5, temperature: 0}\n",
    );
    let t = TestPipeline::new(&yaml);
    t.run_ok(&[]);
    let text = rows_of(&t, "text");
    assert_eq!(text.len(), 2);
    let remote_first: Vec<f64> = text.iter().map(|r| check_logprobs(r, 2)).collect();
    for r in &text {
        // llama-server's completions answer in the chat format; its tokens
        // spell the response.
        let spelt: String = r["logprobs"].as_array().unwrap().iter().map(|t| t["token"].as_str().unwrap()).collect();
        assert_eq!(spelt, r["response"].as_str().unwrap(), "{r}");
    }
    for r in rows_of(&t, "turns") {
        check_logprobs(&r, 3);
    }
    // The same GGUF scored here: same first token and, to quantization
    // kernels' rounding, the same log-prob.
    let own = rows_of(&t, "own");
    assert_eq!(own.len(), 2);
    for ((r, remote_row), remote) in own.iter().zip(&text).zip(&remote_first) {
        let local = check_logprobs(r, 0);
        eprintln!("first token {}: local {local:.4}, llama-server {remote:.4}", r["logprobs"][0]["token"]);
        assert_eq!(r["logprobs"][0]["token"], remote_row["logprobs"][0]["token"], "{r}\n{remote_row}");
        assert!((local - remote).abs() < 0.1, "local {local} vs llama-server {remote}");
    }
}

/// `rejects` (exit 2 from validate, plan and run, nothing written), and
/// the message points at the line holding `at` in the file.
fn rejects_at(yaml: &str, at: &str, expect: &[&str]) -> String {
    let line = yaml.lines().position(|l| l.contains(at)).unwrap_or_else(|| panic!("{at:?} not in the file")) + 1;
    let msg = crate::util::rejects(yaml, expect);
    assert!(msg.contains(&format!("p.yaml:{line}:")), "not at line {line} ({at}):\n{msg}");
    msg
}

#[test]
fn bad_remote_configurations_fail_at_load_time_naming_the_field_and_the_fix() {
    let url = "http://127.0.0.1:9/v1";
    // chat turns to a completions endpoint, in generate and in evaluate.
    let chat_gen = format!("{}  gen:\n    kind: generate\n    model: remote\n    prompts: prompts\n    chat: true\n", prompts(1));
    rejects_at(&pipeline(url, "", &chat_gen), "chat: true", &["`chat: true` sends chat turns", "completions endpoint", "set `endpoint: chat` under `models.remote.openai`"]);
    let chat_eval = format!("{}  eval:\n    kind: evaluate\n    models: [remote]\n    tasks: [prompts]\n    verifier: numeric\n    chat: true\n", prompts(1));
    rejects_at(&pipeline(url, "", &chat_eval), "chat: true", &["stage `eval`", "`chat: true` sends chat turns"]);
    // The same with `endpoint: chat` is accepted (up to the server check).
    let ok = TestPipeline::new(&pipeline(url, "      endpoint: chat\n", &chat_gen));
    assert_eq!(ok.retort(&["validate", "p.yaml"]).code, 0);
    // A cascade continues its own rationale: plain text only.
    let cascade = format!("{}  eval:\n    kind: evaluate\n    models: [remote]\n    tasks: [prompts]\n    verifier: numeric\n    cascade: {{}}\n", prompts(1));
    rejects_at(&pipeline(url, "      endpoint: chat\n", &cascade), "cascade: {}", &["`cascade` continues plain text", "`endpoint: completions`"]);
    // Fields retort sets itself.
    let gen = format!("{}{}", prompts(1), generate(1, 4));
    rejects_at(&pipeline(url, "      extra_body: {top_k: 5, stream: true}\n", &gen), "extra_body", &["`extra_body` may not set `stream`", "remove `stream`"]);
    rejects_at(&pipeline(url, "      extra_body:\n        n: 4\n", &gen), "n: 4", &["may not set `n`"]);
    // A key pasted where its variable's name goes is refused, and not echoed.
    let key = "sk-pasted 0123456789";
    let msg = rejects_at(&pipeline(url, &format!("      api_key_env: \"{key}\"\n"), &gen), "api_key_env", &["name of an environment variable", "never the key itself"]);
    assert!(!msg.contains("0123456789"), "{msg}");
    // Addresses that cannot work.
    rejects_at(&pipeline("http://gpu-1:80x/v1", "", &gen), "base_url", &["port must be a number"]);
    rejects_at(&pipeline("http://user:pw@gpu-1/v1", "", &gen), "base_url", &["credentials do not go in the URL"]);
    let two = pipeline(url, "", &gen).replace(&format!("base_url: {url}"), "base_urls: [\"http://a:1/v1\", \"http://b:1/v1?x=1\"]");
    rejects_at(&two, "base_urls", &["`http://b:1/v1?x=1`", "no query"]);
    // Log-probs: at most 20 alternatives; alternatives only from a server.
    let many = format!("{}  gen:\n    kind: generate\n    model: remote\n    prompts: prompts\n    logprobs: 25\n", prompts(1));
    rejects_at(&pipeline(url, "", &many), "logprobs: 25", &["at most 20"]);
    let local = format!(
        "name: x\nmodels: {{m: {{tiny: {{preset: tiny}}}}}}\nstages:\n{}  sft:\n    kind: train\n    model: m\n    data: prompts\n    objective: sft\n    steps: 1\n  gen:\n    kind: generate\n    model: sft\n    prompts: prompts\n    logprobs: 2\n",
        prompts(1)
    );
    rejects_at(&local, "logprobs: 2", &["only a remote (`openai:`) model returns", "`logprobs: 0`"]);
    let ok = TestPipeline::new(&local.replace("logprobs: 2", "logprobs: 0"));
    assert_eq!(ok.retort(&["validate", "p.yaml"]).code, 0, "a local model scores its own tokens");
}

#[test]
fn reflections_are_written_by_a_remote_model_and_feed_compose() {
    let Some(server) = llama::server(2, None) else { return };
    // SkillFactory's S3: a second generate over the first one's responses,
    // its samples collected into each row's `reflections`.
    let reflect = "  reflect:\n    kind: generate\n    model: remote\n    prompts: gen\n    template: \"{{ prompt }} {{ response }}\\nIs that right? Answer in <verdict></verdict>:\"\n    samples: 2\n    collect: true\n    field: reflections\n    logprobs: 0\n    sampling: {max_tokens: 6, temperature: 1.0}\n";
    let rest = "  graded:\n    kind: verify\n    input: reflect\n    verifier: numeric\n  traces:\n    kind: compose\n    input: graded\n    reflect: field\n";
    let stages = format!("{}{}{reflect}{rest}", prompts(2), generate(1, 6));
    let t = TestPipeline::new(&pipeline(&server.base_url(), "", &stages));
    let r = t.run_ok(&[]);
    assert_eq!(r.status_of("traces"), "ran", "{}", r.stdout);
    let rows = rows_of(&t, "reflect");
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let texts = row["reflections"].as_array().unwrap();
        assert_eq!(texts.len(), 2, "{row}");
        assert!(texts.iter().all(|x| x.is_string()), "{row}");
        assert_eq!(row["logprobs"].as_array().unwrap().len(), 2, "one list per reflection: {row}");
        assert!(row["response"].is_string(), "the first stage's fields are kept: {row}");
    }
}

#[test]
fn a_retort_killed_mid_stage_keeps_every_stored_item() {
    let Some(server) = llama::server(1, None) else { return };
    let proxy = Proxy::new(server.port);
    let n = 16;
    let yaml = pipeline(&proxy.base_url(), "      max_concurrency: 1\n", &format!("{}{}", prompts(n), generate(1, 24)));
    let t = TestPipeline::new(&yaml);
    let mut child = t.cmd().args(["run", "p.yaml", "-q"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.passed() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL, possibly mid-append
    child.wait().unwrap();
    let answered = proxy.passed();
    assert!((4..n).contains(&answered), "{answered} of {n} answered before the kill");
    let second = t.run_ok(&[]);
    assert_eq!(second.stage("gen")["outputs"]["out"]["rows"], n);
    // One request at a time: the last answer may not have been stored yet.
    let asked = proxy.passed() - answered;
    assert!(asked == n - answered || asked == n - answered + 1, "asked {asked} again after {answered} of {n}");
    let du = t.retort(&["cache", "du", "p.yaml"]).stdout;
    assert!(du.contains(&format!("{n} items")), "{du}");
}
