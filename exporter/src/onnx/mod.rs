//! Building ONNX graphs: the recorder backend and the model file around it.

pub mod model;
pub mod recorder;

/// The ONNX protobuf messages, generated at build time from proto/onnx.proto.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use proto::{attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, TensorProto};

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v.to_vec(), ..Default::default() }
}
pub(crate) fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(v), ..Default::default() }
}
pub(crate) fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A float tensor, stored as float32 or float16 raw little-endian data.
pub fn float_tensor(name: &str, dims: &[usize], data: &[f32], fp16: bool) -> TensorProto {
    let raw: Vec<u8> = if fp16 {
        data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()
    } else {
        data.iter().flat_map(|v| v.to_le_bytes()).collect()
    };
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(if fp16 { DataType::Float16 } else { DataType::Float } as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

pub fn int64_tensor(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}
