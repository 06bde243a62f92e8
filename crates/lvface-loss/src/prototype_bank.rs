//! [`PrototypeBank`]: EPL's empirical class prototypes, an exponential moving average of each
//! class's normalised features (Fan et al., arXiv 2405.12447; code `head_VPCL.py` of
//! WakingHours-GitHub/EPL), and the prototype logits with EPL's adaptive target margin.
//!
//! Update, for a sample `x` of class `y`, with `x̂ = normalize(x)` detached and `s = ⟨x̂, P_y⟩`:
//! `P_y ← normalize(α·P_y + (1 - α)·x̂)`, `α` from [`Momentum`].
//!
//! The bank also keeps, per class, `r_y ← α·r_y + (1 - α)·s`, an estimate of the length of the
//! class's feature expectation `‖E[x̂ | y]‖` (for unit vectors `‖E x̂‖ = E⟨x̂, μ̂⟩` with `μ̂` the
//! direction of `E x̂`, which `P_y` tracks). It is the `‖α(w, x)‖` of the paper's Eq. 19 (see
//! `docs/losses.md`).
//!
//! **Duplicate labels.** The occurrences of one class in a batch are applied in batch order, each
//! seeing the prototype the previous one left, exactly as if the batch arrived one sample at a
//! time. (EPL computes every update from the old prototype and lets the last index assignment
//! win, which on a GPU is not even deterministic.)
//!
//! **Start.** Prototypes start at zero and lengths at 1. A zero prototype gives `s = 0`, and under
//! every momentum rule the first update makes `P_y = x̂`; the length of a class not yet seen stays
//! 1 (its first sample counts as `s = 1`). (EPL starts from `randn`.)
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
}

impl Default for PrototypeBankConfig {
    fn default() -> Self {
        Self {
            momentum: Momentum::Softsign,
            margin_k: 0.7,
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
        PrototypeBank::from_tensors(
            *self,
            Tensor::zeros([classes, dim], device),
            Tensor::ones([classes], device),
        )
    }
}

/// EMA class prototypes `[classes, dim]` and feature-expectation lengths `[classes]`.
#[derive(Debug, Clone)]
pub struct PrototypeBank<B: Backend> {
    config: PrototypeBankConfig,
    prototypes: Tensor<B, 2>,
    lengths: Tensor<B, 1>,
}

/// The file layout of a saved bank: two tensors named `prototypes` and `lengths`.
#[derive(Module, Debug)]
struct BankRecord<B: Backend> {
    prototypes: Param<Tensor<B, 2>>,
    lengths: Param<Tensor<B, 1>>,
}

impl<B: Backend> PrototypeBank<B> {
    /// A bank with the given state (for instance in another float precision).
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
        if let Err(e) = config.validate() {
            panic!("{e}");
        }
        assert_eq!(
            prototypes.dims()[0],
            lengths.dims()[0],
            "one length per prototype"
        );
        Self {
            config,
            prototypes: prototypes.detach(),
            lengths: lengths.detach(),
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

    /// The estimated lengths `‖E[x̂ | y]‖` of every class, unclamped.
    ///
    /// # Shapes
    /// - output: `[classes]`
    pub fn lengths(&self) -> Tensor<B, 1> {
        self.lengths.clone()
    }

    /// `‖α(w, x)‖_y` of Eq. 19 for each label: the class's expectation length clamped to
    /// `[0, 1]` (softsign momenta can be negative, which lets the EMA overshoot), 1 for `-1`.
    ///
    /// # Shapes
    /// - labels: `[batch]`, in `-1..classes`
    /// - output: `[batch]`, detached
    pub fn expectation_length(&self, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
        let absent = labels.clone().lower_elem(0);
        let picked = self.lengths.clone().select(0, labels.clamp_min(0));
        picked.clamp(0.0, 1.0).mask_fill(absent, 1.0)
    }

    fn alpha(&self, s: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.config.momentum {
            Momentum::Softsign => s.clone() / s.abs().add_scalar(1.0),
            Momentum::Sigmoid => burn::tensor::activation::sigmoid(s.sub_scalar(1.0)),
            Momentum::Fixed(alpha) => s.zeros_like().add_scalar(alpha),
        }
    }

    /// Folds a batch of features into the prototypes of their classes (rows labelled `-1` are
    /// skipped). Features are normalised and detached here.
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
            let seen = old.clone().square().sum_dim(1).greater_elem(0.25);
            let alpha = self.alpha(s.clone());
            let beta = alpha.clone().neg().add_scalar(1.0);
            let new = l2_normalize(old.clone() * alpha.clone() + x * beta.clone());
            // The backends accumulate into selected rows; adding the difference assigns.
            self.prototypes = self.prototypes.clone().select_assign(
                0,
                classes.clone(),
                new - old,
                IndexingUpdateOp::Add,
            );
            let old_length = self
                .lengths
                .clone()
                .select(0, classes.clone())
                .reshape([n, 1]);
            let s = s.ones_like().mask_where(seen, s);
            let new_length = old_length.clone() * alpha + s * beta;
            self.lengths = self.lengths.clone().select_assign(
                0,
                classes,
                (new_length - old_length).reshape([n]),
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
        let [batch, _] = embeddings.dims();
        let prototypes = l2_normalize(self.prototypes.clone().detach());
        let cos = l2_normalize(embeddings)
            .matmul(prototypes.transpose())
            .clamp(-1.0, 1.0);
        let absent = labels.clone().lower_elem(0).reshape([batch, 1]);
        let index = labels.clamp_min(0).reshape([batch, 1]);
        let target = cos.clone().gather(1, index.clone()).detach();
        let delta = target
            .mul_scalar(-self.config.margin_k)
            .mask_fill(absent, 0.0);
        cos.scatter(1, index, delta, IndexingUpdateOp::Add)
    }

    /// Writes the bank as safetensors (`prototypes` `[classes, dim]`, `lengths` `[classes]`),
    /// through a temporary file renamed into place.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let write_error = |reason: String| LossError::BankWrite {
            path: path.into(),
            reason,
        };
        let record = BankRecord {
            prototypes: Param::from_tensor(self.prototypes.clone()),
            lengths: Param::from_tensor(self.lengths.clone()),
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
    /// tensors take this bank's float type.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let read_error = |reason: String| LossError::BankRead {
            path: path.into(),
            reason,
        };
        let mut store = SafetensorsStore::from_file(path);
        let mut read = |name: &str, expected: Vec<usize>| -> Result<TensorData> {
            let snapshot = store
                .get_snapshot(name)
                .map_err(|e| read_error(e.to_string()))?
                .ok_or_else(|| read_error(format!("no tensor `{name}`")))?;
            let data = snapshot
                .to_data()
                .map_err(|e| read_error(format!("{name}: {e:?}")))?;
            if data.shape.as_slice() != expected.as_slice() {
                return Err(read_error(format!(
                    "`{name}` has shape {:?}, the bank {expected:?}",
                    data.shape
                )));
            }
            Ok(data)
        };
        let prototypes = read("prototypes", self.prototypes.dims().to_vec())?;
        let lengths = read("lengths", self.lengths.dims().to_vec())?;
        let device = self.prototypes.device();
        let dtype = self.prototypes.dtype();
        self.prototypes = Tensor::from_data(prototypes, (&device, dtype));
        self.lengths = Tensor::from_data(lengths, (&device, dtype));
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
