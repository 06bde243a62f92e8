//! [`Schedule`]: the step counts of a run and its per-step learning rate.
//!
//! Mirrors insightface's schedulers (`recognition/arcface_torch/lr_scheduler.py`): for step `t`
//! (0-based, the step about to run), `lr = base·t/warmup` during warm-up, then
//! `base·(1 - (t - warmup)/(total - warmup))^power`; `power = 1` (the default) is train_v2's
//! `PolynomialLRWarmup`, `power = 2` the older `PolyScheduler`. Like insightface, step 0 runs at rate 0
//! (it still fills AdamW's moments). The cosine variant replaces the polynomial with
//! `base·(1 + cos(π·progress))/2`.

use crate::config::{ScheduleKind, TrainConfig};

/// Derived step counts and the learning-rate rule; computed from the configuration and the
/// data, never stored back into the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Optimizer steps per epoch (full batches).
    pub steps_per_epoch: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Peak rate.
    pub base_lr: f64,
    /// Decay after warm-up.
    pub kind: ScheduleKind,
    /// Exponent of the polynomial decay.
    pub power: f64,
}

impl Schedule {
    /// The schedule of `config` with `steps_per_epoch` batches per epoch.
    pub fn new(config: &TrainConfig, steps_per_epoch: u64) -> Self {
        let epochs = config.loss.curriculum.epochs as u64;
        let warmup = (config.optim.warmup_epochs * steps_per_epoch as f64).round() as u64;
        Self {
            steps_per_epoch,
            total_steps: epochs * steps_per_epoch,
            warmup_steps: warmup,
            base_lr: config.optim.lr,
            kind: config.optim.schedule,
            power: config.optim.power,
        }
    }

    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.kind {
            ScheduleKind::Poly => self.base_lr * (1.0 - progress).powf(self.power),
            ScheduleKind::Cosine => {
                self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// The epoch step `step` belongs to.
    pub fn epoch_of(&self, step: u64) -> u64 {
        step / self.steps_per_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule {
            steps_per_epoch: 10,
            total_steps: 100,
            warmup_steps: 10,
            base_lr: 0.1,
            kind,
            power: 2.0,
        }
    }

    /// train_v2's PolynomialLRWarmup at power 1, with figures worked by hand: warm-up to 0.1
    /// over 10 steps, then a straight line to 0 at step 100.
    #[test]
    fn power_one_is_train_v2s_linear_decay() {
        let s = Schedule {
            power: 1.0,
            ..schedule(ScheduleKind::Poly)
        };
        close(s.lr(3), 0.03);
        close(s.lr(10), 0.1);
        close(s.lr(40), 0.1 * 60.0 / 90.0);
        close(s.lr(55), 0.05);
        close(s.lr(91), 0.01);
        close(s.lr(100), 0.0);
    }

    #[test]
    fn base_toml_uses_train_v2s_schedule_and_accumulation() {
        let config = crate::TrainConfig::load(&crate::Experiment::Default, &[]).unwrap();
        assert_eq!(config.optim.power, 1.0);
        assert_eq!(config.optim.accumulate, crate::Accumulate::Sum);
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn power_two_matches_insightfaces_poly_scheduler() {
        let s = schedule(ScheduleKind::Poly);
        // Warm-up: 0.1 * t / 10.
        close(s.lr(0), 0.0);
        close(s.lr(1), 0.01);
        close(s.lr(5), 0.05);
        close(s.lr(9), 0.09);
        // Decay: 0.1 * (1 - (t - 10) / 90)^2.
        close(s.lr(10), 0.1);
        close(s.lr(55), 0.1 * 0.25);
        close(s.lr(91), 0.1 * (9.0f64 / 90.0).powi(2));
        close(s.lr(100), 0.0);
        close(s.lr(150), 0.0);
    }

    #[test]
    fn cosine_halves_at_mid_decay() {
        let s = schedule(ScheduleKind::Cosine);
        close(s.lr(5), 0.05);
        close(s.lr(10), 0.1);
        close(s.lr(55), 0.05);
        close(s.lr(100), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = Schedule {
            warmup_steps: 0,
            ..schedule(ScheduleKind::Poly)
        };
        close(s.lr(0), 0.1);
        close(s.lr(50), 0.1 * 0.25);
        assert_eq!(s.epoch_of(19), 1);
    }
}
