//! Latency of the runtime itself: the sampler math per step (no model), and whole chains
//! through ONNX Runtime on the analytic Gaussian model, whose own cost is negligible, so
//! what remains is the runtime's per-call overhead.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ddpm_runtime::sampler::{self, Layout, SamplerKind, SamplerOptions};
use ddpm_runtime::{OnnxDenoiser, Pipeline, SchedulerConfig};

/// (name, channels, size): the default digits model's and the DDPM paper's CIFAR-10 shapes.
const SHAPES: [(&str, usize, usize); 2] = [("digits", 1, 28), ("cifar10", 3, 32)];

fn sampler_math(c: &mut Criterion) {
    let config = SchedulerConfig::paper();
    let mut group = c.benchmark_group("sampler_step");
    for (name, ch, size) in SHAPES {
        for batch in [1usize, 16] {
            let layout = Layout { batch, channels: ch, out_channels: ch, pixels: size * size };
            let n = batch * layout.item_len();
            let out: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect();
            let noise: Vec<f32> = (0..n).map(|i| ((i % 89) as f32 / 44.0) - 1.0).collect();
            for kind in [SamplerKind::Ddpm, SamplerKind::Ddim, SamplerKind::DpmSolverPP] {
                let options = SamplerOptions { kind, steps: Some(50), ..Default::default() };
                group.bench_function(BenchmarkId::new(kind.name(), format!("{name}/b{batch}")), |b| {
                    let mut s = sampler::build(&config, &options).unwrap();
                    let mut x = out.clone();
                    let mut i = 0;
                    b.iter(|| {
                        // Steps 1..49 of one chain, over and over (step 0 is DPM's first order).
                        i = i % 48 + 1;
                        let z = s.needs_noise(i).then_some(&noise[..]);
                        s.step(i, &out, &mut x, layout, z, None).unwrap();
                    });
                });
            }
        }
    }
    group.finish();
}

fn onnx_chain(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/onnx/gaussian.onnx");
    let mut model = OnnxDenoiser::builder().intra_threads(1).from_file(path).unwrap();
    let config = model.scheduler_config();
    let mut group = c.benchmark_group("onnx_chain_gaussian_8x8");
    for batch in [1usize, 16] {
        for (kind, steps) in [(SamplerKind::Ddim, 50), (SamplerKind::DpmSolverPP, 20)] {
            group.bench_function(BenchmarkId::new(format!("{}{steps}", kind.name()), format!("b{batch}")), |b| {
                b.iter(|| Pipeline::new(&mut model, config.clone()).sampler(kind).steps(steps).n(batch).batch_size(batch).run().unwrap());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, sampler_math, onnx_chain);
criterion_main!(benches);
