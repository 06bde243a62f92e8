//! [`TrainModel`]: what the optimizer updates, the backbone and the class centres, and the
//! fresh model of a rank ([`init_model`]).

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use lvface_pfc::ClassShard;
use lvface_vit::Vit;

use crate::config::TrainConfig;
use crate::ranks::GENERATOR;
use crate::seeds::{step_seed, CENTRES_STREAM};

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

/// A fresh model for `shard`: the backbone is the same on every rank (seeded by `run.seed`),
/// each centre shard is drawn from its own stream.
pub(crate) fn init_model<B: AutodiffBackend>(
    config: &TrainConfig,
    shard: ClassShard,
    device: &B::Device,
) -> TrainModel<B> {
    let _generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    B::seed(device, config.run.seed);
    // burn draws a parameter's initial values when it is first used; draw them now, while
    // this rank holds the generator, or in-process ranks would start from different weights.
    let backbone = initialized(config.vit.init(device));
    B::seed(
        device,
        step_seed(config.run.seed ^ CENTRES_STREAM, shard.rank as u64),
    );
    TrainModel::new(backbone, shard.num_local(), config.vit.num_features, device)
}

/// `module` with every parameter's lazy initialisation done.
fn initialized<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
    module
}
