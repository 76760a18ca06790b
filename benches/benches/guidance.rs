//! Classifier-free guidance on the shipped digits model: a DDIM chain unguided, guided with
//! one model call on a stacked batch of 2B, and guided with two calls of B (issue 15: keep
//! the faster; a guided evaluation should cost at most 2.1x an unguided one). Run side by
//! side in one process: `cargo bench -p ddpm-benches --bench guidance`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ddpm_runtime::{GuidanceBatching, OnnxDenoiser, SamplerKind};
use std::time::Duration;

/// Steps of each chain: the time per model evaluation is the chain's time / STEPS.
const STEPS: usize = 10;

fn guidance(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/pretrained/digits/digits.onnx");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut model = OnnxDenoiser::builder().intra_threads(threads).from_file(path).unwrap();
    let sig = model.signature().clone();
    // The model's null label; a model without one (timing only) stands in its last class.
    let null = sig.guidance.map_or(sig.shape.num_classes.unwrap() as i64 - 1, |g| g.null_class_label);
    let mut group = c.benchmark_group(format!("guidance_digits_ddim{STEPS}"));
    group.sample_size(10).warm_up_time(Duration::from_secs(3)).measurement_time(Duration::from_secs(20));
    for batch in [1usize, 16] {
        let runs: [(&str, Option<GuidanceBatching>); 3] =
            [("unguided", None), ("stacked_2b", Some(GuidanceBatching::Stacked)), ("two_calls", Some(GuidanceBatching::Separate))];
        for (name, batching) in runs {
            group.bench_function(BenchmarkId::new(name, format!("b{batch}")), |b| {
                b.iter(|| {
                    let p = model.pipeline().sampler(SamplerKind::Ddim).steps(STEPS).n(batch).batch_size(batch).null_class_label(null);
                    let p = match batching {
                        Some(m) => p.guidance_scale(3.0).guidance_batching(m),
                        None => p.guidance_scale(1.0),
                    };
                    p.run().unwrap()
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, guidance);
criterion_main!(benches);
