//! Times the runtime on one model, for scripts/bench_compare.py: load time, then per model
//! evaluation (predict into a reused buffer) and, optionally, a whole chain. Prints one
//! JSON object.
//!
//! bench-eval --model FILE.onnx|cifar10-random --batch B [--precision fp32|bf16]
//!            [--threads N] [--iters N] [--chain ddim:50] [--error-vs-fp32] [--dump OUT.npy]
//! bench-eval --write-cifar10-unet DIR   (the random CIFAR-10 network as a diffusers unet/)

use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use ddpm_benches::{cifar10_random_onnx, min_median};
use ddpm_runtime::{Denoiser, ExecutionProvider, OnnxDenoiser, Pipeline, Precision, SamplerKind};
use serde_json::json;

struct Args {
    model: String,
    batch: usize,
    precision: Precision,
    threads: usize,
    iters: usize,
    chain: Option<(SamplerKind, usize)>,
    error_vs_fp32: bool,
    dump: Option<String>,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        model: String::new(),
        batch: 1,
        precision: Precision::Fp32,
        threads: 2,
        iters: 20,
        chain: None,
        error_vs_fp32: false,
        dump: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?,
            "--batch" => a.batch = value()?.parse()?,
            "--precision" => a.precision = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            "--iters" => a.iters = value()?.parse()?,
            "--chain" => {
                let v = value()?;
                let (k, s) = v.split_once(':').ok_or_else(|| anyhow!("--chain: expected SAMPLER:STEPS"))?;
                a.chain = Some((k.parse()?, s.parse()?));
            }
            "--error-vs-fp32" => a.error_vs_fp32 = true,
            "--dump" => a.dump = Some(value()?),
            "--write-cifar10-unet" => {
                let dir = value()?;
                let config = ddpm_models::UNetConfig::ddpm_cifar10();
                let weights = ddpm_models::random_weights(&config, 0)?;
                ddpm_models::UNetCheckpoint::save(std::path::Path::new(&dir), &config, &weights)?;
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if a.model.is_empty() {
        bail!("--model is required");
    }
    Ok(a)
}

fn load(args: &Args, precision: Precision) -> anyhow::Result<OnnxDenoiser> {
    let mut b = OnnxDenoiser::builder().intra_threads(args.threads).precision(precision).batch_size(args.batch);
    if precision == Precision::Fp32 && args.precision != Precision::Fp32 {
        // The float32 reference inside a process that holds the OpenVINO build.
        b = b.execution_provider(ExecutionProvider::Cpu);
    }
    Ok(if args.model == "cifar10-random" {
        b.from_memory(&cifar10_random_onnx()?, "cifar10-random")?
    } else {
        b.from_file(&args.model).with_context(|| args.model.clone())?
    })
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let t0 = Instant::now();
    let mut model = load(&args, args.precision)?;
    let load_s = t0.elapsed().as_secs_f64();
    let s = model.shape();
    let b = args.batch;
    let x: Vec<f32> = (0..b * s.sample_len()).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    let labels: Option<Vec<i64>> = s.num_classes.map(|k| (0..b).map(|i| (i % k) as i64).collect());
    let mut out = vec![0.0f32; b * s.out_channels * s.pixels()];
    let t1 = Instant::now();
    model.predict_into(&x, b, 500, labels.as_deref(), &mut out)?;
    let first_ms = t1.elapsed().as_secs_f64() * 1e3;
    if let Some(path) = &args.dump {
        // The output at t = 500 for the deterministic input above (compared with PyTorch by
        // scripts/bench_compare.py).
        ddpm_io::npy::write_npy(path, &out, &[b, s.out_channels, s.height, s.width])?;
    }
    for _ in 0..2 {
        model.predict_into(&x, b, 500, labels.as_deref(), &mut out)?;
    }
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.iters {
        let t = Instant::now();
        model.predict_into(&x, b, (i as i64 * 37) % 1000, labels.as_deref(), &mut out)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (min_ms, median_ms) = min_median(times);
    let mut result = json!({
        "batch": b, "precision": args.precision.name(), "ep": model.execution_provider().name(),
        "load_s": load_s, "first_ms": first_ms, "min_ms": min_ms, "median_ms": median_ms,
    });
    if let Some((kind, steps)) = args.chain {
        let config = model.scheduler_config();
        let samples = Pipeline::new(&mut model, config).sampler(kind).steps(steps).n(b).batch_size(b).seed(0).run()?;
        let total = samples.total_time.as_secs_f64();
        result["chain_s"] = json!(total);
        result["chain_outside_model_fraction"] = json!(1.0 - samples.model_time.as_secs_f64() / total);
    }
    if args.error_vs_fp32 && args.precision != Precision::Fp32 {
        let mut reference = load(&args, Precision::Fp32)?;
        let mut errors = serde_json::Map::new();
        for t in [999i64, 750, 500, 250, 50, 1] {
            let want = reference.predict(&x, b, t, labels.as_deref())?;
            let got = model.predict(&x, b, t, labels.as_deref())?;
            let num: f64 = want.iter().zip(&got).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
            let den: f64 = want.iter().map(|p| (*p as f64).powi(2)).sum();
            errors.insert(t.to_string(), json!((num / den).sqrt()));
        }
        result["rel_l2_error_vs_fp32_by_t"] = serde_json::Value::Object(errors);
    }
    println!("{result}");
    Ok(())
}
