//! `exporter triton`: a Triton Inference Server model repository for a `.onnx` of the
//! contract (inputs `sample`, `timestep`[, `class_labels`], output `noise_pred`, metadata
//! `unet_config`, `scheduler_config`[, `guidance_config`]).
//!
//! Layout: `REPO/NAME/config.pbtxt` and `REPO/NAME/1/model.onnx` (and `1/model.py` for the
//! Python backend). The config is built as Triton's own `ModelConfig` message (the types
//! generated from the tritonclient wheel's descriptors, see ddpm-runtime's `triton`
//! feature) and printed in protobuf text format by prost-reflect against the same schema;
//! the text is parsed back against the schema and compared before anything is written.
//! The model's configs travel as the config's parameters, so that a client reads the
//! schedule from the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ddpm_runtime::onnx::signature::{ModelSignature, TensorSpec};
use ddpm_runtime::triton::proto::{
    self, model_instance_group, model_optimization_policy, DataType, ModelConfig, ModelDynamicBatching, ModelInput, ModelInstanceGroup,
    ModelOptimizationPolicy, ModelOutput, ModelParameter, ModelTensorReshape,
};
use ddpm_runtime::triton::FILE_DESCRIPTOR_SET;
use ort::value::TensorElementType;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::error::ExportError;
use crate::onnx::proto::{tensor_shape_proto::dimension, type_proto, ModelProto};

/// The Python-backend model that serves `model.onnx` through onnxruntime.
pub const PYTHON_MODEL: &str = include_str!("model.py");

ddpm_runtime::named_enum! {
    /// Which Triton backend runs the model.
    pub enum Backend {
        /// Triton's onnxruntime backend (`onnxruntime_onnx`): CPU or GPU, TensorRT on request.
        OnnxRuntime => "onnxruntime",
        /// Triton's Python backend running onnxruntime (CPU-only Triton builds, e.g. PyPI's).
        Python => "python",
    }
}

ddpm_runtime::named_enum! {
    /// Where instances run.
    pub enum InstanceKind {
        /// GPU where the server has one, else CPU (Triton's KIND_AUTO).
        Auto => "auto",
        Cpu => "cpu",
        Gpu => "gpu",
    }
}

ddpm_runtime::named_enum! {
    /// The TensorRT execution accelerator's precision (onnxruntime backend on a GPU).
    pub enum TrtPrecision {
        Fp32 => "fp32",
        Fp16 => "fp16",
    }
}

/// Flag values by name (`exporter triton`'s parsers).
macro_rules! from_str_by_name {
    ($($t:ty),*) => {$(
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::from_name(s).ok_or_else(|| format!("found {s:?}, expected {}", Self::expected()))
            }
        }
    )*};
}
from_str_by_name!(Backend, InstanceKind, TrtPrecision);

/// TensorRT through onnxruntime's TensorRT execution provider inside Triton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRt {
    pub precision: TrtPrecision,
    /// Builder workspace in MiB.
    pub workspace_mib: u64,
    /// Where built engines are kept across restarts (a path on the server).
    pub engine_cache: Option<PathBuf>,
}

/// What `exporter triton` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct TritonOptions {
    pub name: String,
    pub backend: Backend,
    /// The largest batch of one (merged) request.
    pub max_batch_size: u32,
    /// Batch sizes the dynamic batcher aims for (empty: any up to max_batch_size).
    pub preferred_batch_sizes: Vec<u32>,
    /// How long a request may wait for others to merge with, in microseconds.
    pub max_queue_delay_us: u64,
    pub instance_kind: InstanceKind,
    pub instance_count: u32,
    /// Intra-op threads of each instance's onnxruntime session (0: onnxruntime's default).
    pub threads: u32,
    pub tensorrt: Option<TensorRt>,
}

impl TritonOptions {
    /// Defaults for a model called `name`: onnxruntime backend, batches up to 64, a 200 us
    /// queue delay, one instance where Triton picks.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            backend: Backend::OnnxRuntime,
            max_batch_size: 64,
            preferred_batch_sizes: Vec::new(),
            max_queue_delay_us: 200,
            instance_kind: InstanceKind::Auto,
            instance_count: 1,
            threads: 0,
            tensorrt: None,
        }
    }
}

/// The graph's inputs and outputs and its metadata, read from the file's protobuf.
struct OnnxFile {
    bytes: Vec<u8>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    metadata: HashMap<String, String>,
}

