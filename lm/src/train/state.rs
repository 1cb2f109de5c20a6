//! The optimizer's half of a checkpoint: AdamW's moments and step count,
//! saved beside the weights so a later run (a resumed `train`, or
//! `influence`'s one step per example, METHODS §5 M4–M5) continues from
//! exactly where training stopped.
//!
//! burn keys optimizer state by each parameter's [`ParamId`], which is
//! random per process. Every [`Trainer`](crate::train::trainer) therefore
//! gives its model's parameters **canonical ids** (their position in the
//! module's visit order, see [`canonical_ids`]), so state saved by one
//! process lines up with the same architecture loaded by another. The
//! shapes in that order are saved too, and a state is refused for a model
//! whose shapes differ.
//!
//! On disk, in the checkpoint directory (Hugging Face's `Trainer` names):
//! - `optimizer.bpk`: burn's optimizer record (burnpack), the moments in f32;
//! - `trainer_state.json`: `{format, step, last_lr, shapes}`.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::model::Llama;
use crate::train::optim::adamw;
use crate::train::trainer::TrainConfig;

/// The optimizer record's file in a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// The step count and shapes' file in a checkpoint directory.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// Bump when the files' meaning changes.
const FORMAT: u32 = 1;
/// Canonical ids start here (burn's own ids are random 64-bit numbers, so
/// a collision with a live parameter is as unlikely as two random ids).
const ID_BASE: u64 = 0x7265_746f_7274_0000; // "retort\0\0"

/// AdamW's state after `step` optimizer steps, for the parameters of one
/// architecture in canonical order. Cloning is cheap (the moments are
/// shared tensor handles), which is what lets `influence` restore it once
/// per example without copying the moments.
#[derive(Clone)]
pub struct OptimState {
    /// Optimizer steps taken (AdamW's bias correction counts from here).
    pub step: usize,
    /// The learning rate of the last step taken (0 before any).
    pub last_lr: f64,
    /// Each parameter's shape, in canonical order.
    pub shapes: Vec<Vec<usize>>,
    pub(crate) optim: ModuleOptimizer,
}

impl std::fmt::Debug for OptimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimState").field("step", &self.step).field("last_lr", &self.last_lr).field("params", &self.shapes.len()).finish()
    }
}

#[derive(Serialize, Deserialize)]
struct TrainerState {
    format: u32,
    step: usize,
    last_lr: f64,
    shapes: Vec<Vec<usize>>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> LmError {
    LmError::OptimizerState { path: path.to_path_buf(), what: e.to_string() }
}

impl OptimState {
    /// Writes `optimizer.bpk` and `trainer_state.json` into `dir`. The
    /// same state gives the same bytes (it is a cached artifact).
    pub fn save_dir(&self, dir: &Path) -> Result<(), LmError> {
        let path = dir.join(OPTIMIZER_FILE);
        let bytes = canonical_bytes(&self.optim).map_err(|e| io(&path, format!("serializing the optimizer state: {e}")))?;
        std::fs::write(&path, &bytes[..]).map_err(|e| io(&path, e))?;
        let state = TrainerState { format: FORMAT, step: self.step, last_lr: self.last_lr, shapes: self.shapes.clone() };
        let path = dir.join(TRAINER_STATE_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&state).expect("plain data")).map_err(|e| io(&path, e))
    }

    /// Whether `dir` holds an optimizer state.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(OPTIMIZER_FILE).is_file() && dir.join(TRAINER_STATE_FILE).is_file()
    }

    /// Reads the state [`save_dir`](Self::save_dir) wrote. The AdamW
    /// settings (betas, ε, weight decay) are not part of it: they come from
    /// `cfg`, the run that continues, as with Hugging Face's
    /// `resume_from_checkpoint`.
    pub fn load_dir(dir: &Path, cfg: &TrainConfig) -> Result<Self, LmError> {
        let path = dir.join(TRAINER_STATE_FILE);
        let text = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let state: TrainerState = serde_json::from_slice(&text).map_err(|e| io(&path, e))?;
        if state.format != FORMAT {
            return Err(io(&path, format!("format {} (this build reads {FORMAT}); re-run the stage that wrote it", state.format)));
        }
        let path = dir.join(OPTIMIZER_FILE);
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let optim = adamw(cfg)
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| io(&path, format!("not an optimizer record: {e:?}")))?;
        Ok(OptimState { step: state.step, last_lr: state.last_lr, shapes: state.shapes, optim })
    }

    /// Checks that this state belongs to `model`'s architecture: the same
    /// parameters, in the same order, of the same shapes.
    ///
    /// # Errors
    /// [`LmError::Train`] naming the first difference.
    pub fn check_model(&self, model: &Llama) -> Result<(), LmError> {
        let shapes = param_shapes(model);
        let mismatch = if shapes.len() != self.shapes.len() {
            Some(format!("the optimizer state has {} parameters, the model {}", self.shapes.len(), shapes.len()))
        } else {
            shapes.iter().zip(&self.shapes).position(|(a, b)| a != b).map(|k| {
                format!("parameter {k} is {:?} in the model but {:?} in the optimizer state", shapes[k], self.shapes[k])
            })
        };
        match mismatch {
            Some(why) => Err(crate::train::trainer::bad(format!("the optimizer state does not belong to this model: {why}"))),
            None => Ok(()),
        }
    }
}

/// burn's record of `optim`, its tensors in name order: burn lists them in
/// the order of a `HashMap`, which differs from process to process.
pub(crate) fn canonical_bytes(optim: &ModuleOptimizer) -> Result<burn::tensor::Bytes, String> {
    let bytes = optim.into_bytes().map_err(|e| format!("{e:?}"))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| format!("{e:?}"))?;
    let (scalars, metadata) = (reader.scalars().clone(), reader.metadata().clone());
    let mut tensors = reader.into_tensors().map_err(|e| format!("{e:?}"))?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    writer.into_bytes().map_err(|e| format!("{e:?}"))
}

/// Every parameter's shape, in the module's visit order.
pub fn param_shapes(model: &Llama) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut v = Shapes(Vec::new());
    model.visit(&mut v);
    v.0
}

/// `model` with each parameter's id replaced by its position in the visit
/// order (from [`ID_BASE`]): the same ids in every process for the same
/// architecture. Tensors are moved, not copied.
pub fn canonical_ids(model: Llama) -> Llama {
    struct Renumber(u64);
    impl ModuleMapper for Renumber {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, value, mapper) = param.consume();
            let id = ParamId::from(ID_BASE + self.0);
            self.0 += 1;
            Param::from_mapped_value(id, value, mapper)
        }
    }
    model.map(&mut Renumber(0))
}
