//! An analytic denoiser for Gaussian data: for x_0 ~ N(mean, std^2) the optimal
//! eps-prediction is closed-form, so each sampler driven by it must turn N(0, I) into
//! N(mean, std^2). Run as a Rust `Denoiser` and as a .onnx file through ONNX Runtime
//! (tests/fixtures/onnx, made by python/make_onnx_fixtures.py).

use ddpm_runtime::{ClassLabels, Denoiser, GaussianDenoiser, ModelShape, OnnxDenoiser, Pipeline, SamplerKind, Schedule, SchedulerConfig};

const MEAN: f64 = 0.5;
const STD: f64 = 0.2;

fn fixture(name: &str) -> String {
    format!("{}/fixtures/onnx/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn no_clip() -> SchedulerConfig {
    SchedulerConfig { clip_sample: Some(false), ..SchedulerConfig::paper() }
}

fn rust_model() -> GaussianDenoiser {
    GaussianDenoiser {
        mean: MEAN,
        std: STD,
        schedule: Schedule::from_config(&no_clip()).unwrap(),
        shape: ModelShape { channels: 1, height: 8, width: 8, out_channels: 1, num_classes: None },
    }
}

fn moments(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn run<D: Denoiser>(model: D, kind: SamplerKind, steps: usize, n: usize) -> (f64, f64) {
    let s = Pipeline::new(model, no_clip()).sampler(kind).steps(steps).n(n).batch_size(64).seed(7).run().unwrap();
    moments(&s.data)
}

/// (sampler, steps, tolerance on the std as a fraction). 8,192 values: the sampling error
/// of the std is ~0.8% (1 sigma), of the mean 0.002.
const CASES: [(SamplerKind, usize, f64); 3] = [
    (SamplerKind::Ddpm, 1000, 0.03),
    (SamplerKind::Ddim, 500, 0.03),
    // DPM-Solver++ ends on a jump to sigma = 0 that returns E[x_0 | x_t] at the last
    // timestep, whose spread is std * sqrt(ab s^2 / (ab s^2 + 1 - ab)): 0.150 after 20
    // steps (last t = 50), 0.199 after 200 (last t = 5). 200 steps tests the limit.
    (SamplerKind::DpmSolverPP, 200, 0.03),
];

fn check(label: &str, kind: SamplerKind, steps: usize, tol: f64, (mean, std): (f64, f64)) {
    eprintln!("{label} {} {steps}: mean {mean:.4} std {std:.4}", kind.name());
    assert!((mean - MEAN).abs() < 0.01, "{label} {kind:?} {steps}: mean {mean}, expected {MEAN}");
    assert!((std / STD - 1.0).abs() < tol, "{label} {kind:?} {steps}: std {std}, expected {STD}");
}

#[test]
fn samplers_turn_noise_into_the_data_distribution_rust_denoiser() {
    for (kind, steps, tol) in CASES {
        check("rust", kind, steps, tol, run(rust_model(), kind, steps, 128));
    }
}

#[test]
fn samplers_turn_noise_into_the_data_distribution_onnx_runtime() {
    let mut model = OnnxDenoiser::builder().intra_threads(1).from_file(fixture("gaussian.onnx")).unwrap();
    assert!(model.has_scheduler_config());
    assert_eq!(model.scheduler_config(), SchedulerConfig::from_json_str(&no_clip_json(), "x").unwrap());
    for (kind, steps, tol) in CASES {
        check("onnx", kind, steps, tol, run(&mut model, kind, steps, 128));
    }
}

fn no_clip_json() -> String {
    r#"{"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "variance_type": "fixed_small", "clip_sample": false, "prediction_type": "epsilon"}"#
        .to_string()
}

#[test]
fn onnx_and_rust_denoisers_agree() {
    let mut onnx = OnnxDenoiser::builder().intra_threads(1).from_file(fixture("gaussian.onnx")).unwrap();
    let mut rust = rust_model();
    let x: Vec<f32> = (0..3 * 64).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    for t in [0, 1, 250, 999] {
        let a = onnx.predict(&x, 3, t, None).unwrap();
        let b = rust.predict(&x, 3, t, None).unwrap();
        let err = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-5, "t = {t}: max abs difference {err}");
    }
}

#[test]
fn class_labels_reach_the_model() {
    // Class k of gaussian_classes.onnx has mean -0.5, 0.0, 0.5.
    let mut model = OnnxDenoiser::builder().intra_threads(1).from_file(fixture("gaussian_classes.onnx")).unwrap();
    assert_eq!(model.shape().num_classes, Some(3));
    for (k, mean) in [(0, -0.5), (2, 0.5)] {
        let s = Pipeline::new(&mut model, no_clip()).sampler(SamplerKind::Ddim).n(32).class_labels(ClassLabels::Fixed(k)).run().unwrap();
        let (m, _) = moments(&s.data);
        assert!((m - mean).abs() < 0.02, "class {k}: mean {m}, expected {mean}");
    }
    // Without a label, labels are uniform over the classes and recorded per sample.
    let s = Pipeline::new(&mut model, no_clip()).sampler(SamplerKind::DpmSolverPP).n(60).seed(3).run().unwrap();
    let labels = s.labels.unwrap();
    for k in 0..3 {
        let count = labels.iter().filter(|&&l| l == k).count();
        assert!((10..=30).contains(&count), "class {k} drawn {count} times of 60");
    }
    let per = 64;
    for (i, &l) in labels.iter().enumerate() {
        let (m, _) = moments(&s.data[i * per..(i + 1) * per]);
        assert!((m - [-0.5, 0.0, 0.5][l as usize]).abs() < 0.15, "sample {i} of class {l}: mean {m}");
    }
}

#[test]
fn float_scalar_timestep_model_without_metadata_runs() {
    let mut model = OnnxDenoiser::builder().intra_threads(1).from_file(fixture("gaussian_float_t.onnx")).unwrap();
    assert!(!model.has_scheduler_config());
    assert_eq!(model.scheduler_config(), SchedulerConfig::paper());
    let shape = model.shape();
    assert_eq!((shape.channels, shape.height, shape.width), (1, 8, 8));
    // Timestep input is a float scalar: one batch item at a time still matches the Rust model.
    let x: Vec<f32> = (0..64).map(|i| i as f32 / 64.0 - 0.5).collect();
    let a = model.predict(&x, 1, 500, None).unwrap();
    let b = rust_model().predict(&x, 1, 500, None).unwrap();
    let err = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
    assert!(err < 1e-5, "max abs difference {err}");
}

/// DDIM (eta = 0) with the exact Gaussian denoiser is an affine map per value,
/// x_T -> A x_T + B, so 50 coarse steps land on N(B, A^2), a little narrower than the data.
/// A and B computed here step by step from the paper's formulas (independently of the
/// sampler code); the sampler must reproduce them.
#[test]
fn ddim_50_matches_the_closed_form_of_its_discrete_chain() {
    let schedule = Schedule::from_config(&no_clip()).unwrap();
    let ab = |t: i64| if t < 0 { 1.0 } else { schedule.alphas_cumprod()[t as usize] };
    let (mut a_coef, mut b_coef) = (1.0f64, 0.0f64);
    for t in (0..50).rev().map(|i| i * 20) {
        let (at, ap) = (ab(t), ab(t - 20));
        let (a, s) = (at.sqrt(), (1.0 - at).sqrt());
        let var = at * STD * STD + 1.0 - at;
        // eps = s (x - a MEAN) / var ; x0 = (x - s eps) / a ; x' = sqrt(ap) x0 + sqrt(1 - ap) eps
        let (eps_k, eps_c) = (s / var, -s * a * MEAN / var);
        let (x0_k, x0_c) = ((1.0 - s * eps_k) / a, -s * eps_c / a);
        let k = ap.sqrt() * x0_k + (1.0 - ap).sqrt() * eps_k;
        let c = ap.sqrt() * x0_c + (1.0 - ap).sqrt() * eps_c;
        (a_coef, b_coef) = (k * a_coef, k * b_coef + c);
    }
    eprintln!("DDIM 50 closed form: mean {b_coef:.4} std {a_coef:.4}");
    for (label, (mean, std)) in [
        ("rust", run(rust_model(), SamplerKind::Ddim, 50, 128)),
        ("onnx", run(OnnxDenoiser::builder().intra_threads(1).from_file(fixture("gaussian.onnx")).unwrap(), SamplerKind::Ddim, 50, 128)),
    ] {
        assert!((mean - b_coef).abs() < 0.01, "{label}: mean {mean}, closed form {b_coef}");
        assert!((std / a_coef - 1.0).abs() < 0.03, "{label}: std {std}, closed form {a_coef}");
    }
}