fn element_type(t: i32) -> Option<TensorElementType> {
    use crate::onnx::proto::tensor_proto::DataType as D;
    match D::try_from(t).ok()? {
        D::Float => Some(TensorElementType::Float32),
        D::Float16 => Some(TensorElementType::Float16),
        D::Double => Some(TensorElementType::Float64),
        D::Int64 => Some(TensorElementType::Int64),
        D::Int32 => Some(TensorElementType::Int32),
        _ => None,
    }
}

fn read_onnx(path: &Path) -> Result<OnnxFile, ExportError> {
    let bad = |msg: String| ExportError::Usage(format!("{}: {msg}", path.display()));
    let bytes = ddpm_io::files::read_regular_file(path, 2 << 30, "the .onnx model")?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let graph = model.graph.as_ref().ok_or_else(|| bad("not an ONNX model: no graph".into()))?;
    let initializers: std::collections::HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let spec = |v: &crate::onnx::proto::ValueInfoProto| -> Result<TensorSpec, ExportError> {
        let name = v.name.clone().unwrap_or_default();
        let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(bad(format!("`{name}` is not a tensor")));
        };
        let elem = t.elem_type.and_then(element_type);
        let mut shape = Vec::new();
        let mut symbols = Vec::new();
        for d in t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default() {
            match &d.value {
                Some(dimension::Value::DimValue(v)) => {
                    shape.push(*v);
                    symbols.push(String::new());
                }
                Some(dimension::Value::DimParam(p)) => {
                    shape.push(-1);
                    symbols.push(p.clone());
                }
                None => {
                    shape.push(-1);
                    symbols.push(String::new());
                }
            }
        }
        Ok(TensorSpec { name, elem, shape, symbols })
    };
    let inputs =
        graph.input.iter().filter(|i| !initializers.contains(i.name.as_deref().unwrap_or_default())).map(spec).collect::<Result<_, _>>()?;
    let outputs = graph.output.iter().map(spec).collect::<Result<_, _>>()?;
    let metadata = model.metadata_props.iter().filter_map(|p| Some((p.key.clone()?, p.value.clone()?))).collect();
    Ok(OnnxFile { bytes, inputs, outputs, metadata })
}

fn data_type(elem: Option<TensorElementType>, name: &str, onnx: &Path) -> Result<DataType, ExportError> {
    match elem {
        Some(TensorElementType::Float32) => Ok(DataType::TypeFp32),
        Some(TensorElementType::Int64) => Ok(DataType::TypeInt64),
        Some(TensorElementType::Int32) => Ok(DataType::TypeInt32),
        other => Err(ExportError::Usage(format!("{}: tensor `{name}` is {other:?}, expected float32, int64 or int32", onnx.display()))),
    }
}

/// The dims after the batch dimension, and the reshape for a tensor of shape [B] (Triton
/// wants at least one dim after the batch: [1], reshaped to [] for the model).
fn batched_dims(t: &TensorSpec, onnx: &Path) -> Result<(Vec<i64>, Option<ModelTensorReshape>), ExportError> {
    match t.shape.split_first() {
        Some((&b, rest)) if b < 0 => {
            if rest.is_empty() {
                Ok((vec![1], Some(ModelTensorReshape { shape: vec![] })))
            } else {
                Ok((rest.to_vec(), None))
            }
        }
        _ => Err(ExportError::Usage(format!(
            "{}: tensor `{}` has shape {:?}, expected a dynamic batch dimension first (Triton batches along it)",
            onnx.display(),
            t.name,
            t.shape
        ))),
    }
}

