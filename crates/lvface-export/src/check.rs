//! [`check_mfr`]: the structural rules of insightface's MFR checker
//! (`challenges/mfr/onnx_helper.py`, `ArcFaceORT.check`), on the model bytes.
//!
//! The checker also runs a batch of 32 and rejects NaN or Inf, and times the model; both need a
//! runtime, so lvface checks them in its tests (tract-onnx) and in the opt-in onnxruntime script
//! (`crates/lvface-export/tests/reference/check_onnx.py`), not here.

use prost::Message;

use crate::error::{ExportError, Result};
use crate::proto::{DimensionValue, ModelProto, ValueInfoProto};

/// The limits of one MFR track that can be checked without running the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MfrLimits {
    /// Largest model file, in MiB (`os.path.getsize / 1024 / 1024`).
    pub max_size_mb: f64,
    /// Largest embedding width.
    pub max_feature_dim: usize,
}

impl MfrLimits {
    /// The checker's default track ("cfat"), also ms1m's: 1024 MB, 512-d.
    pub const CFAT: Self = Self {
        max_size_mb: 1024.0,
        max_feature_dim: 512,
    };
    /// The glint and unconstrained tracks: 1024 MB, 1024-d.
    pub const UNCONSTRAINED: Self = Self {
        max_size_mb: 1024.0,
        max_feature_dim: 1024,
    };
}

/// What the checker sees in a model that passes.
#[derive(Debug, Clone, PartialEq)]
pub struct MfrReport {
    /// Size of the serialized model in bytes.
    pub size_bytes: usize,
    /// Graph nodes (the checker wants at least 8).
    pub nodes: usize,
    /// Initializers (weights and shape constants).
    pub initializers: usize,
    /// Elements of all initializers.
    pub initializer_elements: usize,
    /// The input shape; `None` for a symbolic dimension.
    pub input_shape: Vec<Option<i64>>,
    /// Width of the embedding.
    pub feature_dim: usize,
    /// Whether the checker would think the model normalises its own input (a `Sub`/`_minus` and
    /// a `Mul`/`_mul`/`Div` among the names of the first 8 nodes) and feed it raw pixels; when
    /// false it feeds `(pixel - 127.5) / 127.5`, which is what an lvface graph expects.
    pub normalizes_itself: bool,
}

/// Checks `bytes` against the MFR checker's structural rules under `limits`: exactly one 4-D
/// input of `[*, 3, 112, 112]`, exactly one 2-D output no wider than the track allows, at least
/// 8 nodes, no initializer with elements narrower than 4 bytes (fp16 weights are refused), and
/// the size limit. Every broken rule is listed in the error.
pub fn check_mfr(bytes: &[u8], limits: &MfrLimits) -> Result<MfrReport> {
    let model = ModelProto::decode(bytes).map_err(|e| ExportError::NotOnnx(e.to_string()))?;
    let graph = model
        .graph
        .ok_or_else(|| ExportError::NotOnnx("the model has no graph".into()))?;
    let mut broken = Vec::new();

    let size_mb = bytes.len() as f64 / (1024.0 * 1024.0);
    if size_mb > limits.max_size_mb {
        broken.push(format!(
            "size {size_mb:.1} MB exceeds {} MB",
            limits.max_size_mb
        ));
    }
    // Graph inputs may list initializers too (IR < 4); the checker feeds the first real one.
    let initializer_names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializer_names.contains(&i.name.as_str()))
        .collect();
    let input_shape = inputs.first().map(|i| shape(i)).unwrap_or_default();
    if inputs.len() != 1 {
        broken.push(format!("{} inputs, expected 1", inputs.len()));
    }
    if input_shape.len() != 4 {
        broken.push(format!("input is {}-D, expected 4-D", input_shape.len()));
    } else if input_shape[1..] != [Some(3), Some(112), Some(112)] {
        broken.push(format!(
            "input shape {}, expected [*, 3, 112, 112]",
            show(&input_shape)
        ));
    }
    if graph.output.len() != 1 {
        broken.push(format!("{} outputs, expected 1", graph.output.len()));
    }
    let output_shape = graph.output.first().map(shape).unwrap_or_default();
    let feature_dim = match output_shape.as_slice() {
        [_, Some(dim)] => *dim as usize,
        _ => {
            broken.push(format!(
                "output shape {}, expected [*, features]",
                show(&output_shape)
            ));
            0
        }
    };
    if feature_dim > limits.max_feature_dim {
        broken.push(format!(
            "{feature_dim}-d feature exceeds {}",
            limits.max_feature_dim
        ));
    }
    if graph.node.len() < 8 {
        broken.push(format!("{} nodes, expected at least 8", graph.node.len()));
    }
    for tensor in &graph.initializer {
        if tensor.element_size() < 4 {
            broken.push(format!(
                "initializer {} has data type {} with elements under 4 bytes (fp16 weights are refused)",
                tensor.name, tensor.data_type
            ));
        }
    }
    if !broken.is_empty() {
        return Err(ExportError::MfrRules(broken.join("\n")));
    }

    let first = &graph.node[..8.min(graph.node.len())];
    let named = |prefixes: &[&str]| {
        first
            .iter()
            .any(|n| prefixes.iter().any(|p| n.name.starts_with(p)))
    };
    Ok(MfrReport {
        size_bytes: bytes.len(),
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        initializer_elements: graph
            .initializer
            .iter()
            .map(|t| t.dims.iter().product::<i64>() as usize)
            .sum(),
        input_shape,
        feature_dim,
        normalizes_itself: named(&["Sub", "_minus"]) && named(&["Mul", "_mul", "Div"]),
    })
}

