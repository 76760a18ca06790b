//! `Precision::Bf16` really runs in reduced precision (through the OpenVINO execution
//! provider) and stays close to float32. Its own test binary: a process holds one ONNX
//! Runtime library, and this one loads the OpenVINO build (`make test` installs it).

use ddpm_runtime::{Denoiser, ExecutionProvider, OnnxDenoiser, Precision};

#[test]
fn bf16_is_close_to_fp32_and_not_identical() {
    let path = format!("{}/../models/pretrained/digits/digits.onnx", env!("CARGO_MANIFEST_DIR"));
    let mut bf16 = OnnxDenoiser::builder().precision(Precision::Bf16).intra_threads(2).from_file(&path).unwrap();
    assert_eq!(bf16.execution_provider(), ExecutionProvider::OpenVino);
    let mut fp32 = OnnxDenoiser::builder().intra_threads(2).from_file(&path).unwrap();
    let batch = 4;
    let x: Vec<f32> = (0..batch * 784).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    let labels = [0i64, 3, 7, 9];
    for t in [999i64, 500, 50, 1] {
        let a = fp32.predict(&x, batch, t, Some(&labels)).unwrap();
        let b = bf16.predict(&x, batch, t, Some(&labels)).unwrap();
        let num: f64 = a.iter().zip(&b).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
        let den: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        eprintln!("t {t}: relative L2 error of bf16 {rel:.2e}");
        assert!(rel < 0.05, "t {t}: bf16 relative L2 error {rel}");
        assert!(rel > 1e-5, "t {t}: bf16 equals fp32 to {rel}: not running in reduced precision");
    }
}
