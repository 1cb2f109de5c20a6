//! Checking remote models and the device before a run that needs them.
//!
//! A server that is down, a model name it does not serve, or an API key
//! variable that is unset would otherwise fail the first stage that samples,
//! minutes into a run. The engine cannot talk HTTP (it never depends on a
//! model runtime), so the binary registers a [`ModelCheck`] and the engine
//! calls it, before any stage runs, for each `openai:` model that a stage
//! about to run reads. A failure is bad input: exit 2, nothing run.
//!
//! The same goes for `device: wgpu` on a machine with no Vulkan driver, or
//! a binary built without the feature: the binary registers a
//! [`DeviceCheck`], called once before a run that executes anything.

use std::collections::BTreeMap;

use crate::exec::{Decision, Plan};
use crate::graph::{Graph, Resolved};
use crate::spec::{Device, OpenAiModel, Pipeline};

/// Asks the server behind a remote model whether it can serve: `Err` is
/// one message saying what is wrong and how to fix it. It must never hold
/// the API key.
pub type ModelCheck = fn(&OpenAiModel) -> Result<(), String>;

/// Brings up the pipeline's device: `Err` is one message saying what to
/// install or rebuild.
pub type DeviceCheck = fn(Device) -> Result<(), String>;

/// The `openai:` models, by name, that stages the plan runs (or may run,
/// once their upstream has) read.
pub fn remote_models<'p>(p: &'p Pipeline, g: &Graph, plan: &Plan) -> BTreeMap<&'p str, &'p OpenAiModel> {
    let mut out = BTreeMap::new();
    for step in &plan.steps {
        if !matches!(step.decision, Decision::Run { .. } | Decision::Waits { .. }) {
            continue;
        }
        for input in &g.inputs[step.stage] {
            if let Resolved::Model(name) = &input.source {
                let (key, spec) = p.models.get_key_value(name).expect("resolved models exist");
                if let Some(remote) = &spec.openai {
                    out.insert(key.as_str(), remote);
                }
            }
        }
    }
    out
}