/// The `ModelConfig` of the repository, checked against the .onnx contract.
pub fn model_config(onnx: &Path, options: &TritonOptions) -> Result<(ModelConfig, Vec<u8>), ExportError> {
    let file = read_onnx(onnx)?;
    let signature = ModelSignature::from_parts(&file.inputs, &file.outputs, |k| file.metadata.get(k).cloned(), onnx)?;
    if signature.fused {
        return Err(ExportError::Usage(format!(
            "{}: a fused-step graph (inputs coefficients, noise); export the plain graph (without --fused-step) for Triton",
            onnx.display()
        )));
    }
    if signature.scheduler_config.is_none() {
        return Err(ExportError::Usage(format!(
            "{}: no metadata scheduler_config; expected a .onnx written by `exporter onnx` (the client reads the schedule from the server)",
            onnx.display()
        )));
    }
    if options.max_batch_size == 0 {
        return Err(ExportError::Usage("--max-batch-size 0: expected at least 1".into()));
    }
    if options.instance_count == 0 {
        return Err(ExportError::Usage("--instance-count 0: expected at least 1".into()));
    }
    if let Some(p) = options.preferred_batch_sizes.iter().find(|&&p| p == 0 || p > options.max_batch_size) {
        return Err(ExportError::Usage(format!(
            "--preferred-batch-size {p}: expected 1 ..= --max-batch-size ({})",
            options.max_batch_size
        )));
    }
    if options.name.is_empty()
        || !options.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || options.name.starts_with('.')
    {
        return Err(ExportError::Usage(format!("--name {:?}: expected letters, digits, '_', '-' or '.' (a folder name)", options.name)));
    }
    // (name, data type, dims after the batch, reshape) of each tensor.
    let tensor = |t: &TensorSpec| -> Result<(String, i32, Vec<i64>, Option<ModelTensorReshape>), ExportError> {
        let (dims, reshape) = batched_dims(t, onnx)?;
        Ok((t.name.clone(), data_type(t.elem, &t.name, onnx)? as i32, dims, reshape))
    };
    let input = file
        .inputs
        .iter()
        .map(|t| tensor(t).map(|(name, data_type, dims, reshape)| ModelInput { name, data_type, dims, reshape, ..Default::default() }))
        .collect::<Result<Vec<_>, _>>()?;
    let output = file
        .outputs
        .iter()
        .map(|t| tensor(t).map(|(name, data_type, dims, reshape)| ModelOutput { name, data_type, dims, reshape, ..Default::default() }))
        .collect::<Result<Vec<_>, _>>()?;
    let mut parameters = HashMap::new();
    let mut param = |k: &str, v: String| {
        parameters.insert(k.to_string(), ModelParameter { string_value: v });
    };
    for key in ["unet_config", "scheduler_config", "guidance_config"] {
        if let Some(v) = file.metadata.get(key) {
            param(key, v.clone());
        }
    }
    let kind = match (options.backend, options.instance_kind) {
        (Backend::Python, InstanceKind::Gpu) => {
            return Err(ExportError::Usage(
                "--instance-kind gpu: the Python backend's model runs onnxruntime on the CPU; use --backend onnxruntime for GPUs".into(),
            ))
        }
        (Backend::Python, _) | (_, InstanceKind::Cpu) => model_instance_group::Kind::Cpu,
        (_, InstanceKind::Gpu) => model_instance_group::Kind::Gpu,
        (_, InstanceKind::Auto) => model_instance_group::Kind::Auto,
    };
    let mut optimization = None;
    match options.backend {
        Backend::Python => {
            param("intra_op_threads", options.threads.to_string());
            if options.tensorrt.is_some() {
                return Err(ExportError::Usage("--tensorrt: only with --backend onnxruntime (on a GPU)".into()));
            }
        }
        Backend::OnnxRuntime => {
            if options.threads > 0 {
                param("intra_op_thread_count", options.threads.to_string());
            }
            if let Some(trt) = &options.tensorrt {
                if kind == model_instance_group::Kind::Cpu {
                    return Err(ExportError::Usage("--tensorrt: runs on GPUs; not with --instance-kind cpu".into()));
                }
                let mut p = HashMap::new();
                p.insert("precision_mode".to_string(), if trt.precision == TrtPrecision::Fp16 { "FP16" } else { "FP32" }.to_string());
                p.insert("max_workspace_size_bytes".to_string(), (trt.workspace_mib << 20).to_string());
                if let Some(dir) = &trt.engine_cache {
                    p.insert("trt_engine_cache_enable".to_string(), "true".to_string());
                    p.insert("trt_engine_cache_path".to_string(), dir.display().to_string());
                }
                optimization = Some(ModelOptimizationPolicy {
                    execution_accelerators: Some(model_optimization_policy::ExecutionAccelerators {
                        gpu_execution_accelerator: vec![model_optimization_policy::execution_accelerators::Accelerator {
                            name: "tensorrt".into(),
                            parameters: p,
                        }],
                        cpu_execution_accelerator: vec![],
                    }),
                    ..Default::default()
                });
            }
        }
    }
    let config = ModelConfig {
        name: options.name.clone(),
        backend: match options.backend {
            Backend::OnnxRuntime => "onnxruntime",
            Backend::Python => "python",
        }
        .into(),
        platform: if options.backend == Backend::OnnxRuntime { "onnxruntime_onnx".into() } else { String::new() },
        default_model_filename: if options.backend == Backend::OnnxRuntime { "model.onnx".into() } else { String::new() },
        max_batch_size: i32::try_from(options.max_batch_size).map_err(|_| ExportError::Usage("--max-batch-size: too large".into()))?,
        input,
        output,
        instance_group: vec![ModelInstanceGroup {
            kind: kind as i32,
            count: i32::try_from(options.instance_count).map_err(|_| ExportError::Usage("--instance-count: too large".into()))?,
            ..Default::default()
        }],
        scheduling_choice: Some(proto::model_config::SchedulingChoice::DynamicBatching(ModelDynamicBatching {
            preferred_batch_size: options.preferred_batch_sizes.iter().map(|&p| p as i32).collect(),
            max_queue_delay_microseconds: options.max_queue_delay_us,
            ..Default::default()
        })),
        optimization,
        parameters,
        ..Default::default()
    };
    Ok((config, file.bytes))
}

