//! `exporter onnx --fused-step`: the graph that also applies the sampler's update gives the
//! chains of the unfused path (DDIM deterministic and stochastic, DDPM), and is used for
//! exactly the steps that have the affine form (none of DPM-Solver++'s).

use std::path::Path;

use ddpm_exporter::{export_model, ExportOptions};
use ddpm_models::UNetCheckpoint;
use ddpm_runtime::{ClassLabels, Denoiser, OnnxDenoiser, Pipeline, SamplerKind, SchedulerConfig};

fn models() -> (OnnxDenoiser, OnnxDenoiser) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/unet/digits_like/unet");
    let ckpt = UNetCheckpoint::load(&dir).unwrap();
    let scheduler = SchedulerConfig::paper();
    let export = |fused_step| {
        let bytes = export_model(&ckpt.config, &ckpt.weights, &scheduler, &ExportOptions { fused_step, ..Default::default() }).unwrap();
        OnnxDenoiser::builder().intra_threads(1).from_memory(&bytes, "digits_like").unwrap()
    };
    (export(true), export(false))
}

#[test]
fn fused_chains_match_the_unfused_ones() {
    let (mut fused, mut plain) = models();
    assert!(fused.as_fused().is_some() && plain.as_fused().is_none());
    let config = fused.scheduler_config();
    // A plain prediction from the fused graph is the plain graph's.
    let x: Vec<f32> = (0..2 * 28 * 28).map(|i| ((i * 31 % 97) as f32 / 48.5) - 1.0).collect();
    let a = fused.predict(&x, 2, 321, Some(&[1, 4])).unwrap();
    let b = plain.predict(&x, 2, 321, Some(&[1, 4])).unwrap();
    assert_eq!(a, b);
    for (kind, steps, eta) in
        [(SamplerKind::Ddim, 20, 0.0), (SamplerKind::Ddim, 20, 1.0), (SamplerKind::Ddpm, 30, 0.0), (SamplerKind::DpmSolverPP, 10, 0.0)]
    {
        let run = |m: &mut OnnxDenoiser, fused_step: bool| {
            Pipeline::new(m, config.clone())
                .sampler(kind)
                .steps(steps)
                .eta(eta)
                .n(3)
                .batch_size(3)
                .seed(7)
                .class_labels(ClassLabels::PerSample(vec![0, 5, 9]))
                .record_trajectory(5)
                .fused_step(fused_step)
                .run()
                .unwrap()
        };
        let f = run(&mut fused, true);
        let u = run(&mut plain, true);
        let expected_fused = if kind == SamplerKind::DpmSolverPP { 0 } else { steps };
        assert_eq!(f.fused_evaluations, expected_fused, "{kind:?}");
        assert_eq!(u.fused_evaluations, 0);
        let diff = f.data.iter().zip(&u.data).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "{kind:?} eta {eta}: fused vs unfused samples differ by {diff}");
        for ((i, a), (j, b)) in f.trajectory.iter().zip(&u.trajectory) {
            assert_eq!(i, j);
            let d = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            assert!(d < 1e-4, "{kind:?}: predicted x0 at step {i} differs by {d}");
        }
        // And the fused graph with the fused step turned off is the plain path exactly.
        let off = run(&mut fused, false);
        assert_eq!(off.fused_evaluations, 0);
        assert_eq!(off.data, u.data, "{kind:?}");
    }
}
