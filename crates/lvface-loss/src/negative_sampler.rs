//! [`NegativeSampler`]: Partial FC's random negative-class sampling, after insightface's
//! `PartialFC_V2.sample` (`recognition/arcface_torch/partial_fc_v2.py`, arXiv 2203.15565).
//!
//! Every class present in the batch (a positive) is kept; the budget `int(rate·C)` is filled with
//! negatives drawn uniformly without replacement; the kept classes are sorted and the labels
//! remapped to positions in that list (insightface's `searchsorted`). When the positives alone
//! exceed the budget, all of them are kept and nothing else.
//!
//! **Unsampled rows and the optimizer.** Only the sampled rows of the centre matrix take part in
//! the step. A dense optimizer still moves the other rows: with zero gradient, AdamW's and
//! momentum SGD's running averages and decoupled weight decay change them (insightface lets this
//! happen). Here unsampled rows are frozen: the training loop keeps the centre matrix before the
//! step and calls [`SampledClasses::keep_unsampled_rows`] after it, which puts the unsampled rows
//! back. Their optimizer moments still decay as with any zero gradient, so a row that returns to
//! the sample resumes with smaller moments; its weights are exactly those it last learned.
//!
//! **NOTE:** insightface draws with `torch.rand` + `topk` on the device; here the draw is a
//! seeded SplitMix64 on the host, a pure function of `(seed, step)`, so a resumed run draws the
//! same classes as an uninterrupted one.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{LossError, Result};
use crate::rng::SplitMix64;

/// Configuration of a [`NegativeSampler`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NegativeSamplerConfig {
    /// Fraction of the classes kept per step, in `(0, 1]`; 1 keeps every class (no sampling).
    pub sample_rate: f64,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for NegativeSamplerConfig {
    fn default() -> Self {
        Self {
            sample_rate: 0.3,
            seed: 2048,
        }
    }
}

impl NegativeSamplerConfig {
    /// Checks every field once; the error names the key (under `sampler`) and the value.
    pub fn validate(&self) -> Result<()> {
        validate_rate("sampler.sample_rate", self.sample_rate)
    }

    /// The sampler, after [`validate`](Self::validate).
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self) -> NegativeSampler {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        NegativeSampler { config: *self }
    }
}

pub(crate) fn validate_rate(key: &str, rate: f64) -> Result<()> {
    if rate > 0.0 && rate <= 1.0 {
        Ok(())
    } else {
        Err(LossError::invalid(key, "must be in (0, 1]", rate))
    }
}

/// Draws the classes of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NegativeSampler {
    config: NegativeSamplerConfig,
}

/// The classes kept for one step and the batch's labels in their numbering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledClasses {
    /// Kept classes, sorted ascending, no duplicates.
    pub index: Vec<i64>,
    /// Each label's position in `index`; `-1` stays `-1`.
    pub labels: Vec<i64>,
    /// The number of classes sampled from.
    pub num_classes: usize,
}

impl NegativeSampler {
    /// The configuration this sampler was built from.
    pub fn config(&self) -> &NegativeSamplerConfig {
        &self.config
    }

    /// `int(sample_rate · num_classes)`, the number of classes a step keeps unless the positives
    /// are more.
    pub fn budget(&self, num_classes: usize) -> usize {
        (self.config.sample_rate * num_classes as f64) as usize
    }

    /// The classes of step `step` for a batch with `labels` (in `-1..num_classes`; `-1` marks a
    /// sample whose class is not in this shard).
    ///
    /// # Panics
    /// If a label is below -1 or not below `num_classes`.
    pub fn sample(&self, labels: &[i64], num_classes: usize, step: u64) -> SampledClasses {
        let mut positive = vec![false; num_classes];
        for &y in labels {
            assert!(
                (-1..num_classes as i64).contains(&y),
                "label {y} is outside -1..{num_classes}"
            );
            if y >= 0 {
                positive[y as usize] = true;
            }
        }
        let positives = positive.iter().filter(|&&p| p).count();
        let budget = self.budget(num_classes);
        let index: Vec<i64> = if self.config.sample_rate >= 1.0 {
            (0..num_classes as i64).collect()
        } else if budget <= positives {
            (0..num_classes as i64)
                .filter(|&c| positive[c as usize])
                .collect()
        } else {
            let mut negatives: Vec<i64> = (0..num_classes as i64)
                .filter(|&c| !positive[c as usize])
                .collect();
            let wanted = budget - positives;
            // A partial Fisher-Yates shuffle: the first `wanted` entries are a uniform sample
            // without replacement.
            let mut rng = SplitMix64::new(mix(self.config.seed, step));
            for i in 0..wanted {
                let j = i + rng.below(negatives.len() - i);
                negatives.swap(i, j);
            }
            let mut index: Vec<i64> = negatives[..wanted].to_vec();
            index.extend((0..num_classes as i64).filter(|&c| positive[c as usize]));
            index.sort_unstable();
            index
        };
        let labels = labels
            .iter()
            .map(|&y| {
                if y < 0 {
                    -1
                } else {
                    index.binary_search(&y).expect("positives are kept") as i64
                }
            })
            .collect();
        SampledClasses {
            index,
            labels,
            num_classes,
        }
    }
}

/// One stream per `(seed, step)`: the step goes through a SplitMix64 round before it is mixed in,
/// so neighbouring steps give unrelated streams.
fn mix(seed: u64, step: u64) -> u64 {
    seed ^ SplitMix64::new(step).next_u64()
}

