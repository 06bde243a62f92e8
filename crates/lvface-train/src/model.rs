//! [`TrainModel`]: what the optimizer updates, the backbone and the class centres.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use lvface_vit::Vit;

/// The backbone and the centre matrix of the classification layer, one module so that one
/// optimizer steps both (insightface puts both in AdamW's parameter groups).
#[derive(Module, Debug)]
pub struct TrainModel<B: Backend> {
    /// The face ViT.
    pub backbone: Vit<B>,
    /// One learned centre per class of this rank's shard (all classes on one device).
    ///
    /// # Shapes
    /// `[num_local, num_features]`
    pub centres: Param<Tensor<B, 2>>,
}

impl<B: Backend> TrainModel<B> {
    /// `backbone` with fresh centres for `rows` classes (one rank's shard), drawn from
    /// `N(0, 0.01²)` as insightface's Partial FC does.
    pub fn new(backbone: Vit<B>, rows: usize, num_features: usize, device: &B::Device) -> Self {
        let centres = Tensor::random(
            [rows, num_features],
            Distribution::Normal(0.0, 0.01),
            device,
        );
        Self {
            backbone,
            centres: Param::from_tensor(centres),
        }
    }

    /// This model with the centre values replaced, keeping the parameter's identity (and so its
    /// optimizer state).
    pub fn with_centres(mut self, centres: Tensor<B, 2>) -> Self {
        let id = self.centres.id;
        self.centres = Param::initialized(id, centres.detach().require_grad());
        self
    }
}
