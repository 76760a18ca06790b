//! The .onnx file of the project's contract: inputs `sample` float32 [B, C, H, W],
//! `timestep` int64 [B], optional `class_labels` int64 [B]; output `noise_pred`; dynamic
//! batch; metadata `unet_config` and `scheduler_config`.

use ddpm_models::{UNet2DModel, UNetConfig, Weights};
use ddpm_runtime::onnx::signature::GuidanceConfig;
use ddpm_runtime::SchedulerConfig;
use prost::Message;

use super::proto::{
    tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim, tensor_shape_proto::Dimension, type_proto, GraphProto, ModelProto,
    OperatorSetIdProto, StringStringEntryProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
pub use super::recorder::ExportPrecision;
use super::recorder::{Recorder, Value};
use crate::error::{ExportError, Result};

/// Export options.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// ONNX opset (17 to 21).
    pub opset: i64,
    /// How the weights are stored and the network computes (inputs and outputs stay
    /// float32).
    pub precision: ExportPrecision,
    /// Also apply one sampler update inside the graph (see [`FUSED_STEP_DOC`]).
    pub fused_step: bool,
    /// Metadata `guidance_config` (a model trained with label dropout).
    pub guidance: Option<GuidanceConfig>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { opset: 17, precision: ExportPrecision::Fp32, fused_step: false, guidance: None }
    }
}

/// The contract of a graph exported with `--fused-step`: one [`ddpm_runtime::sampler::AffineStep`]
/// after the network, its nine coefficients in the order of
/// [`AffineStep::LAYOUT`](ddpm_runtime::sampler::AffineStep::LAYOUT).
pub const FUSED_STEP_DOC: &str = "extra inputs `coefficients` float32 [9] (a DDIM or DDPM update, see ddpm_runtime::sampler::AffineStep) \
and `noise` float32 [B, C, H, W]; extra outputs `prev_sample` = prev[0] * clamp(x0, -clip, clip) + prev[1] * eps + prev[2] * x + prev[3] * noise \
and `pred_original_sample` = clamp(x0, -clip, clip), where x0 = x0[0] * x + x0[1] * out, eps = eps[0] * x + eps[1] * out, \
x = sample, out = noise_pred, coefficients = [x0[0], x0[1], eps[0], eps[1], prev[0], prev[1], prev[2], prev[3], clip]";

