//! Embedding the runtime: load a .onnx U-Net, draw 16 samples with DPM-Solver++ in 20
//! steps, write a PNG grid.
//!
//!     cargo run --release -p ddpm-runtime --example sample -- model.onnx samples.png

use ddpm_runtime::{OnnxDenoiser, SamplerKind};

fn main() -> ddpm_runtime::Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path = args.next().unwrap_or_else(|| "model.onnx".into());
    let out = args.next().unwrap_or_else(|| "samples.png".into());

    let mut model = OnnxDenoiser::builder().from_file(&model_path)?;
    // The model's own scheduler config (its metadata) drives the chain.
    let samples = model.pipeline().sampler(SamplerKind::DpmSolverPP).steps(20).n(16).seed(42).run()?;
    ddpm_io::png::write_png_grid(&out, &samples.data, samples.shape)?;
    println!("wrote {out}");
    Ok(())
}
