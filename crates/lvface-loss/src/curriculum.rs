//! [`Curriculum`]: which loss applies at a given epoch or step.
//!
//! A list of phases, each starting at an epoch and lasting until the next one starts. The
//! default is the paper's (§4): epochs `[0, 40)` combined margin with Partial FC sampling at rate
//! 0.3, epochs `[40, 100)` the stable stage with prototypes and no sampling. Three phases (the
//! later version's Progressive Cluster Optimization: sampling, then prototypes with sampling,
//! then prototypes on all classes) are written the same way. A phase without prototypes may use
//! CurricularFace or AdaFace instead of the combined margin.

use serde::{Deserialize, Serialize};

use crate::ada_face::AdaFaceConfig;
use crate::combined_margin::CombinedMarginConfig;
use crate::curricular_face::CurricularFaceConfig;
use crate::error::{LossError, Result};
use crate::negative_sampler::validate_rate;

/// One phase of a [`Curriculum`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// First epoch of the phase (0-based).
    pub start_epoch: usize,
    /// The loss on the class-centre logits.
    #[serde(default)]
    pub margin_loss: MarginLoss,
    /// The combined margin, when `margin_loss` is `combined` (and always with prototypes).
    #[serde(default)]
    pub margin: CombinedMarginConfig,
    /// CurricularFace's parameters, when `margin_loss` is `curricular_face`.
    #[serde(default)]
    pub curricular_face: CurricularFaceConfig,
    /// AdaFace's parameters, when `margin_loss` is `ada_face`.
    #[serde(default)]
    pub ada_face: AdaFaceConfig,
    /// Whether Partial FC negative sampling is on.
    #[serde(default)]
    pub sampling: bool,
    /// The sampling rate when `sampling` is on, in `(0, 1]`.
    #[serde(default = "one")]
    pub sample_rate: f64,
    /// Whether the stable-stage loss (expectation-weighted target and prototype logits) is used.
    #[serde(default)]
    pub prototypes: bool,
}

fn one() -> f64 {
    1.0
}

/// Which margin loss a [`Phase`] puts on its class-centre logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarginLoss {
    /// ArcFace / CosFace / SphereFace, [`CombinedMarginConfig`] (the phase's `margin`).
    #[default]
    Combined,
    /// CurricularFace, [`CurricularFaceConfig`] (the phase's `curricular_face`).
    CurricularFace,
    /// AdaFace, [`AdaFaceConfig`] (the phase's `ada_face`).
    AdaFace,
}

impl Default for Phase {
    /// A phase from epoch 0: ArcFace `m = 0.5`, all classes, no prototypes.
    fn default() -> Self {
        Self {
            start_epoch: 0,
            margin_loss: MarginLoss::Combined,
            margin: CombinedMarginConfig::arcface(0.5),
            curricular_face: CurricularFaceConfig::default(),
            ada_face: AdaFaceConfig::default(),
            sampling: false,
            sample_rate: 1.0,
            prototypes: false,
        }
    }
}

impl Phase {
    /// The scale `s` of the phase's margin loss.
    pub fn scale(&self) -> f64 {
        match self.margin_loss {
            MarginLoss::Combined => self.margin.s,
            MarginLoss::CurricularFace => self.curricular_face.s,
            MarginLoss::AdaFace => self.ada_face.s,
        }
    }

    /// The fraction of classes a step of this phase uses: `sample_rate` if sampling is on, else 1.
    pub fn effective_sample_rate(&self) -> f64 {
        if self.sampling {
            self.sample_rate
        } else {
            1.0
        }
    }
}

/// Configuration of a [`Curriculum`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurriculumConfig {
    /// Total number of epochs of the run.
    pub epochs: usize,
    /// The phases, by increasing `start_epoch`; the first starts at 0.
    pub phases: Vec<Phase>,
}

impl Default for CurriculumConfig {
    fn default() -> Self {
        Self::lvface()
    }
}

