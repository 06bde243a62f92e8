//! [`PrototypeBank`]: EPL's empirical class prototypes, an exponential moving average of each
//! class's normalised features (Fan et al., arXiv 2405.12447; code `head_VPCL.py` of
//! WakingHours-GitHub/EPL), the prototype logits with EPL's adaptive target margin, and an
//! estimate of the length of each class's feature expectation.
//!
//! Update, for a sample `x` of class `y`, with `x̂ = normalize(x)` detached and `s = ⟨x̂, P_y⟩`:
//! `P_y ← normalize(α·P_y + (1 - α)·x̂)`, `α` from [`Momentum`].
//!
//! **Length.** `‖α(w, x)‖` of the paper's Eq. 19 is `‖E[x̂ | y]‖` (see `docs/losses.md`). The bank
//! keeps, per class, a mean `m_y ← β·m_y + (1 - β)·x̂` and `q_y ← β·q_y + (1 - β)·⟨x̂, m_y⟩` (the
//! old `m_y`), with the fixed `β` = [`PrototypeBankConfig::length_momentum`]; the length is
//! `√q_y`. `m_y` is a weighted average of earlier samples, so `E m_y = E x̂` and, the new sample
//! being independent of them, `E⟨x̂, m_y⟩ = ‖E x̂‖²`: no bias, whatever the spread of the class.
//! The EMA of `s` that EPL's prototype offers is biased low, and not because softsign weighs
//! samples unevenly: `P_y` follows the last few samples, so it is itself off the mean direction
//! and `E s = ⟨E x̂, P_y⟩ = ‖E x̂‖·cos∠(P_y, E x̂)` (about 0.58 for a true 0.7 in 512
//! dimensions, with a sample-independent momentum as much as with softsign). The price is a second `[classes, dim]`
//! tensor.
//!
//! **Duplicate labels.** The occurrences of one class in a batch are applied in batch order, each
//! seeing the state the previous one left, exactly as if the batch arrived one sample at a time.
//! (EPL computes every update from the old prototype and lets the last index assignment win,
//! which on a GPU is not even deterministic.)
//!
//! **Start.** Prototypes and means start at zero, `q` at 1. A zero prototype gives `s = 0`, and
//! under every momentum rule the first update makes `P_y = x̂`; the first sample of a class also
//! becomes its mean and leaves `q_y` (one sample says nothing about the spread), so the length of
//! a class seen at most once is 1. (EPL starts from `randn`.)
//!
//! The bank holds no parameters: every input is detached and no gradient ever reaches it.

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn_store::{ModuleStore, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::cosine::l2_normalize;
use crate::error::{LossError, Result};

/// How the EMA momentum `α` follows from the similarity `s = ⟨x̂, P_y⟩`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Momentum {
    /// `α = softsign(s) = s / (1 + |s|)`, EPL's default: a feature far from its prototype
    /// (`s` small or negative) moves it more.
    #[default]
    Softsign,
    /// `α = sigmoid(s - 1)`, EPL's alternative.
    Sigmoid,
    /// A constant `α` in `[0, 1)`.
    Fixed(f64),
}

/// Configuration of a [`PrototypeBank`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrototypeBankConfig {
    /// EMA momentum rule.
    pub momentum: Momentum,
    /// EPL's adaptive target margin: the prototype target logit is `(1 - k)·⟨x̂, P̂_y⟩` in value,
    /// with the gradient of `⟨x̂, P̂_y⟩` (EPL subtracts `k` times its detached value).
    pub margin_k: f64,
    /// `β` of the length estimate's two EMAs (the class mean and `q`), in `[0, 1)`: the same for
    /// every sample, so that no sample counts more than another. 0.9 averages about the last 19
    /// samples of a class.
    pub length_momentum: f64,
}

impl Default for PrototypeBankConfig {
    fn default() -> Self {
        Self {
            momentum: Momentum::Softsign,
            margin_k: 0.7,
            length_momentum: 0.9,
        }
    }
}

impl PrototypeBankConfig {
    /// Checks every field once; the error names the key (under `prototypes`) and the value.
    pub fn validate(&self) -> Result<()> {
        self.validate_at("prototypes")
    }

    pub(crate) fn validate_at(&self, prefix: &str) -> Result<()> {
        if let Momentum::Fixed(alpha) = self.momentum {
            if !(0.0..1.0).contains(&alpha) {
                return Err(LossError::invalid(
                    format!("{prefix}.momentum.fixed"),
                    "must be in [0, 1)",
                    alpha,
                ));
            }
        }
        if !(0.0..1.0).contains(&self.margin_k) {
            return Err(LossError::invalid(
                format!("{prefix}.margin_k"),
                "must be in [0, 1)",
                self.margin_k,
            ));
        }
        if !(0.0..1.0).contains(&self.length_momentum) {
            return Err(LossError::invalid(
                format!("{prefix}.length_momentum"),
                "must be in [0, 1)",
                self.length_momentum,
            ));
        }
        Ok(())
    }

