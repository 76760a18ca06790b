//! The ONNX Runtime denoiser's sessions: one per batch size with the batch dimension fixed
//! gives the same numbers as one dynamic session, and the optimized model cached on disk
//! gives the same numbers as a fresh optimization.

use ddpm_runtime::{Denoiser, OnnxDenoiser};

fn digits_model() -> String {
    format!("{}/../models/pretrained/digits/digits.onnx", env!("CARGO_MANIFEST_DIR"))
}

fn input(batch: usize, seed: u32) -> Vec<f32> {
    (0..batch * 784).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0) * 2.0 - 1.0).collect()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / x.abs().max(1.0)).fold(0.0, f32::max)
}

#[test]
fn fixed_batch_sessions_match_the_dynamic_session() {
    let mut fixed = OnnxDenoiser::builder().intra_threads(1).from_file(digits_model()).unwrap();
    let mut dynamic = OnnxDenoiser::builder().intra_threads(1).static_shapes(false).from_file(digits_model()).unwrap();
    for (batch, t) in [(1usize, 999i64), (3, 500), (1, 10), (3, 0)] {
        let x = input(batch, t as u32);
        let labels: Vec<i64> = (0..batch as i64).map(|i| (i * 3 + t) % 10).collect();
        let a = fixed.predict(&x, batch, t, Some(&labels)).unwrap();
        let b = dynamic.predict(&x, batch, t, Some(&labels)).unwrap();
        let d = max_rel_diff(&a, &b);
        assert!(d < 1e-5, "batch {batch} t {t}: fixed vs dynamic differ by {d}");
        // The output buffer is reused across calls: a second call must not see the first.
        let again = fixed.predict(&x, batch, t, Some(&labels)).unwrap();
        assert_eq!(a, again);
    }
}

#[test]
fn the_cached_optimized_model_gives_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let x = input(2, 7);
    let labels = [3i64, 8];
    let mut reference = OnnxDenoiser::builder().intra_threads(1).from_file(digits_model()).unwrap();
    let want = reference.predict(&x, 2, 421, Some(&labels)).unwrap();
    for round in 0..2 {
        let mut m = OnnxDenoiser::builder().intra_threads(1).cache_dir(dir.path()).from_file(digits_model()).unwrap();
        let got = m.predict(&x, 2, 421, Some(&labels)).unwrap();
        let d = max_rel_diff(&want, &got);
        assert!(d < 1e-5, "round {round}: cached model differs by {d}");
        let files: Vec<_> = std::fs::read_dir(dir.path().join("optimized")).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "round {round}: one optimized model for batch 2, found {files:?}");
    }
    // A corrupt cache file is replaced, not fatal.
    let file = std::fs::read_dir(dir.path().join("optimized")).unwrap().flatten().next().unwrap().path();
    std::fs::write(&file, b"not a model").unwrap();
    let mut m = OnnxDenoiser::builder().intra_threads(1).cache_dir(dir.path()).from_file(digits_model()).unwrap();
    let got = m.predict(&x, 2, 421, Some(&labels)).unwrap();
    assert!(max_rel_diff(&want, &got) < 1e-5);
    assert!(std::fs::metadata(&file).unwrap().len() > 1000, "the corrupt cache file was rebuilt");
    // A different valid model placed under the key is not used: the cache checks what it loads.
    let other = format!("{}/../tests/fixtures/onnx/gaussian.onnx", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(&other, &file).unwrap();
    let mut m = OnnxDenoiser::builder().intra_threads(1).cache_dir(dir.path()).from_file(digits_model()).unwrap();
    let got = m.predict(&x, 2, 421, Some(&labels)).unwrap();
    assert!(max_rel_diff(&want, &got) < 1e-5, "the model placed in the cache was used");
    assert_ne!(std::fs::read(&file).unwrap(), std::fs::read(&other).unwrap(), "the replaced cache file was not rebuilt");
}

#[test]
fn wrong_output_buffer_is_a_shape_error() {
    let mut m = OnnxDenoiser::builder().intra_threads(1).from_file(digits_model()).unwrap();
    let x = input(1, 1);
    let mut out = vec![0.0f32; 10];
    let err = m.predict_into(&x, 1, 5, Some(&[1]), &mut out).unwrap_err();
    assert!(err.to_string().contains("output buffer"), "{err}");
    let err = m.predict(&x, 1, 5, Some(&[1, 2])).unwrap_err();
    assert!(err.to_string().contains("class labels"), "{err}");
}
