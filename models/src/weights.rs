//! Checkpoint weights: the `unet/` folder of diffusers (config.json and
//! diffusion_pytorch_model.safetensors), read and checked against the parameter list of
//! its config, and written back atomically.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::UNetConfig;
use crate::error::{Error, Result};
use crate::shape::parameter_list;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// One weight tensor in float32.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All weights of a U-Net by diffusers name.
pub type Weights = BTreeMap<String, Weight>;

/// diffusers' renaming of attention weights saved before its `Attention` class
/// (query/key/value/proj_attn), as the converted ddpm-cifar10-32 checkpoint has them.
fn modern_name(name: &str) -> String {
    for (old, new) in [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")] {
        if name.contains(".attentions.") && name.contains(old) {
            return name.replacen(old, new, 1);
        }
    }
    name.to_string()
}

fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let b = view.data();
    match view.dtype() {
        Dtype::F32 => Some(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        Dtype::F16 => Some(b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        Dtype::BF16 => Some(b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        Dtype::F64 => Some(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()),
        _ => None,
    }
}

/// A regular file of at most a third of the memory limit (its bytes and the float32 copy
/// must fit beside each other).
fn read_weights_file(path: &Path) -> Result<Vec<u8>> {
    let (limit, _) = ddpm_io::limits::memory_limit();
    if let Ok(m) = std::fs::metadata(path) {
        if m.is_file() {
            ddpm_io::limits::check_memory(&format!("{}: {} bytes of weights", path.display(), m.len()), m.len() as u128 * 3)?;
        }
    }
    Ok(ddpm_io::files::read_regular_file(path, limit, "safetensors weights")?)
}

/// Reads a safetensors file and checks it against the config's parameter list: every
/// tensor present, none left over, every shape right (old attention names renamed).
pub fn load_weights(path: &Path, config: &UNetConfig) -> Result<Weights> {
    let file = path.display().to_string();
    let bytes = read_weights_file(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::bad_file(path, format!("not a valid safetensors file (truncated or corrupt?): {e}")))?;
    let mut found: BTreeMap<String, TensorView<'_>> = BTreeMap::new();
    for (name, view) in st.tensors() {
        found.insert(modern_name(&name), view);
    }
    let mut weights = Weights::new();
    for (name, shape) in parameter_list(config)? {
        let view = found.remove(&name).ok_or_else(|| Error::Weight {
            file: file.clone(),
            name: name.clone(),
            msg: format!("missing (expected shape {shape:?})"),
        })?;
        if view.shape() != shape.as_slice() {
            return Err(Error::Weight { file: file.clone(), name, msg: format!("shape {:?}, expected {shape:?}", view.shape()) });
        }
        let data = to_f32(&view).ok_or_else(|| Error::Weight {
            file: file.clone(),
            name: name.clone(),
            msg: format!("dtype {:?}, expected a float type", view.dtype()),
        })?;
        if data.iter().any(|v| !v.is_finite()) {
            return Err(Error::Weight { file: file.clone(), name, msg: "contains NaN or infinite values".into() });
        }
        weights.insert(name, Weight { shape, data });
    }
    if let Some((name, view)) = found.into_iter().next() {
        return Err(Error::Weight { file, name, msg: format!("unexpected (shape {:?}): not a parameter of this config", view.shape()) });
    }
    Ok(weights)
}

/// A `unet/` folder: config and weights.
#[derive(Debug, Clone)]
pub struct UNetCheckpoint {
    pub config: UNetConfig,
    pub weights: Weights,
    pub dir: PathBuf,
}

impl UNetCheckpoint {
    /// Loads `dir/config.json` and `dir/diffusion_pytorch_model.safetensors`.
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(Error::bad_file(dir, format!("no {CONFIG_FILE}: not a diffusers unet/ folder")));
        }
        let config = UNetConfig::from_file(&config_path)?;
        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.is_file() {
            if dir.join("diffusion_pytorch_model.bin").is_file() {
                return Err(Error::bad_file(
                    dir.join("diffusion_pytorch_model.bin"),
                    "pickled PyTorch weights are not read (unsafe to unpickle); re-save with diffusers' save_pretrained(safe_serialization=True)",
                ));
            }
            return Err(Error::bad_file(&weights_path, "missing"));
        }
        let weights = load_weights(&weights_path, &config)?;
        Ok(Self { config, weights, dir: dir.to_path_buf() })
    }

    /// Writes `dir/config.json` and the safetensors weights, each atomically.
    pub fn save(dir: &Path, config: &UNetConfig, weights: &Weights) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let text = serde_json::to_string_pretty(&config.to_json()).map_err(|e| Error::Backend(e.to_string()))?;
        ddpm_io::files::write_atomically(dir.join(CONFIG_FILE), |w| w.write_all(text.as_bytes()))?;
        write_safetensors(&dir.join(WEIGHTS_FILE), weights)
    }
}

/// Writes float32 weights as a safetensors file (atomically).
pub fn write_safetensors(path: &Path, weights: &Weights) -> Result<()> {
    let bytes = serialize(weights, false)?;
    Ok(ddpm_io::files::write_atomically(path, |w| w.write_all(&bytes))?)
}

/// Writes `dir/config.json` and the weights in float16 (atomically).
pub fn save_unet_f16(dir: &Path, config: &UNetConfig, weights: &Weights) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let text = serde_json::to_string_pretty(&config.to_json()).map_err(|e| Error::Backend(e.to_string()))?;
    ddpm_io::files::write_atomically(dir.join(CONFIG_FILE), |w| w.write_all(text.as_bytes()))?;
    let bytes = serialize(weights, true)?;
    Ok(ddpm_io::files::write_atomically(dir.join(WEIGHTS_FILE), |w| w.write_all(&bytes))?)
}

/// The safetensors bytes of `weights`, in float16 or float32.
fn serialize(weights: &Weights, f16: bool) -> Result<Vec<u8>> {
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .iter()
        .map(|(n, w)| {
            let bytes = if f16 {
                w.data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()
            } else {
                w.data.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            (n.clone(), bytes, w.shape.clone())
        })
        .collect();
    let dtype = if f16 { Dtype::F16 } else { Dtype::F32 };
    let views = raw
        .iter()
        .map(|(n, b, s)| TensorView::new(dtype, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Backend(format!("safetensors: {e}")))?;
    // diffusers checks this key to accept the file as PyTorch weights.
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::tensor::serialize(views, Some(meta)).map_err(|e| Error::Backend(format!("safetensors: {e}")))
}

/// Reads every tensor of a safetensors file as float32, with no config to check against.
pub fn read_safetensors(path: &Path) -> Result<Weights> {
    let bytes = read_weights_file(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::bad_file(path, format!("not a valid safetensors file (truncated or corrupt?): {e}")))?;
    let mut out = Weights::new();
    for (name, view) in st.tensors() {
        let data = to_f32(&view).ok_or_else(|| Error::Weight {
            file: path.display().to_string(),
            name: name.clone(),
            msg: "not a float tensor".into(),
        })?;
        out.insert(name, Weight { shape: view.shape().to_vec(), data });
    }
    Ok(out)
}
