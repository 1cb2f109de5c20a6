//! Learning-rate schedules for the `train` stage's `schedule:` parameter.
//!
//! In a pipeline (serde, externally tagged, snake_case):
//! ```yaml
//! schedule: constant
//! schedule: {warmup_cosine: {warmup_steps: 10, total_steps: 500, min_lr_ratio: 0.1}}
//! ```

use serde::{Deserialize, Serialize};

/// A learning-rate schedule: the multiplier of the base learning rate at
/// each optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// `base_lr` at every step.
    #[default]
    Constant,
    /// Linear warmup then cosine decay to `min_lr_ratio · base_lr`.
    ///
    /// Steps are 0-based optimizer steps. Warmup: `lr = base · (step+1) /
    /// warmup_steps` for `step < warmup_steps`, so the first update already
    /// moves (Hugging Face's `get_cosine_schedule_with_warmup` uses
    /// `step / warmup_steps` and wastes step 0). Then with
    /// `progress = (step − warmup) / (total − warmup)` clamped to `[0, 1]`:
    /// `lr = base · (m + (1 − m) · ½ (1 + cos(π · progress)))`, `m = min_lr_ratio`;
    /// `lr_at(total_steps)` and beyond is `m · base`.
    WarmupCosine {
        /// Linear-warmup steps (default 0).
        #[serde(default)]
        warmup_steps: usize,
        /// Steps of the whole run; 0 (the default) means "the run's length",
        /// filled in by the trainer with [`LrSchedule::with_run_steps`].
        #[serde(default)]
        total_steps: usize,
        /// Final learning rate as a share of the base one (default 0).
        #[serde(default)]
        min_lr_ratio: f64,
    },
}

impl LrSchedule {
    /// The learning rate at 0-based optimizer step `step`.
    pub fn lr_at(&self, step: usize, base_lr: f64) -> f64 {
        match *self {
            LrSchedule::Constant => base_lr,
            LrSchedule::WarmupCosine {
                warmup_steps,
                total_steps,
                min_lr_ratio,
            } => {
                if step < warmup_steps {
                    return base_lr * (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1);
                let progress = ((step - warmup_steps) as f64 / span as f64).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                base_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
            }
        }
    }

    /// This schedule with `total_steps: 0` ("the run's length") replaced by
    /// `run_steps`; any other schedule unchanged.
    pub fn with_run_steps(self, run_steps: usize) -> Self {
        match self {
            LrSchedule::WarmupCosine {
                warmup_steps,
                total_steps: 0,
                min_lr_ratio,
            } => LrSchedule::WarmupCosine {
                warmup_steps,
                total_steps: run_steps,
                min_lr_ratio,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    #[test]
    fn constant() {
        assert_eq!(LrSchedule::Constant.lr_at(0, 3e-4), 3e-4);
        assert_eq!(LrSchedule::Constant.lr_at(1_000_000, 3e-4), 3e-4);
    }

    #[test]
    fn warmup_cosine_endpoints() {
        let s = LrSchedule::WarmupCosine {
            warmup_steps: 10,
            total_steps: 110,
            min_lr_ratio: 0.1,
        };
        let base = 1e-3;
        close(s.lr_at(0, base), 1e-4); // (0+1)/10 · base
        close(s.lr_at(4, base), 5e-4); // (4+1)/10
        close(s.lr_at(9, base), 1e-3); // warmup ends at the full rate
        close(s.lr_at(10, base), 1e-3); // cosine progress 0
        close(s.lr_at(60, base), 0.55e-3); // progress ½: 0.1 + 0.9·½
        close(s.lr_at(110, base), 1e-4); // progress 1: min
        close(s.lr_at(500, base), 1e-4); // past the end: stays at min
                                         // decreasing after warmup
        assert!((10..110).all(|i| s.lr_at(i + 1, base) <= s.lr_at(i, base)));
    }

    #[test]
    fn no_warmup_and_degenerate_totals() {
        let s = LrSchedule::WarmupCosine {
            warmup_steps: 0,
            total_steps: 4,
            min_lr_ratio: 0.0,
        };
        close(s.lr_at(0, 1.0), 1.0);
        close(s.lr_at(2, 1.0), 0.5);
        close(s.lr_at(4, 1.0), 0.0);
        // total ≤ warmup: no division by zero, min after warmup
        let t = LrSchedule::WarmupCosine {
            warmup_steps: 5,
            total_steps: 5,
            min_lr_ratio: 0.2,
        };
        close(t.lr_at(4, 1.0), 1.0);
        close(t.lr_at(6, 1.0), 0.2);
    }

    #[test]
    fn serde_forms() {
        let c: LrSchedule = serde_json::from_str(r#""constant""#).unwrap();
        assert_eq!(c, LrSchedule::Constant);
        let w: LrSchedule =
            serde_json::from_str(r#"{"warmup_cosine": {"warmup_steps": 3, "min_lr_ratio": 0.1}}"#)
                .unwrap();
        assert_eq!(
            w,
            LrSchedule::WarmupCosine {
                warmup_steps: 3,
                total_steps: 0,
                min_lr_ratio: 0.1
            }
        );
        assert_eq!(
            w.with_run_steps(50),
            LrSchedule::WarmupCosine {
                warmup_steps: 3,
                total_steps: 50,
                min_lr_ratio: 0.1
            }
        );
        assert_eq!(
            LrSchedule::Constant.with_run_steps(50),
            LrSchedule::Constant
        );
        let back = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<LrSchedule>(&back).unwrap(), w);
        assert!(serde_json::from_str::<LrSchedule>(r#"{"warmup_cosine": {"warmup": 3}}"#).is_err());
        assert!(serde_json::from_str::<LrSchedule>(r#""cosine""#).is_err());
    }
}
