//! `Precision::Bf16` really runs in reduced precision where the CPU computes in bf16
//! (AVX512-BF16 or AMX-BF16, through the OpenVINO execution provider) and stays close to
//! float32; where it does not, bf16 is refused with an error naming what is missing, and
//! `Precision::Auto` says it chose fp32. Each test prints the branch it took. Its own test
//! binary: a process holds one ONNX Runtime library, and this one loads the OpenVINO build
//! first (`make test` installs it). The branch of a CPU without bf16 is also taken on every
//! machine by runtime/tests/cli.rs, which masks the features (DDPM_RS_CPU_MASK).

use ddpm_runtime::{CpuFeatures, Denoiser, Error, ExecutionProvider, OnnxDenoiser, Precision};

fn model_path() -> String {
    format!("{}/../models/pretrained/digits/digits.onnx", env!("CARGO_MANIFEST_DIR"))
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
    let den: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn bf16_runs_in_reduced_precision_or_is_refused() {
    let cpu = CpuFeatures::get();
    let path = model_path();
    if !cpu.has_bf16() {
        eprintln!("branch: no bf16 arithmetic on this CPU ({}): bf16 must be refused", cpu.summary());
        let err = OnnxDenoiser::builder()
            .precision(Precision::Bf16)
            .intra_threads(2)
            .from_file(&path)
            .err()
            .expect("bf16 was accepted on a CPU without bf16 arithmetic");
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert!(err.is_bad_input());
        let msg = err.to_string();
        assert!(msg.contains("bf16") && msg.contains("avx512_bf16") && msg.contains("amx_bf16") && msg.contains("has "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        return;
    }
    eprintln!("branch: this CPU has bf16 arithmetic ({}): bf16 must differ from fp32, and stay close", cpu.summary());
    let mut bf16 = OnnxDenoiser::builder().precision(Precision::Bf16).intra_threads(2).from_file(&path).unwrap();
    assert_eq!(bf16.execution_provider(), ExecutionProvider::OpenVino);
    assert_eq!(bf16.precision(), Precision::Bf16);
    let mut fp32 = OnnxDenoiser::builder().intra_threads(2).from_file(&path).unwrap();
    let batch = 4;
    let x: Vec<f32> = (0..batch * 784).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    let labels = [0i64, 3, 7, 9];
    for t in [999i64, 500, 50, 1] {
        let a = fp32.predict(&x, batch, t, Some(&labels)).unwrap();
        let b = bf16.predict(&x, batch, t, Some(&labels)).unwrap();
        let rel = rel_l2(&a, &b);
        eprintln!("t {t}: relative L2 error of bf16 {rel:.2e}");
        assert!(rel < 0.05, "t {t}: bf16 relative L2 error {rel}");
        assert!(rel > 1e-5, "t {t}: bf16 equals fp32 to {rel}: not running in reduced precision");
    }
}

#[test]
fn auto_runs_the_fastest_precision_this_cpu_has_and_says_which() {
    let cpu = CpuFeatures::get();
    let m = OnnxDenoiser::builder().precision(Precision::Auto).intra_threads(2).from_file(model_path()).unwrap();
    let choice = m.precision_choice().to_string();
    eprintln!("branch: {} -> {choice}", cpu.summary());
    assert!(choice.starts_with("precision auto: "), "{choice}");
    assert!(!choice.contains('\n'));
    if cpu.has_bf16() {
        assert_eq!(m.precision(), Precision::Bf16, "{choice}");
        assert_eq!(m.execution_provider(), ExecutionProvider::OpenVino);
        assert!(choice.contains("bf16 on openvino"), "{choice}");
    } else {
        assert_eq!(m.precision(), Precision::Fp32, "{choice}");
        assert_eq!(m.execution_provider(), ExecutionProvider::Cpu);
        assert!(choice.contains("fp32") && choice.contains("no bf16 arithmetic"), "{choice}");
    }
}