/// `config` in protobuf text format, printed against Triton's schema and parsed back.
pub fn config_text(config: &ModelConfig) -> Result<String, ExportError> {
    let internal = |m: String| ExportError::Internal(format!("config.pbtxt: {m}"));
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| internal(format!("the protocol's descriptors: {e}")))?;
    let desc =
        pool.get_message_by_name("inference.ModelConfig").ok_or_else(|| internal("no inference.ModelConfig in the schema".into()))?;
    let message = DynamicMessage::decode(desc.clone(), config.encode_to_vec().as_slice()).map_err(|e| internal(e.to_string()))?;
    let text = message.to_text_format_with_options(&prost_reflect::text_format::FormatOptions::new().pretty(true));
    let parsed =
        DynamicMessage::parse_text_format(desc, &text).map_err(|e| internal(format!("does not parse against Triton's schema: {e}")))?;
    let back = ModelConfig::decode(parsed.encode_to_vec().as_slice()).map_err(|e| internal(e.to_string()))?;
    if &back != config {
        return Err(internal("does not read back as the config written".into()));
    }
    Ok(text + "\n")
}

/// Writes `REPO/NAME/config.pbtxt`, `REPO/NAME/1/model.onnx` (and `1/model.py`); the model
/// folder appears whole (built under a temporary name, then renamed) and an existing one
/// is replaced only after the new one is complete. Returns the model folder.
pub fn write_repository(onnx: &Path, repo: &Path, options: &TritonOptions) -> Result<PathBuf, ExportError> {
    let (config, bytes) = model_config(onnx, options)?;
    let text = config_text(&config)?;
    if repo.exists() && !repo.is_dir() {
        return Err(ExportError::Usage(format!("--repo {}: is a file, expected a folder (the model repository)", repo.display())));
    }
    if !repo.is_dir() {
        std::fs::create_dir_all(repo).map_err(|e| ExportError::Usage(format!("--repo {}: {e}", repo.display())))?;
    }
    let dir = repo.join(&options.name);
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.", options.name))
        .tempdir_in(repo)
        .map_err(|e| ExportError::Usage(format!("--repo {}: {e}", repo.display())))?;
    let io = |p: &Path, e: std::io::Error| ExportError::Usage(format!("{}: {e}", p.display()));
    let version = staging.path().join("1");
    std::fs::create_dir(&version).map_err(|e| io(&version, e))?;
    std::fs::write(staging.path().join("config.pbtxt"), &text).map_err(|e| io(&staging.path().join("config.pbtxt"), e))?;
    std::fs::write(version.join("model.onnx"), &bytes).map_err(|e| io(&version.join("model.onnx"), e))?;
    if options.backend == Backend::Python {
        std::fs::write(version.join("model.py"), PYTHON_MODEL).map_err(|e| io(&version.join("model.py"), e))?;
    }
    let staged = staging.keep();
    // Make the folder readable as a normal folder (tempdir creates it 0700).
    ddpm_io::files::set_mode(&staged, 0o755).map_err(|e| ExportError::Usage(format!("{}: {e}", staged.display())))?;
    if dir.exists() {
        let old = repo.join(format!(".{}.old.{}", options.name, std::process::id()));
        std::fs::rename(&dir, &old).map_err(|e| io(&dir, e))?;
        std::fs::rename(&staged, &dir).map_err(|e| io(&dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staged, &dir).map_err(|e| io(&dir, e))?;
    }
    Ok(dir)
}
