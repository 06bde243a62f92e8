//! [`GraphBuilder`]: nodes and initializers appended in execution order, each value named once.

use crate::proto::{
    attribute_type, AttributeProto, Dimension, DimensionValue, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto, FLOAT, INT64,
};

/// A graph under construction: a topologically sorted node list and its fp32/int64 constants.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    /// Adds an fp32 initializer called `name` (lvface uses insightface's state-dict key) and
    /// returns its name. Values are stored as little-endian `raw_data`, as PyTorch's exporter
    /// does.
    pub(crate) fn float(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            values.len(),
            "initializer {name} should have as many values as its shape holds"
        );
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_tensor(name, dims, FLOAT, raw_data)
    }

    /// Adds an int64 initializer (shapes, indices) and returns its name.
    pub(crate) fn int64(&mut self, name: &str, dims: &[usize], values: &[i64]) -> String {
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_tensor(name, dims, INT64, raw_data)
    }

    fn push_tensor(&mut self, name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.to_string(),
            raw_data: raw,
            ..Default::default()
        });
        name.to_string()
    }

    /// Appends an `op` node reading `inputs`; its single output is named `{scope}/{op}_{n}`,
    /// with `n` the node's index, and returned.
    pub(crate) fn node(
        &mut self,
        scope: &str,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        let name = format!("{scope}/{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.clone()],
            name: name.clone(),
            op_type: op.to_string(),
            attribute: attributes,
            ..Default::default()
        });
        name
    }
}

/// An integer attribute.
pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: value,
        ..Default::default()
    }
}

/// A list-of-integers attribute.
pub(crate) fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub(crate) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: value,
        ..Default::default()
    }
}

/// A graph input or output: fp32 with `dims`, where `Err(name)` is a symbolic dimension.
pub(crate) fn value_info(name: &str, dims: &[Result<usize, &str>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Ok(size) => DimensionValue::DimValue(*size as i64),
                Err(symbol) => DimensionValue::DimParam(symbol.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}
