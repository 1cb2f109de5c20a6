//! `device:`: provenance in the lock and `retort show`, and a device that
//! cannot be used (a binary without the feature, or wgpu without a Vulkan
//! driver) refused before anything runs.

use crate::util::{TestPipeline, TINY_SFT as TRAIN};


/// The lock and `show` say which backend produced a model; a stage that ran
/// no model records none; a cached re-run keeps what the first run recorded.
#[test]
fn the_lock_and_show_record_the_backend_that_produced_a_model() {
    let t = TestPipeline::new(TRAIN);
    t.run_ok(&[]);
    let lock: serde_yaml::Value = serde_yaml::from_str(&t.read("retort.lock")).unwrap();
    let stages = &lock["pipelines"]["p.yaml"]["stages"];
    assert_eq!(stages["sft"]["device"].as_str(), Some("cpu (burn flex)"), "{}", t.read("retort.lock"));
    assert!(stages["data"].get("device").is_none(), "a command stage ran no model:\n{}", t.read("retort.lock"));

    let json = t.retort(&["show", "p.yaml", "sft", "--metrics", "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["device"], "cpu (burn flex)", "{v}");
    let text = t.retort(&["show", "p.yaml", "sft", "--metrics"]);
    assert!(text.stdout.lines().next().unwrap().starts_with("device"), "{}", text.stdout);
    // Plain `show` keeps stdout for the artifact and says it on stderr.
    let listing = t.retort(&["show", "p.yaml", "sft"]);
    assert!(listing.stderr.contains("sft.model: produced on cpu (burn flex)"), "{}", listing.stderr);
    assert!(listing.stdout.contains("config.json"), "{}", listing.stdout);

    // A cached run writes the same lock.
    let before = t.read("retort.lock");
    let again = t.run_ok(&[]);
    assert_eq!(again.status_of("sft"), "cached");
    assert_eq!(t.read("retort.lock"), before);
}

/// `device: wgpu` (or `cuda`) in a binary built without that feature: exit 2
/// at the `device:` line, naming the feature, before any stage runs.
#[cfg(not(feature = "wgpu"))]
#[test]
fn a_device_this_binary_lacks_is_refused_before_anything_runs() {
    let t = TestPipeline::new(&TRAIN.replace("seed: 3\n", "seed: 3\ndevice: wgpu\n"));
    let r = t.retort(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("p.yaml:2") && r.stderr.contains("--features wgpu"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(!t.path("retort.lock").exists(), "nothing ran, so no lock");
    assert!(t.read("counts").is_empty());

    let s = t.retort(&["sample", "--model", "nowhere.gguf", "--device", "wgpu", "--prompt", "hi"]);
    assert_eq!(s.code, 2, "{}", s.stderr);
}

/// With the feature but no Vulkan driver (the loader pointed at no ICD, as
/// on a machine without `mesa-vulkan-drivers`): one message naming the
/// package to install, exit 2, no panic, nothing run.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_without_a_vulkan_driver_names_the_package_to_install() {
    let t = TestPipeline::new(&TRAIN.replace("seed: 3\n", "seed: 3\ndevice: wgpu\n"));
    let no_driver = |mut c: std::process::Command| {
        c.env("VK_ICD_FILENAMES", "/nonexistent/icd.json").env("VK_DRIVER_FILES", "/nonexistent/icd.json");
        crate::util::Run::from(c.output().unwrap())
    };
    let mut run = t.cmd();
    run.args(["run", "p.yaml"]);
    let r = no_driver(run);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("mesa-vulkan-drivers") && r.stderr.contains("p.yaml:2"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(!t.path("retort.lock").exists(), "nothing ran, so no lock");
}
