//! [`export_onnx`]: a [`Vit`] as an ONNX graph, in its evaluation form.
//!
//! The graph is insightface's `VisionTransformer.forward` in eval mode, op for op as
//! `torch.onnx.export` would trace it: no token masking and no stochastic depth (training
//! only), BatchNorm with its running statistics. Linear layers on token tensors are `MatMul`
//! with the weight stored as `[in, out]` (initializer `<key>_t`) plus `Add` for the bias; the
//! head's Linear layers are `Gemm` with PyTorch's `[out, in]` weight under its state-dict key.
//!
//! Input `data`: `[N, 3, image_size, image_size]` fp32 RGB, `(pixel - 127.5) / 127.5`, with a
//! symbolic batch `N`. Output `embedding`: `[N, num_features]`, not L2-normalised.

use burn::prelude::*;
use lvface_vit::{Block, Vit, VitConfig};
use prost::Message;

use crate::error::{ExportError, Result};
use crate::graph::{float, int, ints, value_info, GraphBuilder};
use crate::proto::{GraphProto, ModelProto, OperatorSetIdProto};

/// The opset written unless asked otherwise: the first with `LayerNormalization`.
pub const DEFAULT_OPSET: i64 = 17;
/// Name of the graph input, as insightface's `torch2onnx.py` calls it.
pub const INPUT_NAME: &str = "data";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "embedding";
/// Symbolic batch dimension of the input and output.
pub const BATCH_SYMBOL: &str = "N";
/// LayerNorm epsilon of every norm of the ViT (insightface's `nn.LayerNorm` default, as
/// lvface-vit builds them; burn keeps the value private).
const LAYER_NORM_EPS: f32 = 1e-5;

/// How to write the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// ONNX opset, 17 to 21: every op used has the same semantics across that range.
    pub opset: i64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            opset: DEFAULT_OPSET,
        }
    }
}

/// The serialized ONNX model (`model.onnx` bytes) of `vit`, built with `config`.
pub fn export_onnx<B: Backend>(
    vit: &Vit<B>,
    config: &VitConfig,
    options: &ExportOptions,
) -> Result<Vec<u8>> {
    Ok(onnx_model(vit, config, options)?.encode_to_vec())
}

/// The ONNX model of `vit` as a protobuf message; see the module documentation for its graph.
pub fn onnx_model<B: Backend>(
    vit: &Vit<B>,
    config: &VitConfig,
    options: &ExportOptions,
) -> Result<ModelProto> {
    config.validate()?;
    let ir_version = match options.opset {
        17 | 18 => 8,
        19 | 20 => 9,
        21 => 10,
        other => return Err(ExportError::UnsupportedOpset(other)),
    };
    check_shapes(vit, config)?;

    let mut g = GraphBuilder::default();
    let (dim, tokens) = (config.embed_dim, config.num_patches());
    let p = config.patch_size;

    // Patch embedding: [N, 3, S, S] -> [N, D, g, g] -> [N, D, T] -> [N, T, D], + pos_embed.
    let proj = &vit.patch_embed.proj;
    let weight = g.float(
        "patch_embed.proj.weight",
        &[dim, 3, p, p],
        &values(proj.weight.val()),
    );
    let bias = proj
        .bias
        .as_ref()
        .expect("the patch embedding convolution should have a bias");
    let bias = g.float("patch_embed.proj.bias", &[dim], &values(bias.val()));
    let scope = "patch_embed";
    let x = g.node(
        scope,
        "Conv",
        &[INPUT_NAME, &weight, &bias],
        vec![
            ints("kernel_shape", &[p as i64, p as i64]),
            ints("strides", &[p as i64, p as i64]),
        ],
    );
    let shape = g.int64("shape.tokens_by_dim", &[3], &[0, dim as i64, -1]);
    let x = g.node(scope, "Reshape", &[&x, &shape], vec![]);
    let x = g.node(scope, "Transpose", &[&x], vec![ints("perm", &[0, 2, 1])]);
    let pos = g.float("pos_embed", &[1, tokens, dim], &values(vit.pos_embed.val()));
    let mut x = g.node(scope, "Add", &[&x, &pos], vec![]);

    let consts = Constants::new(&mut g, config);
    for (i, block) in vit.blocks.iter().enumerate() {
        x = block_graph(&mut g, &consts, &format!("blocks.{i}"), block, &x);
    }
    let x = layer_norm(
        &mut g,
        "norm",
        &vit.norm.gamma.val(),
        norm_beta(&vit.norm),
        &x,
    );

    // Feature head: flatten every token, Linear, BatchNorm1d, Linear, BatchNorm1d.
    let scope = "feature";
    let head = &vit.feature;
    let x = g.node(scope, "Flatten", &[&x], vec![int("axis", 1)]);
    let x = gemm(&mut g, "feature.0", head.fc0.weight.val(), &x);
    let x = batch_norm(&mut g, "feature.1", &head.bn1, &x);
    let x = gemm(&mut g, "feature.2", head.fc2.weight.val(), &x);
    let x = batch_norm(&mut g, "feature.3", &head.bn3, &x);
    // The last node writes the graph output under its public name.
    let last = g.nodes.last_mut().expect("the graph should have nodes");
    last.output = vec![OUTPUT_NAME.to_string()];
    debug_assert!(x.starts_with("feature.3/"));

    let image = config.image_size;
    let graph = GraphProto {
        node: g.nodes,
        name: "lvface_vit".into(),
        initializer: g.initializers,
        doc_string: format!(
            "insightface face ViT (width {dim}, depth {}, patch {p}), eval mode. Input: RGB NCHW \
             float32, (pixel - 127.5) / 127.5. Output: the raw {}-d embedding; compare \
             L2-normalised embeddings by cosine similarity.",
            config.depth, config.num_features
        ),
        input: vec![value_info(
            INPUT_NAME,
            &[Err(BATCH_SYMBOL), Ok(3), Ok(image), Ok(image)],
        )],
        output: vec![value_info(
            OUTPUT_NAME,
            &[Err(BATCH_SYMBOL), Ok(config.num_features)],
        )],
    };
    Ok(ModelProto {
        ir_version,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: options.opset,
        }],
        producer_name: "lvface".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: String::new(),
        graph: Some(graph),
    })
}