impl CurriculumConfig {
    /// The paper's schedule: 40 early epochs (ArcFace `m = 0.5`, `s = 64`, sampling 0.3), then 60
    /// stable epochs (prototypes, no sampling).
    pub fn lvface() -> Self {
        let margin = CombinedMarginConfig::arcface(0.5);
        Self {
            epochs: 100,
            phases: vec![
                Phase {
                    start_epoch: 0,
                    margin,
                    sampling: true,
                    sample_rate: 0.3,
                    prototypes: false,
                    ..Phase::default()
                },
                Phase {
                    start_epoch: 40,
                    margin,
                    sampling: false,
                    sample_rate: 1.0,
                    prototypes: true,
                    ..Phase::default()
                },
            ],
        }
    }

    /// Checks every field once; the error names the key (under `curriculum`) and the value.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(LossError::invalid(
                "curriculum.epochs",
                "must be positive",
                0,
            ));
        }
        let Some(first) = self.phases.first() else {
            return Err(LossError::invalid(
                "curriculum.phases",
                "must not be empty",
                "[]",
            ));
        };
        if first.start_epoch != 0 {
            return Err(LossError::invalid(
                "curriculum.phases[0].start_epoch",
                "must be 0",
                first.start_epoch,
            ));
        }
        for (i, phase) in self.phases.iter().enumerate() {
            let key = |name: &str| format!("curriculum.phases[{i}].{name}");
            if i > 0 && phase.start_epoch <= self.phases[i - 1].start_epoch {
                return Err(LossError::invalid(
                    key("start_epoch"),
                    format!(
                        "must be greater than phases[{}].start_epoch = {}",
                        i - 1,
                        self.phases[i - 1].start_epoch
                    ),
                    phase.start_epoch,
                ));
            }
            if phase.start_epoch >= self.epochs {
                return Err(LossError::invalid(
                    key("start_epoch"),
                    format!("must be below epochs = {}", self.epochs),
                    phase.start_epoch,
                ));
            }
            match phase.margin_loss {
                MarginLoss::Combined => phase.margin.validate_at(&key("margin"))?,
                MarginLoss::CurricularFace => phase
                    .curricular_face
                    .validate()
                    .map_err(|e| e.under(&format!("curriculum.phases[{i}]")))?,
                MarginLoss::AdaFace => phase
                    .ada_face
                    .validate()
                    .map_err(|e| e.under(&format!("curriculum.phases[{i}]")))?,
            }
            if phase.prototypes && phase.margin_loss != MarginLoss::Combined {
                return Err(LossError::invalid(
                    key("margin_loss"),
                    "must be \"combined\" in a phase with prototypes (the stable stage's \
                     Eq. 19 weights the combined margin's target)",
                    format!("{:?}", phase.margin_loss),
                ));
            }
            if phase.sampling {
                validate_rate(&key("sample_rate"), phase.sample_rate)?;
            }
        }
        Ok(())
    }

    /// The schedule, after [`validate`](Self::validate).
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self) -> Curriculum {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        Curriculum {
            config: self.clone(),
        }
    }
}

/// A validated schedule of phases; every answer is a pure function of the epoch or step.
#[derive(Debug, Clone, PartialEq)]
pub struct Curriculum {
    config: CurriculumConfig,
}

impl Curriculum {
    /// The configuration of this schedule.
    pub fn config(&self) -> &CurriculumConfig {
        &self.config
    }

    /// Index of the phase that contains `epoch` (0-based). Epochs past the end stay in the last
    /// phase.
    pub fn phase_index(&self, epoch: usize) -> usize {
        self.config
            .phases
            .iter()
            .rposition(|p| p.start_epoch <= epoch)
            .expect("phase 0 starts at 0")
    }

    /// The phase that contains `epoch`.
    pub fn phase_at_epoch(&self, epoch: usize) -> &Phase {
        &self.config.phases[self.phase_index(epoch)]
    }