    /// An empty bank of `classes` prototypes of width `dim`.
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init<B: Backend>(
        &self,
        classes: usize,
        dim: usize,
        device: &B::Device,
    ) -> PrototypeBank<B> {
        PrototypeBank::from_state(
            *self,
            Tensor::zeros([classes, dim], device),
            Tensor::zeros([classes, dim], device),
            Tensor::ones([classes], device),
        )
    }
}

/// EMA class prototypes `[classes, dim]`, and the class means `[classes, dim]` and squared
/// feature-expectation lengths `[classes]` of the length estimate.
#[derive(Debug, Clone)]
pub struct PrototypeBank<B: Backend> {
    config: PrototypeBankConfig,
    prototypes: Tensor<B, 2>,
    means: Tensor<B, 2>,
    squared_lengths: Tensor<B, 1>,
}

/// The file layout of a saved bank.
#[derive(Module, Debug)]
struct BankRecord<B: Backend> {
    prototypes: Param<Tensor<B, 2>>,
    means: Param<Tensor<B, 2>>,
    squared_lengths: Param<Tensor<B, 1>>,
}

impl<B: Backend> PrototypeBank<B> {
    /// A bank with the given prototypes and lengths, the state banks kept before they estimated
    /// the length from a class mean (and the natural way to set lengths by hand). The means
    /// start at `length · prototype`, the best guess this state allows, and `q` at `length²`;
    /// updates then move both to their unbiased values within a few tens of samples per class.
    ///
    /// # Shapes
    /// - prototypes: `[classes, dim]`
    /// - lengths: `[classes]`
    ///
    /// # Panics
    /// If the configuration is invalid or the shapes disagree.
    pub fn from_tensors(
        config: PrototypeBankConfig,
        prototypes: Tensor<B, 2>,
        lengths: Tensor<B, 1>,
    ) -> Self {
        let [classes] = lengths.dims();
        let means = prototypes.clone() * lengths.clone().reshape([classes, 1]);
        Self::from_state(config, prototypes, means, lengths.square())
    }

    /// A bank with the given state, as [`prototypes`](Self::prototypes),
    /// [`means`](Self::means) and [`squared_lengths`](Self::squared_lengths) return it (for
    /// instance in another float precision, or read back from a checkpoint).
    ///
    /// # Shapes
    /// - prototypes: `[classes, dim]`
    /// - means: `[classes, dim]`
    /// - squared_lengths: `[classes]`
    ///
    /// # Panics
    /// If the configuration is invalid or the shapes disagree.
    pub fn from_state(
        config: PrototypeBankConfig,
        prototypes: Tensor<B, 2>,
        means: Tensor<B, 2>,
        squared_lengths: Tensor<B, 1>,
    ) -> Self {
        if let Err(e) = config.validate() {
            panic!("{e}");
        }
        assert_eq!(
            prototypes.dims(),
            means.dims(),
            "one mean per prototype, of the same width"
        );
        assert_eq!(
            prototypes.dims()[0],
            squared_lengths.dims()[0],
            "one length per prototype"
        );
        Self {
            config,
            prototypes: prototypes.detach(),
            means: means.detach(),
            squared_lengths: squared_lengths.detach(),
        }
    }

    /// The configuration of this bank.
    pub fn config(&self) -> &PrototypeBankConfig {
        &self.config
    }

    /// The prototypes, unit rows for classes seen, zero rows for the others.
    ///
    /// # Shapes
    /// - output: `[classes, dim]`
    pub fn prototypes(&self) -> Tensor<B, 2> {
        self.prototypes.clone()
    }

    /// The class means of the length estimate, EMAs of the normalised features with momentum
    /// `length_momentum`; zero rows for classes not seen.
    ///
    /// # Shapes
    /// - output: `[classes, dim]`
    pub fn means(&self) -> Tensor<B, 2> {
        self.means.clone()
    }

    /// `q_y`, the unbiased running estimates of `‖E[x̂ | y]‖²`, unclamped (an estimate of a
    /// small length can dip below 0).
    ///
    /// # Shapes
    /// - output: `[classes]`
    pub fn squared_lengths(&self) -> Tensor<B, 1> {
        self.squared_lengths.clone()
    }