/// Initializers shared by every block.
struct Constants {
    /// Scalar indices 0, 1, 2 picking q, k and v.
    index: [String; 3],
    /// `head_dim ** -0.5`.
    scale: String,
    /// ReLU6's bounds.
    zero: String,
    six: String,
    /// `[0, 0, 3, heads, head_dim]` and `[0, 0, dim]` (0 copies the input's dimension).
    split_heads: String,
    merge_heads: String,
}

impl Constants {
    fn new(g: &mut GraphBuilder, config: &VitConfig) -> Self {
        let heads = config.num_heads;
        let head_dim = config.embed_dim / heads;
        Self {
            index: [0, 1, 2].map(|i| g.int64(&format!("const.index{i}"), &[], &[i])),
            scale: g.float(
                "const.attn_scale",
                &[],
                &[(head_dim as f64).powf(-0.5) as f32],
            ),
            zero: g.float("const.zero", &[], &[0.0]),
            six: g.float("const.six", &[], &[6.0]),
            split_heads: g.int64(
                "shape.split_heads",
                &[5],
                &[0, 0, 3, heads as i64, head_dim as i64],
            ),
            merge_heads: g.int64("shape.merge_heads", &[3], &[0, 0, config.embed_dim as i64]),
        }
    }
}

/// `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
fn block_graph<B: Backend>(
    g: &mut GraphBuilder,
    c: &Constants,
    scope: &str,
    block: &Block<B>,
    x: &str,
) -> String {
    // Attention, laid out [3][heads][head_dim] as insightface's qkv.
    let h = layer_norm(
        g,
        &format!("{scope}.norm1"),
        &block.norm1.gamma.val(),
        norm_beta(&block.norm1),
        x,
    );
    let attn = format!("{scope}.attn");
    let qkv = matmul(g, &format!("{attn}.qkv"), &block.attn.qkv, &h);
    let qkv = g.node(&attn, "Reshape", &[&qkv, &c.split_heads], vec![]);
    let qkv = g.node(
        &attn,
        "Transpose",
        &[&qkv],
        vec![ints("perm", &[2, 0, 3, 1, 4])],
    );
    let [q, k, v] =
        [0, 1, 2].map(|i| g.node(&attn, "Gather", &[&qkv, &c.index[i]], vec![int("axis", 0)]));
    let kt = g.node(&attn, "Transpose", &[&k], vec![ints("perm", &[0, 1, 3, 2])]);
    let scores = g.node(&attn, "MatMul", &[&q, &kt], vec![]);
    let scores = g.node(&attn, "Mul", &[&scores, &c.scale], vec![]);
    let weights = g.node(&attn, "Softmax", &[&scores], vec![int("axis", -1)]);
    let out = g.node(&attn, "MatMul", &[&weights, &v], vec![]);
    let out = g.node(
        &attn,
        "Transpose",
        &[&out],
        vec![ints("perm", &[0, 2, 1, 3])],
    );
    let out = g.node(&attn, "Reshape", &[&out, &c.merge_heads], vec![]);
    let out = matmul(g, &format!("{attn}.proj"), &block.attn.proj, &out);
    let x = g.node(scope, "Add", &[x, &out], vec![]);

    // MLP: fc1, ReLU6 (Clip to [0, 6]), fc2.
    let h = layer_norm(
        g,
        &format!("{scope}.norm2"),
        &block.norm2.gamma.val(),
        norm_beta(&block.norm2),
        &x,
    );
    let mlp = format!("{scope}.mlp");
    let h = matmul(g, &format!("{mlp}.fc1"), &block.mlp.fc1, &h);
    let h = g.node(&mlp, "Clip", &[&h, &c.zero, &c.six], vec![]);
    let h = matmul(g, &format!("{mlp}.fc2"), &block.mlp.fc2, &h);
    g.node(scope, "Add", &[&x, &h], vec![])
}

