//! Learning-rate schedules for the `train` stage's `schedule:` parameter.
//!
//! In a pipeline (serde, externally tagged, snake_case):
//! ```yaml
//! schedule: constant
//! schedule: {warmup_cosine: {warmup_steps: 10, total_steps: 500, min_lr_ratio: 0.1}}
//! schedule: {wsd: {warmup_ratio: 0.1, stable_ratio: 0.5, min_lr_ratio: 0.001}}
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
    /// Warmup-stable-decay (Hugging Face's `warmup_stable_decay`, cosine
    /// decay; Montessori-Instruct's teacher and student, METHODS §5): a
    /// linear warmup over `round(warmup_ratio · total)` steps (`(step+1) /
    /// warmup`, as [`WarmupCosine`](Self::WarmupCosine)), the full rate for
    /// `round(stable_ratio · total)` steps, then over the remaining `decay`
    /// steps `lr = base · (m + (1 − m) · ½ (1 + cos(π · progress)))` with
    /// `progress = (step − warmup − stable) / decay`; `m · base` after.
    Wsd {
        /// Share of the run spent warming up (default 0.1).
        #[serde(default = "wsd_warmup")]
        warmup_ratio: f64,
        /// Share of the run at the full rate (default 0.5); the rest decays.
        #[serde(default = "wsd_stable")]
        stable_ratio: f64,
        /// Steps of the whole run; 0 (the default) means "the run's length".
        #[serde(default)]
        total_steps: usize,
        /// Final learning rate as a share of the base one (default 0.001).
        #[serde(default = "wsd_min")]
        min_lr_ratio: f64,
    },
}

fn wsd_warmup() -> f64 {
    0.1
}
fn wsd_stable() -> f64 {
    0.5
}
fn wsd_min() -> f64 {
    1e-3
}

impl LrSchedule {
    /// Checks the ratios: each in `[0, 1]`, and WSD's warmup and stable
    /// shares at most 1 together. `Err` says which and what to change.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("`{name}` is {v}: set it between 0 and 1"))
            }
        };
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::WarmupCosine { min_lr_ratio, .. } => unit("min_lr_ratio", min_lr_ratio),
            LrSchedule::Wsd { warmup_ratio, stable_ratio, min_lr_ratio, .. } => {
                unit("warmup_ratio", warmup_ratio)?;
                unit("stable_ratio", stable_ratio)?;
                unit("min_lr_ratio", min_lr_ratio)?;
                if warmup_ratio + stable_ratio > 1.0 + 1e-9 {
                    return Err(format!(
                        "`warmup_ratio` + `stable_ratio` is {}: they share the run with the decay, so keep their sum at most 1",
                        warmup_ratio + stable_ratio
                    ));
                }
                Ok(())
            }
        }
    }

    /// WSD's phase lengths `(warmup, stable, decay)` over `total` steps.
    fn wsd_phases(warmup_ratio: f64, stable_ratio: f64, total: usize) -> (usize, usize, usize) {
        let warmup = ((warmup_ratio * total as f64).round() as usize).min(total);
        let stable = ((stable_ratio * total as f64).round() as usize).min(total - warmup);
        (warmup, stable, total - warmup - stable)
    }

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
            LrSchedule::Wsd {
                warmup_ratio,
                stable_ratio,
                total_steps,
                min_lr_ratio,
            } => {
                let (warmup, stable, decay) = Self::wsd_phases(warmup_ratio, stable_ratio, total_steps);
                if step < warmup {
                    return base_lr * (step + 1) as f64 / warmup as f64;
                }
                if step < warmup + stable {
                    return base_lr;
                }
                if step >= warmup + stable + decay {
                    return base_lr * min_lr_ratio;
                }
                let progress = (step - warmup - stable) as f64 / decay as f64;
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
            LrSchedule::Wsd { warmup_ratio, stable_ratio, total_steps: 0, min_lr_ratio } => {
                LrSchedule::Wsd { warmup_ratio, stable_ratio, total_steps: run_steps, min_lr_ratio }
            }
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
    fn wsd_phase_edges() {
        // 20 steps: warmup 2 (10%), stable 10 (50%), decay 8 (40%).
        let s = LrSchedule::Wsd { warmup_ratio: 0.1, stable_ratio: 0.5, total_steps: 20, min_lr_ratio: 1e-3 };
        let base = 1e-6;
        close(s.lr_at(0, base), 0.5e-6); // (0+1)/2
        close(s.lr_at(1, base), 1e-6); // warmup ends at the full rate
        close(s.lr_at(2, base), 1e-6); // stable begins
        close(s.lr_at(11, base), 1e-6); // stable's last step
        close(s.lr_at(12, base), 1e-6); // decay progress 0: still the full rate
        close(s.lr_at(16, base), base * (1e-3 + (1.0 - 1e-3) * 0.5)); // progress ½
        assert!(s.lr_at(19, base) < s.lr_at(18, base)); // decaying to the end
        close(s.lr_at(20, base), 1e-9); // the minimum
        close(s.lr_at(99, base), 1e-9);
        // No warmup, no stable phase: pure cosine decay from the first step.
        let d = LrSchedule::Wsd { warmup_ratio: 0.0, stable_ratio: 0.0, total_steps: 4, min_lr_ratio: 0.0 };
        close(d.lr_at(0, 1.0), 1.0);
        close(d.lr_at(2, 1.0), 0.5);
        close(d.lr_at(4, 1.0), 0.0);
        // Defaults and the run-length fill-in.
        let w: LrSchedule = serde_json::from_str(r#"{"wsd": {}}"#).unwrap();
        assert_eq!(w, LrSchedule::Wsd { warmup_ratio: 0.1, stable_ratio: 0.5, total_steps: 0, min_lr_ratio: 1e-3 });
        assert_eq!(w.with_run_steps(20), s);
        // Ratios that do not fit are refused with the reason.
        let bad = LrSchedule::Wsd { warmup_ratio: 0.6, stable_ratio: 0.5, total_steps: 0, min_lr_ratio: 0.0 };
        assert!(bad.validate().unwrap_err().contains("at most 1"));
        assert!(s.validate().is_ok());
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