    /// The phase of global step `step` (0-based) when an epoch has `steps_per_epoch` steps.
    ///
    /// # Panics
    /// If `steps_per_epoch` is 0.
    pub fn phase_at_step(&self, step: u64, steps_per_epoch: u64) -> &Phase {
        assert!(steps_per_epoch > 0, "steps_per_epoch must be positive");
        self.phase_at_epoch((step / steps_per_epoch) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_paper_schedule() {
        let curriculum = CurriculumConfig::default().init();
        for epoch in [0, 1, 39] {
            let phase = curriculum.phase_at_epoch(epoch);
            assert!(phase.sampling && !phase.prototypes, "epoch {epoch}");
            assert_eq!(phase.effective_sample_rate(), 0.3);
        }
        for epoch in [40, 41, 99, 150] {
            let phase = curriculum.phase_at_epoch(epoch);
            assert!(!phase.sampling && phase.prototypes, "epoch {epoch}");
            assert_eq!(phase.effective_sample_rate(), 1.0);
        }
        assert_eq!(
            curriculum.phase_at_epoch(39).margin,
            CombinedMarginConfig::arcface(0.5)
        );
    }

    #[test]
    fn steps_map_to_epochs() {
        let curriculum = CurriculumConfig::default().init();
        // 1000 steps per epoch: step 39,999 is the last of epoch 39, step 40,000 the first of 40.
        let phases = &curriculum.config().phases;
        assert_eq!(curriculum.phase_at_step(39_999, 1000), &phases[0]);
        assert_eq!(curriculum.phase_at_step(40_000, 1000), &phases[1]);
    }

    #[test]
    fn three_phases_are_expressible() {
        let margin = CombinedMarginConfig::cosface(0.4);
        let config = CurriculumConfig {
            epochs: 30,
            phases: vec![
                Phase {
                    start_epoch: 0,
                    margin,
                    sampling: true,
                    sample_rate: 0.2,
                    prototypes: false,
                    ..Phase::default()
                },
                Phase {
                    start_epoch: 10,
                    margin,
                    sampling: true,
                    sample_rate: 0.2,
                    prototypes: true,
                    ..Phase::default()
                },
                Phase {
                    start_epoch: 20,
                    margin,
                    sampling: false,
                    sample_rate: 1.0,
                    prototypes: true,
                    ..Phase::default()
                },
            ],
        };
        let curriculum = config.init();
        let expected = [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (29, 2)];
        for (epoch, index) in expected {
            assert_eq!(curriculum.phase_index(epoch), index, "epoch {epoch}");
        }
    }

    #[test]
    fn validation_names_key_and_value() {
        let base = CurriculumConfig::lvface();
        let mut cases = Vec::new();
        let mut c = base.clone();
        c.phases[1].start_epoch = 0;
        cases.push((c, "curriculum.phases[1].start_epoch", "0"));
        let mut c = base.clone();
        c.phases[0].start_epoch = 3;
        cases.push((c, "curriculum.phases[0].start_epoch", "3"));
        let mut c = base.clone();
        c.phases[1].start_epoch = 120;
        cases.push((c, "curriculum.phases[1].start_epoch", "120"));
        let mut c = base.clone();
        c.phases[0].sample_rate = 1.3;
        cases.push((c, "curriculum.phases[0].sample_rate", "1.3"));
        let mut c = base.clone();
        c.phases[1].margin.m2 = 2.0;
        cases.push((c, "curriculum.phases[1].margin.m2", "2"));
        cases.push((
            CurriculumConfig {
                phases: vec![],
                ..base.clone()
            },
            "curriculum.phases",
            "[]",
        ));
        cases.push((
            CurriculumConfig { epochs: 0, ..base },
            "curriculum.epochs",
            "0",
        ));
        for (config, key, value) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(
                message.starts_with(key) && message.contains(value),
                "{message}"
            );
        }
    }
}