/// A Linear layer on `[N, T, in]`: `MatMul` with the `[in, out]` weight `<key>.weight_t`, then
/// `Add` of the bias when the layer has one.
fn matmul<B: Backend>(
    g: &mut GraphBuilder,
    key: &str,
    linear: &burn::nn::Linear<B>,
    x: &str,
) -> String {
    let weight = linear.weight.val();
    let dims = weight.dims();
    let w = g.float(&format!("{key}.weight_t"), &dims, &values(weight));
    let y = g.node(key, "MatMul", &[x, &w], vec![]);
    match &linear.bias {
        Some(bias) => {
            let b = g.float(&format!("{key}.bias"), &[dims[1]], &values(bias.val()));
            g.node(key, "Add", &[&y, &b], vec![])
        }
        None => y,
    }
}

/// A bias-free Linear layer on `[N, in]`: `Gemm` with PyTorch's `[out, in]` weight, `transB`.
fn gemm<B: Backend>(g: &mut GraphBuilder, key: &str, weight: Tensor<B, 2>, x: &str) -> String {
    let weight = weight.transpose();
    let dims = weight.dims();
    let w = g.float(&format!("{key}.weight"), &dims, &values(weight));
    g.node(key, "Gemm", &[x, &w], vec![int("transB", 1)])
}

fn layer_norm<B: Backend>(
    g: &mut GraphBuilder,
    key: &str,
    gamma: &Tensor<B, 1>,
    beta: Tensor<B, 1>,
    x: &str,
) -> String {
    let dims = gamma.dims();
    let w = g.float(&format!("{key}.weight"), &dims, &values(gamma.clone()));
    let b = g.float(&format!("{key}.bias"), &dims, &values(beta));
    g.node(
        key,
        "LayerNormalization",
        &[x, &w, &b],
        vec![int("axis", -1), float("epsilon", LAYER_NORM_EPS)],
    )
}

fn norm_beta<B: Backend>(norm: &burn::nn::LayerNorm<B>) -> Tensor<B, 1> {
    match &norm.beta {
        Some(beta) => beta.val(),
        None => norm.gamma.val().zeros_like(),
    }
}

/// BatchNorm1d in eval mode: the running statistics, insightface's eps (2e-5).
fn batch_norm<B: Backend>(
    g: &mut GraphBuilder,
    key: &str,
    bn: &burn::nn::BatchNorm<B>,
    x: &str,
) -> String {
    let dims = bn.gamma.val().dims();
    let scale = g.float(&format!("{key}.weight"), &dims, &values(bn.gamma.val()));
    let bias = g.float(&format!("{key}.bias"), &dims, &values(bn.beta.val()));
    let mean = g.float(
        &format!("{key}.running_mean"),
        &dims,
        &values(bn.running_mean.value()),
    );
    let var = g.float(
        &format!("{key}.running_var"),
        &dims,
        &values(bn.running_var.value()),
    );
    g.node(
        key,
        "BatchNormalization",
        &[x, &scale, &bias, &mean, &var],
        vec![float("epsilon", bn.epsilon as f32)],
    )
}

/// The model must have the shapes the graph is written for.
fn check_shapes<B: Backend>(vit: &Vit<B>, config: &VitConfig) -> Result<()> {
    let mismatch = |what: &str, model: String, config: String| {
        Err(ExportError::ModelMismatch(format!(
            "{what}: the model has {model}, the configuration says {config}"
        )))
    };
    let pos = vit.pos_embed.val().dims();
    let want = [1, config.num_patches(), config.embed_dim];
    if pos != want {
        return mismatch("pos_embed", format!("{pos:?}"), format!("{want:?}"));
    }
    if vit.blocks.len() != config.depth {
        return mismatch(
            "depth",
            vit.blocks.len().to_string(),
            config.depth.to_string(),
        );
    }
    let patch = vit.patch_embed.proj.weight.val().dims();
    if patch[2] != config.patch_size {
        return mismatch(
            "patch size",
            patch[2].to_string(),
            config.patch_size.to_string(),
        );
    }
    for block in &vit.blocks {
        if block.attn.num_heads != config.num_heads {
            return mismatch(
                "num_heads",
                block.attn.num_heads.to_string(),
                config.num_heads.to_string(),
            );
        }
    }
    let features = vit.feature.bn3.gamma.val().dims()[0];
    if features != config.num_features {
        return mismatch(
            "num_features",
            features.to_string(),
            config.num_features.to_string(),
        );
    }
    Ok(())
}

fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("converted tensor data should read back as f32")
}