    /// The estimated lengths `‖E[x̂ | y]‖ = √q_y` of every class, `q_y` clamped to `[0, 1]`.
    ///
    /// # Shapes
    /// - output: `[classes]`
    pub fn lengths(&self) -> Tensor<B, 1> {
        self.squared_lengths.clone().clamp(0.0, 1.0).sqrt()
    }

    /// `‖α(w, x)‖_y` of Eq. 19 for each label: the class's expectation length (in `[0, 1]`), 1
    /// for `-1`.
    ///
    /// # Shapes
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[batch]`, detached
    pub fn expectation_length(&self, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
        let absent = labels.clone().lower_elem(0);
        let picked = self.lengths().select(0, labels.clamp_min(0));
        picked.mask_fill(absent, 1.0)
    }

    fn alpha(&self, s: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.config.momentum {
            Momentum::Softsign => s.clone() / s.abs().add_scalar(1.0),
            Momentum::Sigmoid => burn::tensor::activation::sigmoid(s.sub_scalar(1.0)),
            Momentum::Fixed(alpha) => s.zeros_like().add_scalar(alpha),
        }
    }

    /// Folds a batch of features into the prototypes and length estimates of their classes (rows
    /// labelled `-1` are skipped). Features are normalised and detached here.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`
    /// - labels: `[batch]`, in `-1..classes`
    pub fn update(&mut self, embeddings: Tensor<B, 2>, labels: Tensor<B, 1, Int>) {
        let features = l2_normalize(embeddings.detach());
        let device = features.device();
        let labels: Vec<i64> = labels
            .into_data()
            .convert::<i64>()
            .to_vec()
            .expect("int labels");
        for (rows, classes) in rounds(&labels) {
            let n = rows.len();
            let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &device);
            let classes = Tensor::<B, 1, Int>::from_data(TensorData::new(classes, [n]), &device);
            let x = features.clone().select(0, rows);
            let old = self.prototypes.clone().select(0, classes.clone());
            let s = (x.clone() * old.clone()).sum_dim(1);
            let unseen = old.clone().square().sum_dim(1).lower_equal_elem(0.25);
            let alpha = self.alpha(s.clone());
            let new =
                l2_normalize(old.clone() * alpha.clone() + x.clone() * alpha.neg().add_scalar(1.0));
            // The backends accumulate into selected rows; adding the difference assigns.
            self.prototypes = self.prototypes.clone().select_assign(
                0,
                classes.clone(),
                new - old,
                IndexingUpdateOp::Add,
            );

            // The first sample of a class becomes its mean (momentum 0) and leaves `q` alone
            // (weight 0); later ones move both with the fixed momentum.
            let beta = self.config.length_momentum;
            let keep = s
                .zeros_like()
                .add_scalar(beta)
                .mask_fill(unseen.clone(), 0.0);
            let weight = s.zeros_like().add_scalar(1.0 - beta).mask_fill(unseen, 0.0);
            let old_mean = self.means.clone().select(0, classes.clone());
            let dot = (x.clone() * old_mean.clone()).sum_dim(1);
            let new_mean = old_mean.clone() * keep.clone() + x * keep.neg().add_scalar(1.0);
            self.means = self.means.clone().select_assign(
                0,
                classes.clone(),
                new_mean - old_mean,
                IndexingUpdateOp::Add,
            );
            let old_q = self
                .squared_lengths
                .clone()
                .select(0, classes.clone())
                .reshape([n, 1]);
            let step = (dot - old_q) * weight;
            self.squared_lengths = self.squared_lengths.clone().select_assign(
                0,
                classes,
                step.reshape([n]),
                IndexingUpdateOp::Add,
            );
        }
    }

    /// Cosines between the normalised embeddings and the (detached) normalised prototypes, with
    /// EPL's adaptive target margin: the target entry is `c_y - k·detach(c_y)`. Unscaled.
    /// Gradients reach the embeddings only.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[batch, classes]`
    pub fn forward_logits(
        &self,
        embeddings: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        prototype_logits(
            self.prototypes.clone(),
            embeddings,
            labels,
            self.config.margin_k,
        )
    }

    /// [`forward_logits`](Self::forward_logits) against the prototypes of some classes only, as
    /// Partial FC samples the class centres: column `j` is class `classes[j]`.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`
    /// - labels: `[batch]`, in `-1..n`, numbered as the columns
    /// - classes: `[n]`, in `0..classes`
    /// - output: `[batch, n]`
    pub fn forward_logits_of(
        &self,
        embeddings: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        classes: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let prototypes = self.prototypes.clone().select(0, classes);
        prototype_logits(prototypes, embeddings, labels, self.config.margin_k)
    }

    /// Writes the bank as safetensors (`prototypes` and `means` `[classes, dim]`,
    /// `squared_lengths` `[classes]`), through a temporary file renamed into place.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let write_error = |reason: String| LossError::BankWrite {
            path: path.into(),
            reason,
        };
        let record = BankRecord {
            prototypes: Param::from_tensor(self.prototypes.clone()),
            means: Param::from_tensor(self.means.clone()),
            squared_lengths: Param::from_tensor(self.squared_lengths.clone()),
        };
        let mut tmp = PathBuf::from(path);
        tmp.as_mut_os_string().push(".tmp");
        SafetensorsStore::from_file(&tmp)
            .overwrite(true)
            .collect_from::<B, _>(&record)
            .map_err(|e| write_error(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_error(e.to_string())
        })
    }

    /// Reads a bank written by [`save`](Self::save) into this one; shapes must match and the
    /// tensors take this bank's float type. A file of the earlier layout (`prototypes` and
    /// `lengths` only) loads as [`from_tensors`](Self::from_tensors) builds a bank from them.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let read_error = |reason: String| LossError::BankRead {
            path: path.into(),
            reason,
        };
        let mut store = SafetensorsStore::from_file(path);
        let mut read = |name: &str, expected: Vec<usize>| -> Result<Option<TensorData>> {
            let Some(snapshot) = store
                .get_snapshot(name)
                .map_err(|e| read_error(e.to_string()))?
            else {
                return Ok(None);
            };
            let data = snapshot
                .to_data()
                .map_err(|e| read_error(format!("{name}: {e:?}")))?;
            if data.shape.as_slice() != expected.as_slice() {
                return Err(read_error(format!(
                    "`{name}` has shape {:?}, the bank {expected:?}",
                    data.shape
                )));
            }
            Ok(Some(data))
        };
        let dims = self.prototypes.dims();
        let classes = dims[0];
        let missing = |name: &str| read_error(format!("no tensor `{name}`"));
        let prototypes = read("prototypes", dims.to_vec())?.ok_or_else(|| missing("prototypes"))?;
        let means = read("means", dims.to_vec())?;
        let device = self.prototypes.device();
        let dtype = self.prototypes.dtype();
        let prototypes = Tensor::from_data(prototypes, (&device, dtype));
        *self = match means {
            Some(means) => {
                let squared = read("squared_lengths", vec![classes])?
                    .ok_or_else(|| missing("squared_lengths"))?;
                Self::from_state(
                    self.config,
                    prototypes,
                    Tensor::from_data(means, (&device, dtype)),
                    Tensor::from_data(squared, (&device, dtype)),
                )
            }
            None => {
                let lengths = read("lengths", vec![classes])?.ok_or_else(|| missing("means"))?;
                Self::from_tensors(
                    self.config,
                    prototypes,
                    Tensor::from_data(lengths, (&device, dtype)),
                )
            }
        };
        Ok(())
    }
}

