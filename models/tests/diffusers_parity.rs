//! The tch forward pass against diffusers' UNet2DModel on the checkpoints of
//! tests/fixtures/unet (made by python/make_unet_fixtures.py): same parameter names,
//! same outputs within 1e-5 relative.

use ddpm_models::tch_backend::forward_f32;
use ddpm_models::{parameter_list, UNet2DModel, UNetCheckpoint};
use serde_json::Value;

const CASES: [&str; 4] = ["mha_classes", "learned_variance", "no_mid_attention", "digits_like"];

fn dir(case: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/unet").join(case)
}

fn io(case: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(case).join("io.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}
fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

pub use ddpm_models::compare::rel_error;

#[test]
fn parameter_names_and_shapes_match_the_diffusers_state_dict() {
    for case in CASES {
        let ckpt = UNetCheckpoint::load(&dir(case).join("unet")).unwrap();
        let ours = parameter_list(&ckpt.config).unwrap();
        let theirs = io(case)["state_dict"].as_object().unwrap().clone();
        assert_eq!(ours.len(), theirs.len(), "{case}: parameter count");
        for (name, shape) in ours {
            let t: Vec<usize> = theirs[&name].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(shape, t, "{case}: {name}");
        }
    }
}

#[test]
fn tch_forward_matches_diffusers() {
    for case in CASES {
        let ckpt = UNetCheckpoint::load(&dir(case).join("unet")).unwrap();
        let model = UNet2DModel::new(ckpt.config.clone()).unwrap();
        let io = io(case);
        let shape: Vec<usize> = io["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (x, t, expected) = (floats(&io["sample"]), ints(&io["timesteps"]), floats(&io["output"]));
        let labels = (!io["class_labels"].is_null()).then(|| ints(&io["class_labels"]));
        let out = forward_f32(&model, &ckpt.weights, &x, [shape[0], shape[1], shape[2], shape[3]], &t, labels.as_deref()).unwrap();
        let err = rel_error(&out, &expected);
        eprintln!("{case}: tch vs diffusers, relative error {err:.2e}");
        assert!(err <= 1e-5, "{case}: relative error {err}");
    }
}
