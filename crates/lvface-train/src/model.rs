//! [`TrainModel`]: what the optimizer updates, the backbone and the class centres.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use lvface_vit::{Vit, VitConfig};

/// The backbone and the centre matrix of the classification layer, one module so that one
/// optimizer steps both (insightface puts both in AdamW's parameter groups).
#[derive(Module, Debug)]
pub struct TrainModel<B: Backend> {
    /// The face ViT.
    pub backbone: Vit<B>,
    /// One learned centre per class.
    ///
    /// # Shapes
    /// `[classes, num_features]`
    pub centres: Param<Tensor<B, 2>>,
}

impl<B: Backend> TrainModel<B> {
    /// A fresh model: the ViT's own initialisation, centres drawn from `N(0, 0.01²)` as
    /// insightface's Partial FC does.
    pub fn init(vit: &VitConfig, classes: usize, device: &B::Device) -> Self {
        let centres = Tensor::random(
            [classes, vit.num_features],
            Distribution::Normal(0.0, 0.01),
            device,
        );
        Self {
            backbone: vit.init(device),
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