impl SampledClasses {
    /// The kept class ids as a tensor.
    ///
    /// # Shapes
    /// - output: `[sampled]`
    pub fn index_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        Tensor::from_data(
            TensorData::new(self.index.clone(), [self.index.len()]),
            device,
        )
    }

    /// The remapped labels as a tensor.
    ///
    /// # Shapes
    /// - output: `[batch]`
    pub fn label_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        Tensor::from_data(
            TensorData::new(self.labels.clone(), [self.labels.len()]),
            device,
        )
    }

    /// The kept rows of the centre matrix. Under autodiff the gradient of the result scatters
    /// back into `centres`, zero on the rows not kept.
    ///
    /// # Shapes
    /// - centres: `[classes, dim]`
    /// - output: `[sampled, dim]`
    pub fn select_centres<B: Backend>(&self, centres: Tensor<B, 2>) -> Tensor<B, 2> {
        let index = self.index_tensor(&centres.device());
        centres.select(0, index)
    }

    /// `after` with the rows that were not sampled taken from `before`: call it on the centre
    /// matrix after the optimizer step so that only sampled rows move.
    ///
    /// # Shapes
    /// - before, after: `[classes, dim]`
    /// - output: `[classes, dim]`
    pub fn keep_unsampled_rows<B: Backend>(
        &self,
        before: Tensor<B, 2>,
        after: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        if self.index.len() == self.num_classes {
            return after;
        }
        let [classes, dim] = after.dims();
        let mut sampled = vec![false; classes];
        for &c in &self.index {
            sampled[c as usize] = true;
        }
        let device = after.device();
        let unsampled: Vec<bool> = sampled.iter().map(|s| !s).collect();
        let mask = Tensor::<B, 1, Bool>::from_data(TensorData::new(unsampled, [classes]), &device)
            .reshape([classes, 1])
            .expand([classes, dim]);
        after.mask_where(mask, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn sampler(rate: f64, seed: u64) -> NegativeSampler {
        NegativeSamplerConfig {
            sample_rate: rate,
            seed,
        }
        .init()
    }

    #[test]
    fn keeps_positives_fills_the_budget_and_remaps() {
        let labels = [7i64, 3, 7, -1, 95, 0];
        for step in 0..20 {
            let s = sampler(0.3, 1).sample(&labels, 100, step);
            assert_eq!(s.index.len(), 30, "int(0.3 * 100)");
            assert!(
                s.index.windows(2).all(|w| w[0] < w[1]),
                "sorted, no duplicates"
            );
            assert!(s.index.iter().all(|&c| (0..100).contains(&c)));
            for (&y, &r) in labels.iter().zip(&s.labels) {
                if y < 0 {
                    assert_eq!(r, -1);
                } else {
                    assert_eq!(
                        s.index[r as usize], y,
                        "the remapped label points at the class"
                    );
                }
            }
        }
        // int() truncates: int(0.3 * 7) = int(2.1) = 2 classes in all.
        assert_eq!(sampler(0.3, 1).budget(7), 2);
    }

    #[test]
    fn deterministic_from_seed_and_step() {
        let labels = [1i64, 2, 3];
        let a = sampler(0.1, 5).sample(&labels, 1000, 42);
        assert_eq!(a, sampler(0.1, 5).sample(&labels, 1000, 42));
        assert_ne!(a.index, sampler(0.1, 5).sample(&labels, 1000, 43).index);
        assert_ne!(a.index, sampler(0.1, 6).sample(&labels, 1000, 42).index);
    }

    #[test]
    fn positives_beyond_the_budget_are_all_kept() {
        let labels = [9i64, 1, 4, 4, 6];
        let s = sampler(0.2, 0).sample(&labels, 10, 0);
        assert_eq!(s.index, vec![1, 4, 6, 9]);
        assert_eq!(s.labels, vec![3, 0, 1, 1, 2]);
    }

    #[test]
    fn rate_one_keeps_everything() {
        let s = sampler(1.0, 0).sample(&[3, -1], 5, 9);
        assert_eq!(s.index, vec![0, 1, 2, 3, 4]);
        assert_eq!(s.labels, vec![3, -1]);
    }

    #[test]
    fn negatives_are_uniform() {
        // 2 positives out of 12 classes, budget 6: each of the 10 negatives is kept with
        // probability 4/10.
        let mut counts = [0usize; 12];
        let trials = 5000;
        for step in 0..trials {
            for c in sampler(0.5, 3).sample(&[0, 11], 12, step).index {
                counts[c as usize] += 1;
            }
        }
        assert_eq!((counts[0], counts[11]), (trials as usize, trials as usize));
        for &c in &counts[1..11] {
            let p = c as f64 / trials as f64;
            assert!((p - 0.4).abs() < 0.03, "{counts:?}");
        }
    }

    #[test]
    fn selection_and_freezing_touch_the_right_rows() {
        let device = Default::default();
        let s = SampledClasses {
            index: vec![1, 3],
            labels: vec![0, 1],
            num_classes: 4,
        };
        let centres = Tensor::<Flex, 2>::from_floats([[0.0f32], [1.0], [2.0], [3.0]], &device);
        let picked = s
            .select_centres(centres.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(picked, vec![1.0, 3.0]);
        let after = centres.clone().add_scalar(10.0);
        let kept = s
            .keep_unsampled_rows(centres, after)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(kept, vec![0.0, 11.0, 2.0, 13.0]);
    }

    #[test]
    fn rate_out_of_range_is_named() {
        for rate in [0.0, -0.1, 1.5] {
            let message = NegativeSamplerConfig {
                sample_rate: rate,
                seed: 0,
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(message.contains("sampler.sample_rate"), "{message}");
            assert!(message.contains(&rate.to_string()), "{message}");
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn labels_out_of_range_panic() {
        sampler(0.5, 0).sample(&[10], 10, 0);
    }
}