fn shape(info: &ValueInfoProto) -> Vec<Option<i64>> {
    let dims = info
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.as_slice())
        .unwrap_or_default();
    dims.iter()
        .map(|d| match d.value {
            Some(DimensionValue::DimValue(v)) => Some(v),
            _ => None,
        })
        .collect()
}

fn show(shape: &[Option<i64>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or("*".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{value_info, GraphBuilder};
    use crate::proto::{GraphProto, TensorProto};

    /// A graph of `nodes` Identity nodes with the given input and output shapes.
    fn model(
        nodes: usize,
        input: &[std::result::Result<usize, &str>],
        outputs: usize,
    ) -> ModelProto {
        let mut g = GraphBuilder::default();
        let mut x = "data".to_string();
        for _ in 0..nodes {
            x = g.node("n", "Identity", &[&x], vec![]);
        }
        g.float("w", &[2], &[1.0, 2.0]);
        ModelProto {
            graph: Some(GraphProto {
                node: g.nodes,
                initializer: g.initializers,
                input: vec![value_info("data", input)],
                output: (0..outputs)
                    .map(|i| value_info(&format!("out{i}"), &[Err("N"), Ok(512)]))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const GOOD: [std::result::Result<usize, &str>; 4] = [Err("N"), Ok(3), Ok(112), Ok(112)];

    #[test]
    fn a_conforming_model_passes() {
        let bytes = model(8, &GOOD, 1).encode_to_vec();
        let report = check_mfr(&bytes, &MfrLimits::CFAT).unwrap();
        assert_eq!(report.nodes, 8);
        assert_eq!(report.feature_dim, 512);
        assert_eq!(report.input_shape, [None, Some(3), Some(112), Some(112)]);
        assert!(!report.normalizes_itself);
    }

    #[test]
    fn each_rule_is_reported() {
        let check = |m: ModelProto, limits: &MfrLimits| {
            check_mfr(&m.encode_to_vec(), limits)
                .unwrap_err()
                .to_string()
        };
        assert!(check(model(7, &GOOD, 1), &MfrLimits::CFAT).contains("7 nodes"));
        assert!(check(model(8, &GOOD, 2), &MfrLimits::CFAT).contains("2 outputs"));
        let wrong = [Err("N"), Ok(3), Ok(128), Ok(128)];
        assert!(check(model(8, &wrong, 1), &MfrLimits::CFAT).contains("[*, 3, 128, 128]"));
        let narrow = MfrLimits {
            max_feature_dim: 256,
            ..MfrLimits::CFAT
        };
        assert!(check(model(8, &GOOD, 1), &narrow).contains("512-d"));

        let mut half = model(8, &GOOD, 1);
        half.graph.as_mut().unwrap().initializer.push(TensorProto {
            name: "w16".into(),
            dims: vec![1],
            data_type: 10, // FLOAT16
            raw_data: vec![0, 0],
            ..Default::default()
        });
        assert!(check(half, &MfrLimits::CFAT).contains("w16"));
        assert!(matches!(
            check_mfr(b"\xff\xff\xff", &MfrLimits::CFAT),
            Err(ExportError::NotOnnx(_))
        ));
    }
}
