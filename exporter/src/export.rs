//! `exporter onnx`: checkpoint folder in, verified .onnx out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ddpm_models::tch_backend::forward_f32;
use ddpm_models::{UNet2DModel, UNetCheckpoint};
use ddpm_runtime::onnx::signature::GuidanceConfig;
use ddpm_runtime::{Denoiser, OnnxDenoiser, SchedulerConfig};
use rand::{Rng, SeedableRng};

use crate::error::{ExportError, Result};
use crate::onnx::model::{export_model, ExportOptions};

/// A checkpoint to export: the `unet/` folder and the scheduler config that goes with it.
pub struct Checkpoint {
    pub unet: UNetCheckpoint,
    /// The scheduler config (checked), from the checkpoint or the paper's defaults.
    pub scheduler: SchedulerConfig,
    /// Where the scheduler config came from (None: the paper's defaults).
    pub scheduler_source: Option<PathBuf>,
    /// The run's `guidance.json` (a model trained with label dropout): its null label and
    /// recommended guidance scale, written to the .onnx as metadata `guidance_config`.
    pub guidance: Option<GuidanceConfig>,
}

impl Checkpoint {
    /// Accepts a run folder (RUN/unet, RUN/scheduler) or a `unet/` folder (the scheduler
    /// config is then looked for in ../scheduler/).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(ExportError::Usage(format!("{}: no such checkpoint folder", path.display())));
        }
        let (unet_dir, sched_path, guidance_path) = if path.join("unet").join("config.json").is_file() {
            (path.join("unet"), path.join("scheduler").join("scheduler_config.json"), path.join("guidance.json"))
        } else if path.join("config.json").is_file() {
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (path.to_path_buf(), parent.join("scheduler").join("scheduler_config.json"), parent.join("guidance.json"))
        } else {
            return Err(ExportError::Usage(format!(
                "{}: expected a run folder with unet/config.json, or a unet/ folder with config.json",
                path.display()
            )));
        };
        let unet = UNetCheckpoint::load(&unet_dir)?;
        // Read with the runtime's parser: what the runtime will not run is refused here.
        let (scheduler, scheduler_source) = if sched_path.exists() {
            (SchedulerConfig::from_file(&sched_path)?, Some(sched_path))
        } else {
            (SchedulerConfig::paper(), None)
        };
        let guidance = if guidance_path.exists() {
            let text = ddpm_io::files::read_regular_text(&guidance_path, ddpm_io::limits::MAX_CONFIG_BYTES, "guidance config")?;
            let g = GuidanceConfig::from_json_str(&text).map_err(|e| ExportError::Usage(format!("{}: {e}", guidance_path.display())))?;
            let k = unet.config.num_class_embeds.unwrap_or(0);
            if !(g.null_class_label >= 0 && (g.null_class_label as usize) < k) {
                return Err(ExportError::Usage(format!(
                    "{}: null_class_label {}, expected one of the network's {k} classes",
                    guidance_path.display(),
                    g.null_class_label
                )));
            }
            if !(g.guidance_scale.is_finite() && g.guidance_scale >= 0.0) {
                return Err(ExportError::Usage(format!(
                    "{}: guidance_scale {}, expected a finite number >= 0",
                    guidance_path.display(),
                    g.guidance_scale
                )));
            }
            Some(g)
        } else {
            None
        };
        Ok(Self { unet, scheduler, scheduler_source, guidance })
    }
}

/// `--out` must not be one of the files it is made from, nor inside the checkpoint's
/// `unet/` folder (a link or a second spelling of the same path counts).
pub fn refuse_overwriting_inputs(ckpt: &Checkpoint, out: &Path) -> Result<()> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let resolved = match (dir.canonicalize(), out.file_name()) {
        (Ok(d), Some(name)) => {
            let p = d.join(name);
            p.canonicalize().unwrap_or(p)
        }
        _ => return Err(ExportError::Usage(format!("{}: not a file path", out.display()))),
    };
    let unet = ckpt.unet.dir.canonicalize().unwrap_or_else(|_| ckpt.unet.dir.clone());
    let scheduler = ckpt.scheduler_source.as_ref().and_then(|p| p.canonicalize().ok());
    if resolved.starts_with(&unet) || Some(&resolved) == scheduler.as_ref() {
        return Err(ExportError::Usage(format!(
            "--out {}: is one of the checkpoint's own files (in {}); write the model elsewhere",
            out.display(),
            if resolved.starts_with(&unet) { unet.display().to_string() } else { resolved.display().to_string() }
        )));
    }
    if resolved.is_dir() {
        return Err(ExportError::Usage(format!("--out {}: is a folder, expected a file name such as model.onnx", out.display())));
    }
    Ok(())
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub bytes: usize,
    pub nodes: usize,
    /// Max relative error between ONNX Runtime and libtorch (None: not verified).
    pub max_rel_error: Option<f32>,
    pub seconds: f64,
}

