//! The runtime's readers, fed random and mutated bytes, return an error and never panic:
//! scheduler config JSON, and the ONNX model's signature and metadata. Mutations of a valid
//! file (bytes overwritten, a cut, a splice) reach deeper than random bytes.

use ddpm_runtime::{OnnxDenoiser, SchedulerConfig};
use proptest::prelude::*;

#[path = "../../tests/common/mutate.rs"]
mod mutate;
use mutate::{cases, mutate, mutation};

const SCHED: &str = r#"{"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "variance_type": "fixed_small", "clip_sample": true, "clip_sample_range": 1.0, "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 0, "trained_betas": null}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn scheduler_config_reader_never_panics(random in ".{0,64}", (flips, cut, tail) in mutation()) {
        let _ = SchedulerConfig::from_json_str(&random, "random");
        let bytes = mutate(SCHED.as_bytes(), &flips, cut, &tail);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(c) = SchedulerConfig::from_json_str(&text, "mutated") {
            // Whatever it accepts is a schedule the samplers can build.
            prop_assert!(ddpm_runtime::Schedule::from_config(&c).is_ok());
        }
    }
}

proptest! {
    // A session per case: fewer cases.
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn onnx_signature_and_metadata_never_panic((flips, cut, tail) in mutation()) {
        for fixture in ["gaussian.onnx", "gaussian_classes.onnx", "gaussian_float_t.onnx"] {
            let path = format!("{}/../tests/fixtures/onnx/{fixture}", env!("CARGO_MANIFEST_DIR"));
            let seed = std::fs::read(path).unwrap();
            let bytes = mutate(&seed, &flips, cut, &tail);
            let _ = OnnxDenoiser::builder().intra_threads(1).static_shapes(false).from_memory(&bytes, "mutated model");
        }
    }
}