/// A tensor input or output of a graph; `None` dimensions are the dynamic `batch`.
pub fn value_info(name: &str, elem: DataType, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = |d: &Option<usize>| Dimension {
        value: Some(match d {
            Some(n) => Dim::DimValue(*n as i64),
            None => Dim::DimParam("batch".into()),
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim: dims.iter().map(dim).collect() }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Records the U-Net as an ONNX model and serializes it.
pub fn export_model(config: &UNetConfig, weights: &Weights, scheduler: &SchedulerConfig, options: &ExportOptions) -> Result<Vec<u8>> {
    let scheduler_json = scheduler.to_json_string("DDPMScheduler");
    if !(17..=21).contains(&options.opset) {
        return Err(ExportError::Usage(format!("--opset {}: expected 17 to 21", options.opset)));
    }
    let (h, w) = config
        .sample_size
        .ok_or_else(|| ExportError::Usage("config key `sample_size` is missing: the .onnx needs the sample's height and width".into()))?;
    let model = UNet2DModel::new(config.clone())?;
    let mut rec = Recorder::new(weights, options.precision);
    let sample_dims = [None, Some(config.in_channels), Some(h), Some(w)];
    let sample = rec.cast_to_graph_float(&Value::new("sample", &sample_dims, DataType::Float));
    let timestep = Value::new("timestep", &[None], DataType::Int64);
    let labels = config.num_class_embeds.map(|_| Value::new("class_labels", &[None], DataType::Int64));
    let out = model.forward(&mut rec, &sample, &timestep, labels.as_ref())?;
    let out = rec.cast_to_f32(&out);
    name_output(&mut rec, out.name, "noise_pred");

    let mut inputs = vec![
        value_info("sample", DataType::Float, &[None, Some(config.in_channels), Some(h), Some(w)]),
        value_info("timestep", DataType::Int64, &[None]),
    ];
    if labels.is_some() {
        inputs.push(value_info("class_labels", DataType::Int64, &[None]));
    }
    let mut outputs = vec![value_info("noise_pred", DataType::Float, &[None, Some(config.out_channels), Some(h), Some(w)])];
    if options.fused_step {
        if config.out_channels != config.in_channels {
            return Err(ExportError::Usage(format!(
                "--fused-step: the network predicts {} channels for {} (a learned variance); the fused update needs out_channels = in_channels",
                config.out_channels, config.in_channels
            )));
        }
        fused_step(&mut rec, "sample", "noise_pred");
        let dims = [None, Some(config.in_channels), Some(h), Some(w)];
        inputs.push(value_info("coefficients", DataType::Float, &[Some(9)]));
        inputs.push(value_info("noise", DataType::Float, &dims));
        outputs.push(value_info("prev_sample", DataType::Float, &dims));
        outputs.push(value_info("pred_original_sample", DataType::Float, &dims));
    }
    let mut metadata = vec![("unet_config", config.to_json().to_string()), ("scheduler_config", scheduler_json)];
    if let Some(g) = &options.guidance {
        metadata.push(("guidance_config", serde_json::to_string(g).unwrap_or_default()));
    }
    Ok(model_bytes(
        rec,
        "unet2d",
        inputs,
        outputs,
        options.opset,
        "DDPM U-Net (diffusers UNet2DModel layout): noise_pred = eps_theta(sample, timestep[, class_labels])",
        &metadata.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
    ))
}

/// Gives a recorded value a graph-output name (an Identity node).
fn name_output(rec: &mut Recorder<'_>, from: impl Into<String>, to: &str) {
    rec.nodes.push(super::proto::NodeProto {
        op_type: Some("Identity".into()),
        name: Some(format!("{to}_node")),
        input: vec![from.into()],
        output: vec![to.into()],
        ..Default::default()
    });
}

/// The sampler update of [`FUSED_STEP_DOC`], in float32, after the network: the graph form
/// of [`ddpm_runtime::sampler::AffineStep::apply`].
fn fused_step(rec: &mut Recorder<'_>, x: &str, out: &str) {
    let c: Vec<String> = (0..9)
        .map(|i| {
            let idx = rec.int_const_pub(&[i]);
            rec.node("Gather", &["coefficients", &idx], vec![super::attr_int("axis", 0)])
        })
        .collect();
    let lin = |rec: &mut Recorder<'_>, a: &str, ca: &str, b: &str, cb: &str| {
        let l = rec.node("Mul", &[a, ca], vec![]);
        let r = rec.node("Mul", &[b, cb], vec![]);
        rec.node("Add", &[&l, &r], vec![])
    };
    let x0 = lin(rec, x, &c[0], out, &c[1]);
    let eps = lin(rec, x, &c[2], out, &c[3]);
    let neg_r = rec.node("Neg", &[&c[8]], vec![]);
    let upper = rec.node("Min", &[&x0, &c[8]], vec![]);
    let x0c = rec.node("Max", &[&upper, &neg_r], vec![]);
    let a = lin(rec, &x0c, &c[4], &eps, &c[5]);
    let b = lin(rec, x, &c[6], "noise", &c[7]);
    let prev = rec.node("Add", &[&a, &b], vec![]);
    for (from, to) in [(prev, "prev_sample"), (x0c, "pred_original_sample")] {
        name_output(rec, from, to);
    }
}

/// Serializes a recorded graph as a model file.
fn model_bytes(
    rec: Recorder<'_>,
    name: &str,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    opset: i64,
    doc: &str,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let graph = GraphProto {
        name: Some(name.into()),
        node: rec.nodes,
        initializer: rec.initializers,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    let ir_version = match opset {
        17 | 18 => 8,
        19 | 20 => 9,
        _ => 10,
    };
    let proto = ModelProto {
        ir_version: Some(ir_version),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("ddpm-rs exporter".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.into()),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k.to_string()), value: Some(v.to_string()) })
            .collect(),
        ..Default::default()
    };
    proto.encode_to_vec()
}

/// The digit classifier as ONNX: input `images` [B, C, 28, 28] in [-1, 1]; outputs
/// `logits` [B, classes] and `features` [B, 128] (the feature space of `runtime eval`).
pub fn export_classifier(classifier: &ddpm_models::classifier::DigitClassifier, weights: &Weights) -> Result<Vec<u8>> {
    let mut rec = Recorder::new(weights, ExportPrecision::Fp32);
    let c = classifier.in_channels;
    let images = Value::new("images", &[None, Some(c), Some(28), Some(28)], DataType::Float);
    let (logits, features) = classifier.forward(&mut rec, &images)?;
    for (from, to) in [(logits, "logits"), (features, "features")] {
        name_output(&mut rec, from.name, to);
    }
    let inputs = vec![value_info("images", DataType::Float, &[None, Some(c), Some(28), Some(28)])];
    let outputs = vec![
        value_info("logits", DataType::Float, &[None, Some(classifier.classes)]),
        value_info("features", DataType::Float, &[None, Some(ddpm_models::classifier::FEATURES)]),
    ];
    let meta = format!("{{\"classes\": {}, \"in_channels\": {c}, \"size\": 28}}", classifier.classes);
    Ok(model_bytes(
        rec,
        "digit_classifier",
        inputs,
        outputs,
        17,
        "ddpm-rs digit classifier: logits and features of 28x28 images in [-1, 1]",
        &[("classifier_config", &meta)],
    ))
}