use ddpm_models::compare::rel_error;

/// Runs the exported bytes in ONNX Runtime and the checkpoint in libtorch on the same
/// random inputs (batch 2, two timesteps) and returns the max relative error.
pub fn verify(bytes: &[u8], ckpt: &UNetCheckpoint, num_train_timesteps: usize) -> Result<f32> {
    let config = &ckpt.config;
    let (h, w) = config.sample_size.unwrap_or((0, 0));
    let mut onnx = OnnxDenoiser::builder().from_memory(bytes, "exported model")?;
    let model = UNet2DModel::new(config.clone())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let batch = 2;
    let x: Vec<f32> = (0..batch * config.in_channels * h * w).map(|_| rng.sample(rand_distr::StandardNormal)).collect();
    let labels: Option<Vec<i64>> = config.num_class_embeds.map(|n| (0..batch).map(|_| rng.random_range(0..n as i64)).collect());
    let mut worst = 0.0f32;
    for t in [num_train_timesteps as i64 / 3, num_train_timesteps as i64 - 1] {
        let a = onnx.predict(&x, batch, t, labels.as_deref())?;
        let b = forward_f32(&model, &ckpt.weights, &x, [batch, config.in_channels, h, w], &[t; 2], labels.as_deref())?;
        // A NaN or infinite output is never "verified": from the checkpoint itself it is bad
        // input (its config or weights compute NaN), from the exported graph alone a mismatch.
        if b.iter().any(|v| !v.is_finite()) {
            return Err(ExportError::Usage(format!(
                "{}: the checkpoint computes NaN or infinite values in libtorch at t = {t} (check norm_eps and the weights): nothing to verify against",
                ckpt.dir.display()
            )));
        }
        if a.iter().any(|v| !v.is_finite()) {
            return Err(ExportError::Mismatch { error: f32::NAN, tolerance: 0.0 });
        }
        worst = worst.max(rel_error(&a, &b));
    }
    Ok(worst)
}

/// Exports a checkpoint to `out`: records the graph, verifies it (unless `verify_tol` is
/// None), and writes it atomically. A failed verification leaves no file.
pub fn export_checkpoint(ckpt: &Checkpoint, out: &Path, options: &ExportOptions, verify_tol: Option<f32>) -> Result<ExportReport> {
    let started = Instant::now();
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(ExportError::Usage(format!("{}: output folder does not exist", dir.display())));
    }
    refuse_overwriting_inputs(ckpt, out)?;
    let params = ddpm_models::parameter_count(&ckpt.unet.config)?;
    ddpm_io::limits::check_memory(
        &format!("exporting a network of {params} parameters (weights, graph and a verifying session)"),
        ddpm_io::limits::bytes_of(&[params], 4 * 4),
    )?;
    let options = ExportOptions { guidance: options.guidance.or(ckpt.guidance), ..options.clone() };
    let bytes = export_model(&ckpt.unet.config, &ckpt.unet.weights, &ckpt.scheduler, &options)?;
    let nodes = {
        use prost::Message;
        crate::onnx::proto::ModelProto::decode(bytes.as_slice()).map(|m| m.graph.map_or(0, |g| g.node.len())).unwrap_or(0)
    };
    let max_rel_error = match verify_tol {
        Some(tol) => {
            let t_count = ckpt.scheduler.num_train_timesteps();
            let err = verify(&bytes, &ckpt.unet, t_count)?;
            if err.is_nan() || err > tol {
                return Err(ExportError::Mismatch { error: err, tolerance: tol });
            }
            Some(err)
        }
        None => None,
    };
    ddpm_io::files::write_atomically(out, |w| w.write_all(&bytes)).map_err(ddpm_runtime::Error::from)?;
    Ok(ExportReport { bytes: bytes.len(), nodes, max_rel_error, seconds: started.elapsed().as_secs_f64() })
}
