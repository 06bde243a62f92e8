//! Every file in `configs/` loads over `base.toml` and validates, and the recipe files say what
//! their headers claim.

use std::any::TypeId;
use std::path::{Path, PathBuf};

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use lvface_train::{with_autodiff, Experiment, TrainConfig};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn load(name: &str) -> TrainConfig {
    let path = configs_dir().join(name);
    TrainConfig::load(&Experiment::File(path), &[])
        .unwrap_or_else(|e| panic!("configs/{name}: {e:#}"))
}

/// Whether `lvface-train` trains `config` on burn's checkpointing autodiff backend: what
/// [`with_autodiff!`] picks from `vit.grad_checkpoint`.
fn trains_checkpointed(config: &TrainConfig) -> bool {
    let backend = with_autodiff!(Flex, config.vit.grad_checkpoint, |B| TypeId::of::<B>());
    let checkpointed = TypeId::of::<Autodiff<Flex, BalancedCheckpointing>>();
    assert!(backend == checkpointed || backend == TypeId::of::<Autodiff<Flex>>());
    backend == checkpointed
}

#[test]
fn every_config_loads_and_validates() {
    let mut names: Vec<String> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    names.sort();
    for name in &names {
        let config = load(name);
        // The resolved form a run writes reads back the same.
        let text = config.to_toml().unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config, "configs/{name}");
    }
    for expected in [
        "base.toml",
        "default.toml",
        "smoke.toml",
        "ms1mv3_vit_t_1gpu.toml",
        "glint360k_vit_b_8gpu.toml",
        "glint360k_vit_b_8gpu_pco.toml",
        "wf42m_lvface_vit_l_64gpu.toml",
        "finetune_lvface_vit_b.toml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing");
    }
}

/// The LVFace curriculum of the recipe files: 40% of the epochs early (sampling), 60% stable
/// (prototypes, no sampling), warm-up a tenth of the epochs (rounded down).
fn assert_lvface_curriculum(config: &TrainConfig, epochs: usize) {
    let curriculum = &config.loss.curriculum;
    assert_eq!(curriculum.epochs, epochs);
    let [early, stable] = curriculum.phases.as_slice() else {
        panic!("two phases expected, got {:?}", curriculum.phases);
    };
    assert_eq!(stable.start_epoch * 5, epochs * 2);
    assert!(early.sampling && !early.prototypes);
    assert!(stable.prototypes && !stable.sampling);
    // insightface's `num_epoch // 10`.
    assert_eq!(config.optim.warmup_epochs, (epochs / 10) as f64);
}

#[test]
fn recipe_files_state_their_settings() {
    let ms1m = load("ms1mv3_vit_t_1gpu.toml");
    assert_lvface_curriculum(&ms1m, 25);
    assert_eq!((ms1m.vit.embed_dim, ms1m.vit.depth), (256, 12));
    assert_eq!(ms1m.data.batch_size, 128);
    assert_eq!(ms1m.data.rec, "/train_tmp/ms1m-retinaface-t1");
    assert_eq!((ms1m.optim.lr, ms1m.optim.weight_decay), (1e-3, 0.1));
    assert_eq!(ms1m.eval.bins.len(), 3);

    let glint = load("glint360k_vit_b_8gpu.toml");
    assert_lvface_curriculum(&glint, 20);
    let vit = &glint.vit;
    assert_eq!((vit.embed_dim, vit.depth, vit.num_heads), (512, 24, 8));
    assert_eq!((vit.drop_path_rate, vit.mask_ratio), (0.05, 0.05));
    assert_eq!(glint.data.batch_size, 256);
    assert_eq!(glint.optim.gradient_accumulation, 12);
    assert_eq!(glint.data.rec, "/train_tmp/glint360k");
    assert_eq!((glint.optim.lr, glint.optim.weight_decay), (1e-3, 0.1));

    // The three steps of Progressive Cluster Optimization on the same setting.
    let pco = load("glint360k_vit_b_8gpu_pco.toml");
    let steps: Vec<(usize, bool, bool)> = pco
        .loss
        .curriculum
        .phases
        .iter()
        .map(|p| (p.start_epoch, p.sampling, p.prototypes))
        .collect();
    assert_eq!(
        steps,
        [(0, true, false), (8, true, true), (14, false, true)]
    );
    assert_eq!(pco.loss.curriculum.phases[1].sample_rate, 0.3);
    assert_eq!(
        (&pco.vit, &pco.data, &pco.optim),
        (&glint.vit, &glint.data, &glint.optim)
    );

    let wf42m = load("wf42m_lvface_vit_l_64gpu.toml");
    assert_eq!(wf42m.loss.curriculum.phases[1].start_epoch, 40);

    // Fine-tuning the released LVFace ViT-B: exactly the preset its `.pt` was trained as (what
    // `finetune.backbone`'s fit check compares), the classifier alone first, then the backbone
    // at a tenth of its rate; no negative sampling.
    let tune = load("finetune_lvface_vit_b.toml");
    assert_eq!(tune.vit, lvface_vit::VitConfig::vit_b_dp005_mask_005());
    assert!(tune.finetune.backbone.ends_with(".pt"));
    assert_eq!(tune.finetune.backbone_lr_scale, 0.1);
    assert_eq!(tune.finetune.classifier_warmup_steps, 200);
    assert!(!tune.finetune.freeze_backbone && tune.finetune.frozen_blocks == 0);
    assert!(tune.loss.curriculum.phases.iter().all(|p| !p.sampling));
    assert_eq!(
        tune.loss.curriculum.phases[1].start_epoch * 5,
        tune.loss.curriculum.epochs * 2
    );
    assert_eq!(tune.eval.bins.len(), 1);

    // insightface checkpoints its ViT-B and ViT-L (`using_checkpoint=True`); the ViT-T recipe
    // keeps every activation. The binary turns the key into the autodiff backend it trains on.
    assert!(!trains_checkpointed(&ms1m));
    assert!(trains_checkpointed(&glint));
    assert!(trains_checkpointed(&wf42m));

    // Paths are checked when a run is created, not when the configuration loads: a recipe loads
    // on a machine without its data, and `--set data.rec=...` points it elsewhere.
    let sets = ["data.rec=/data/ms1m-retinaface-t1".to_string()];
    let path = configs_dir().join("ms1mv3_vit_t_1gpu.toml");
    let moved = TrainConfig::load(&Experiment::File(path), &sets).unwrap();
    assert_eq!(moved.data.rec, "/data/ms1m-retinaface-t1");
}
