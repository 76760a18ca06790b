//! `exporter`: turn a checkpoint into one self-describing, verified `.onnx` file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ddpm_exporter::triton::{write_repository, Backend, InstanceKind, TensorRt, TritonOptions, TrtPrecision};
use ddpm_exporter::{export_checkpoint, Checkpoint, ExportError, ExportOptions, ExportPrecision};
use ddpm_io::cli::named;

#[derive(Parser)]
#[command(name = "exporter", version, about = "Export a DDPM U-Net checkpoint (diffusers layout) to ONNX")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write and verify the .onnx of a checkpoint.
    Onnx {
        /// A run folder (RUN/unet, RUN/scheduler) or a diffusers unet/ folder.
        #[arg(long, value_name = "RUN")]
        ckpt: PathBuf,
        #[arg(long, value_name = "FILE.onnx", default_value = "model.onnx")]
        out: PathBuf,
        /// ONNX opset, 17 to 21.
        #[arg(long, default_value_t = 17)]
        opset: i64,
        /// Weights and activations in float16 (for GPU execution providers); inputs and
        /// outputs stay float32.
        #[arg(long)]
        fp16: bool,
        /// Store the weights in float16 and compute in float32 (half the file size).
        #[arg(long, conflicts_with = "fp16")]
        weights_fp16: bool,
        /// Skip the check of the exported file in ONNX Runtime against libtorch.
        #[arg(long)]
        no_verify: bool,
        /// Also apply the sampler's update in the graph (inputs `coefficients`, `noise`;
        /// outputs `prev_sample`, `pred_original_sample`), so that on a GPU the sample stays
        /// on the device; the runtime uses it for DDIM and DDPM.
        #[arg(long)]
        fused_step: bool,
        /// The recommended classifier-free guidance scale to record in the metadata
        /// (a checkpoint trained with label dropout: its guidance.json names the null label).
        #[arg(long, value_name = "S", allow_negative_numbers = true)]
        guidance_scale: Option<f64>,
    },
    /// Write a Triton Inference Server model repository for a .onnx of the contract:
    /// REPO/NAME/config.pbtxt (checked against Triton's schema) and REPO/NAME/1/model.onnx.
    Triton {
        /// The .onnx (written by `exporter onnx`: its metadata carries the configs).
        #[arg(long, value_name = "MODEL.onnx")]
        onnx: PathBuf,
        /// The model repository (created if missing; other models in it are left alone).
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// The served model's name [default: the .onnx file's stem].
        #[arg(long)]
        name: Option<String>,
        /// onnxruntime (Triton's onnxruntime backend; CPU or GPU, TensorRT on request) or
        /// python (onnxruntime inside Triton's Python backend: CPU-only Triton builds).
        #[arg(long, default_value = "onnxruntime", value_parser = named::<Backend>(Backend::NAMES))]
        backend: Backend,
        /// The largest batch of one request, merged requests included.
        #[arg(long, default_value_t = 64, allow_hyphen_values = true)]
        max_batch_size: u32,
        /// Batch sizes the dynamic batcher aims for (repeat the flag) [default: any].
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        preferred_batch_size: Vec<u32>,
        /// How long a request may wait to be merged with others, in microseconds.
        #[arg(long, value_name = "US", default_value_t = 200, allow_hyphen_values = true)]
        max_queue_delay_us: u64,
        /// Where instances run: auto (a GPU where there is one), cpu or gpu.
        #[arg(long, default_value = "auto", value_parser = named::<InstanceKind>(InstanceKind::NAMES))]
        instance_kind: InstanceKind,
        /// Model instances (per GPU for gpu).
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        instance_count: u32,
        /// Intra-op threads of each instance's onnxruntime session [default: onnxruntime's].
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        threads: u32,
        /// The TensorRT accelerator (onnxruntime backend, GPU) at this precision: fp16 or fp32.
        #[arg(long, value_name = "PRECISION", value_parser = named::<TrtPrecision>(TrtPrecision::NAMES))]
        tensorrt: Option<TrtPrecision>,
        /// TensorRT's builder workspace in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 1024, requires = "tensorrt", allow_hyphen_values = true)]
        trt_workspace_mib: u64,
        /// Keep TensorRT's engines in this folder of the server across restarts.
        #[arg(long, value_name = "DIR", requires = "tensorrt")]
        trt_engine_cache: Option<PathBuf>,
    },
    /// Write a copy of a unet/ folder with float16 weights (half the size; diffusers and
    /// the exporter read it as float32).
    Fp16Unet {
        #[arg(long, value_name = "UNET_DIR")]
        ckpt: PathBuf,
        #[arg(long, value_name = "OUT_DIR")]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> Result<(), ExportError> {
    match cli.command {
        Command::Triton {
            onnx,
            repo,
            name,
            backend,
            max_batch_size,
            preferred_batch_size,
            max_queue_delay_us,
            instance_kind,
            instance_count,
            threads,
            tensorrt,
            trt_workspace_mib,
            trt_engine_cache,
        } => {
            let name = name.unwrap_or_else(|| onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
            let options = TritonOptions {
                backend,
                max_batch_size,
                preferred_batch_sizes: preferred_batch_size,
                max_queue_delay_us,
                instance_kind,
                instance_count,
                threads,
                tensorrt: tensorrt.map(|precision| TensorRt {
                    precision,
                    workspace_mib: trt_workspace_mib,
                    engine_cache: trt_engine_cache,
                }),
                ..TritonOptions::new(&name)
            };
            let dir = write_repository(&onnx, &repo, &options)?;
            println!(
                "wrote the Triton model {name} ({} backend, max_batch_size {max_batch_size}) to {} (config.pbtxt checked against Triton's model configuration schema)",
                backend.name(),
                dir.display()
            );
            Ok(())
        }
        Command::Fp16Unet { ckpt, out } => {
            let c = Checkpoint::open(&ckpt)?;
            let (a, b) = (out.canonicalize().unwrap_or(out.clone()), c.unet.dir.canonicalize().unwrap_or(c.unet.dir.clone()));
            if a == b || a.starts_with(&b) {
                return Err(ExportError::Usage(format!(
                    "--out {}: is the checkpoint's own unet/ folder; write the copy elsewhere",
                    out.display()
                )));
            }
            ddpm_models::weights::save_unet_f16(&out, &c.unet.config, &c.unet.weights)?;
            println!("wrote {} (float16 weights)", out.display());
            Ok(())
        }
        Command::Onnx { ckpt, out, opset, fp16, weights_fp16, no_verify, fused_step, guidance_scale } => {
            let checkpoint = Checkpoint::open(&ckpt)?;
            if checkpoint.scheduler_source.is_none() {
                eprintln!(
                    "note: no scheduler/scheduler_config.json next to {}: the DDPM paper's schedule goes into the model",
                    ckpt.display()
                );
            }
            // fp16 rounding of weights and activations: ~1e-3 relative is expected; of the
            // weights alone, a few 1e-4 (the check runs against the float32 checkpoint).
            let tol = if fp16 {
                2e-2
            } else if weights_fp16 {
                5e-3
            } else {
                1e-4
            };
            let guidance = match (guidance_scale, checkpoint.guidance) {
                (None, g) => g,
                (Some(s), _) if !(s.is_finite() && s >= 0.0) => {
                    return Err(ExportError::Usage(format!("--guidance-scale {s}: expected a finite number >= 0")))
                }
                (Some(s), Some(g)) => Some(ddpm_runtime::onnx::signature::GuidanceConfig { guidance_scale: s, ..g }),
                (Some(s), None) => {
                    return Err(ExportError::Usage(format!(
                        "--guidance-scale {s}: {} has no guidance.json (it was not trained with label dropout, so it has no null label)",
                        ckpt.display()
                    )))
                }
            };
            let precision = if fp16 {
                ExportPrecision::Fp16
            } else if weights_fp16 {
                ExportPrecision::WeightsFp16
            } else {
                ExportPrecision::Fp32
            };
            let report = export_checkpoint(
                &checkpoint,
                &out,
                &ExportOptions { opset, precision, fused_step, guidance },
                (!no_verify).then_some(tol),
            )?;
            let verified = match report.max_rel_error {
                Some(e) => format!("verified: max relative error {e:.2e} vs libtorch (tolerance {tol:.0e})"),
                None => "not verified (--no-verify)".into(),
            };
            let precision_note = match precision {
                ExportPrecision::Fp16 => ", float16",
                ExportPrecision::WeightsFp16 => ", float16 weights",
                ExportPrecision::Fp32 => "",
            };
            let fused_note = if fused_step { ", fused step" } else { "" };
            println!(
                "wrote {} ({:.1} MB, {} nodes, opset {opset}{precision_note}{fused_note}) in {:.1} s; {verified}",
                out.display(),
                report.bytes as f64 / 1e6,
                report.nodes,
                report.seconds
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    ddpm_io::cli::main("warn", false, |cli: Cli| run(cli).map(|()| ExitCode::SUCCESS), |e| if e.is_bad_input() { 2 } else { 1 })
}