/// Splits a batch into rounds with distinct classes: round `k` holds the `k`-th occurrence of
/// each class, so applying the rounds in order applies every class's samples in batch order.
/// Returns `(batch rows, classes)` per round.
fn rounds(labels: &[i64]) -> Vec<(Vec<i64>, Vec<i64>)> {
    let mut seen = std::collections::HashMap::new();
    let mut rounds: Vec<(Vec<i64>, Vec<i64>)> = Vec::new();
    for (row, &y) in labels.iter().enumerate() {
        if y < 0 {
            continue;
        }
        let k: &mut usize = seen.entry(y).or_default();
        if rounds.len() <= *k {
            rounds.push((Vec::new(), Vec::new()));
        }
        rounds[*k].0.push(row as i64);
        rounds[*k].1.push(y);
        *k += 1;
    }
    rounds
}

/// EPL's prototype logits against `prototypes` (detached and normalised here): cosines with the
/// target entry `c_y - k·detach(c_y)`, unscaled.
fn prototype_logits<B: Backend>(
    prototypes: Tensor<B, 2>,
    embeddings: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    margin_k: f64,
) -> Tensor<B, 2> {
    let [batch, _] = embeddings.dims();
    let prototypes = l2_normalize(prototypes.detach());
    let cos = l2_normalize(embeddings)
        .matmul(prototypes.transpose())
        .clamp(-1.0, 1.0);
    let absent = labels.clone().lower_elem(0).reshape([batch, 1]);
    let index = labels.clamp_min(0).reshape([batch, 1]);
    let target = cos.clone().gather(1, index.clone()).detach();
    let delta = target.mul_scalar(-margin_k).mask_fill(absent, 0.0);
    cos.scatter(1, index, delta, IndexingUpdateOp::Add)
}
