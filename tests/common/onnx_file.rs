//! Small hand-built ONNX models, shared by the integration tests and the unit tests of
//! `src/infer/native` (which include this file by path).

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension::Value};

/// A fixed dimension.
pub fn dim(v: i64) -> Dimension {
    Dimension {
        value: Some(Value::DimValue(v)),
        ..Default::default()
    }
}

/// A symbolic dimension named `name`.
pub fn dim_param(name: &str) -> Dimension {
    Dimension {
        value: Some(Value::DimParam(name.into())),
        ..Default::default()
    }
}

/// A float tensor `name` of shape `dim`, as a graph input or output.
pub fn float_value(name: &str, dim: Vec<Dimension>) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `graph` as an ONNX file's bytes (IR version 8, default opset 13).
pub fn model_bytes(graph: pb::GraphProto) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}
