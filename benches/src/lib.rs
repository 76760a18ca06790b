//! Shared by the criterion benches and the timing programs: the two networks of the
//! benchmarks and small statistics.

use std::path::PathBuf;

use ddpm_exporter::{export_model, ExportOptions};
use ddpm_models::UNetConfig;

/// The default digits model as shipped (float16 weights on disk, float32 arithmetic).
pub fn digits_model_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/pretrained/digits/digits.onnx"))
}

/// The DDPM paper's CIFAR-10 network (35.7M parameters) with random weights (seed 0),
/// exported by the project's exporter in float32: timing does not depend on the values.
pub fn cifar10_random_onnx() -> anyhow::Result<Vec<u8>> {
    let config = UNetConfig::ddpm_cifar10();
    let weights = ddpm_models::random_weights(&config, 0)?;
    Ok(export_model(&config, &weights, &ddpm_runtime::SchedulerConfig::paper(), &ExportOptions::default())?)
}

/// (min, median) of a list of durations in milliseconds.
pub fn min_median(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    match ms.len() {
        0 => (f64::NAN, f64::NAN),
        n => (ms[0], ms[n / 2]),
    }
}

/// Criterion groups for one precision: per model evaluation and whole chains (DDIM 50,
/// DPM-Solver++ 20) on the digits model and the CIFAR-10 network, at batch 1 and 16.
pub fn model_benches(c: &mut criterion::Criterion, precision: ddpm_runtime::Precision) {
    use criterion::BenchmarkId;
    use ddpm_runtime::{Denoiser, OnnxDenoiser, Pipeline, SamplerKind};
    use std::time::Duration;

    let cifar = match cifar10_random_onnx() {
        Ok(bytes) => bytes,
        Err(e) => panic!("exporting the CIFAR-10 network: {e}"),
    };
    let digits = match std::fs::read(digits_model_path()) {
        Ok(bytes) => bytes,
        Err(e) => panic!("{}: {e}", digits_model_path().display()),
    };
    let p = precision.name();
    for (name, bytes) in [("digits", &digits), ("cifar10", &cifar)] {
        for batch in [1usize, 16] {
            let load = || {
                OnnxDenoiser::builder()
                    .intra_threads(ddpm_runtime::sys::physical_cores())
                    .precision(precision)
                    .batch_size(batch)
                    .from_memory(bytes, name)
            };
            let mut model = match load() {
                Ok(m) => m,
                Err(e) => panic!("{name} {p}: {e}"),
            };
            let s = model.shape();
            let x: Vec<f32> = (0..batch * s.sample_len()).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
            let labels: Option<Vec<i64>> = s.num_classes.map(|k| (0..batch).map(|i| (i % k) as i64).collect());
            let mut out = vec![0.0f32; batch * s.out_channels * s.pixels()];
            let big = name == "cifar10" && batch == 16;
            let mut group = c.benchmark_group(format!("model_eval_{p}"));
            group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(if big { 10 } else { 4 }));
            group.bench_function(BenchmarkId::new(name, format!("b{batch}")), |b| {
                b.iter(|| model.predict_into(&x, batch, 500, labels.as_deref(), &mut out).map_err(|e| e.to_string()))
            });
            group.finish();

            let mut group = c.benchmark_group(format!("model_chain_{p}"));
            group.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(1));
            for (kind, steps) in [(SamplerKind::Ddim, 50usize), (SamplerKind::DpmSolverPP, 20)] {
                // The CIFAR-10 network at batch 16 runs DPM-Solver++ 20 only (a DDIM-50 chain
                // there takes ~30 s, 10 samples 5 minutes).
                if big && kind == SamplerKind::Ddim {
                    continue;
                }
                let config = model.scheduler_config();
                group.bench_function(BenchmarkId::new(format!("{name}/{}{steps}", kind.name()), format!("b{batch}")), |b| {
                    b.iter(|| {
                        Pipeline::new(&mut model, config.clone())
                            .sampler(kind)
                            .steps(steps)
                            .n(batch)
                            .batch_size(batch)
                            .run()
                            .map(|s| s.total_time)
                            .map_err(|e| e.to_string())
                    })
                });
            }
            group.finish();
        }
    }
}
