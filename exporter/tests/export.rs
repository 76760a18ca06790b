//! `exporter onnx` end to end: the exported graphs in ONNX Runtime against diffusers'
//! outputs (tests/fixtures/unet, python/make_unet_fixtures.py), onnx.checker with full
//! shape inference, the paper's CIFAR-10 network, and bad checkpoints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ddpm_models::{UNetCheckpoint, UNetConfig, Weight, Weights};
use ort::session::Session;
use ort::value::Tensor;
use serde_json::Value;

const CASES: [&str; 4] = ["mha_classes", "learned_variance", "no_mid_attention", "digits_like"];

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/unet").join(case)
}

fn exporter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exporter")).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn export(ckpt: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["onnx", "--ckpt", ckpt.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = exporter(&args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}
fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}
use ddpm_models::compare::rel_error;

/// Runs an .onnx on a batch with one timestep per item (the graph's own inputs).
fn run_onnx(path: &Path, x: &[f32], shape: &[usize], t: &[i64], labels: Option<&[i64]>) -> Vec<f32> {
    let env = ddpm_runtime::onnx::environment(None).unwrap();
    let mut s = Session::builder(&env).unwrap().with_intra_threads(1).unwrap().commit_from_file(path).unwrap();
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let mut inputs = ort::inputs![
        "sample" => Tensor::from_array((dims, x.to_vec())).unwrap(),
        "timestep" => Tensor::from_array((vec![t.len() as i64], t.to_vec())).unwrap(),
    ];
    if let Some(l) = labels {
        inputs.push(("class_labels".into(), Tensor::from_array((vec![l.len() as i64], l.to_vec())).unwrap().into()));
    }
    let out = s.run(inputs).unwrap();
    out["noise_pred"].try_extract_tensor::<f32>().unwrap().1.to_vec()
}

fn onnx_checker(path: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = Command::new(root.join("scripts/setup-env.sh")).output().unwrap();
    assert!(venv.status.success());
    let python = PathBuf::from(String::from_utf8(venv.stdout).unwrap().trim()).join("bin/python");
    let o = Command::new(python)
        .args(["-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "onnx.checker on {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn exported_models_match_diffusers_at_batch_1_and_3_and_pass_the_checker() {
    let tmp = tempfile::tempdir().unwrap();
    for case in CASES {
        let out = tmp.path().join(format!("{case}.onnx"));
        let stdout = export(&fixture(case).join("unet"), &out, &[]);
        assert!(stdout.contains("verified"), "{stdout}");
        onnx_checker(&out);
        let io: Value = serde_json::from_str(&std::fs::read_to_string(fixture(case).join("io.json")).unwrap()).unwrap();
        let shape: Vec<usize> = io["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (x, t, expected) = (floats(&io["sample"]), ints(&io["timesteps"]), floats(&io["output"]));
        let labels = (!io["class_labels"].is_null()).then(|| ints(&io["class_labels"]));
        let batch3 = run_onnx(&out, &x, &shape, &t, labels.as_deref());
        let err3 = rel_error(&batch3, &expected);
        let per_in = x.len() / 3;
        let per_out = expected.len() / 3;
        let mut err1 = 0.0f32;
        for i in 0..3 {
            let one = run_onnx(
                &out,
                &x[i * per_in..(i + 1) * per_in],
                &[1, shape[1], shape[2], shape[3]],
                &t[i..=i],
                labels.as_ref().map(|l| &l[i..=i]),
            );
            err1 = err1.max(rel_error(&one, &expected[i * per_out..(i + 1) * per_out]));
        }
        eprintln!("{case}: ONNX Runtime vs diffusers, relative error batch 1 {err1:.2e}, batch 3 {err3:.2e}");
        assert!(err1 <= 1e-4 && err3 <= 1e-4, "{case}: {err1} / {err3}");
    }
}

#[test]
fn fp16_and_opset_21_exports_verify_and_pass_the_checker() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = fixture("mha_classes").join("unet");
    let fp16 = tmp.path().join("fp16.onnx");
    let stdout = export(&ckpt, &fp16, &["--fp16"]);
    assert!(stdout.contains("float16") && stdout.contains("verified"), "{stdout}");
    onnx_checker(&fp16);
    let fp32 = tmp.path().join("fp32.onnx");
    export(&ckpt, &fp32, &[]);
    let (a, b) = (std::fs::metadata(&fp16).unwrap().len(), std::fs::metadata(&fp32).unwrap().len());
    assert!(a * 10 < b * 6, "float16 file {a} bytes vs float32 {b}");
    let o21 = tmp.path().join("opset21.onnx");
    export(&ckpt, &o21, &["--opset", "21"]);
    onnx_checker(&o21);
    // The fused-step graph (its chains are checked in tests/tests/fused_step.rs).
    let fused = tmp.path().join("fused.onnx");
    let stdout = export(&ckpt, &fused, &["--fused-step"]);
    assert!(stdout.contains("fused step") && stdout.contains("verified"), "{stdout}");
    onnx_checker(&fused);
    // A learned-variance network cannot fuse the update: exit 2, one line, no file.
    let lv = tmp.path().join("lv.onnx");
    let out = Command::new(env!("CARGO_BIN_EXE_exporter"))
        .args(["onnx", "--ckpt"])
        .arg(fixture("learned_variance").join("unet"))
        .arg("--out")
        .arg(&lv)
        .arg("--fused-step")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("learned variance"));
    assert!(!lv.exists());
}

fn random_weights(config: &UNetConfig, seed: u64) -> Weights {
    ddpm_models::random_weights(config, seed).unwrap()
}

#[test]
fn the_papers_cifar10_network_and_a_digits_network_export_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, config) in [("cifar10", UNetConfig::ddpm_cifar10()), ("digits", UNetConfig::digits())] {
        let dir = tmp.path().join(name).join("unet");
        UNetCheckpoint::save(&dir, &config, &random_weights(&config, 1)).unwrap();
        let out = tmp.path().join(format!("{name}.onnx"));
        let stdout = export(&dir, &out, &[]);
        eprintln!("{name}: {stdout}");
        assert!(stdout.contains("verified"));
        // And the runtime samples from it.
        let mut model = ddpm_runtime::OnnxDenoiser::builder().from_file(&out).unwrap();
        let cfg = model.scheduler_config();
        let labels = config.num_class_embeds.map(|_| ddpm_runtime::ClassLabels::Fixed(3)).unwrap_or(ddpm_runtime::ClassLabels::Uniform);
        let s = ddpm_runtime::Pipeline::new(&mut model, cfg)
            .sampler(ddpm_runtime::SamplerKind::DpmSolverPP)
            .steps(2)
            .n(1)
            .class_labels(labels)
            .run()
            .unwrap();
        assert!(s.data.iter().all(|v| v.is_finite()));
    }
}

/// Exit 2, one line naming `needle`, no output file.
fn bad(ckpt: &Path, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.onnx");
    let o = exporter(&["onnx", "--ckpt", ckpt.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}: {stderr}", ckpt.display());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(needle), "{:?} does not name {needle:?}", lines[0]);
    assert!(!stderr.contains("panicked"));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "files left behind");
}

fn copy_fixture(to: &Path) -> PathBuf {
    let unet = to.join("unet");
    std::fs::create_dir_all(&unet).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(fixture("mha_classes").join("unet").join(f), unet.join(f)).unwrap();
    }
    unet
}

#[test]
fn bad_checkpoints_exit_2_with_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    bad(&tmp.path().join("nope"), "nope");
    // missing weights file
    let d = tmp.path().join("a");
    let unet = copy_fixture(&d);
    std::fs::remove_file(unet.join("diffusion_pytorch_model.safetensors")).unwrap();
    bad(&d, "diffusion_pytorch_model.safetensors");
    // truncated weights
    let d = tmp.path().join("b");
    let unet = copy_fixture(&d);
    let w = unet.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    bad(&d, "safetensors");
    // shape mismatch, a missing tensor and an unexpected one
    let ckpt = UNetCheckpoint::load(&fixture("mha_classes").join("unet")).unwrap();
    let mut weights = ckpt.weights.clone();
    weights.insert("conv_in.weight".into(), Weight { shape: vec![16, 3, 1, 1], data: vec![0.0; 48] });
    let d = tmp.path().join("c/unet");
    UNetCheckpoint::save(&d, &ckpt.config, &weights).unwrap();
    bad(&d, "conv_in.weight");
    let mut weights = ckpt.weights.clone();
    weights.remove("mid_block.attentions.0.to_k.bias");
    let d = tmp.path().join("d/unet");
    UNetCheckpoint::save(&d, &ckpt.config, &weights).unwrap();
    bad(&d, "mid_block.attentions.0.to_k.bias");
    let mut weights = ckpt.weights.clone();
    weights.insert("extra.weight".into(), Weight { shape: vec![1], data: vec![0.0] });
    let d = tmp.path().join("e/unet");
    UNetCheckpoint::save(&d, &ckpt.config, &weights).unwrap();
    bad(&d, "extra.weight");
    // unsupported block, unknown key
    for (sub, edit, needle) in [
        ("f", ("\"AttnDownBlock2D\"", "\"CrossAttnDownBlock2D\""), "CrossAttnDownBlock2D"),
        ("g", ("\"in_channels\"", "\"cross_attention_dim\": 8, \"in_channels\""), "cross_attention_dim"),
    ] {
        let d = tmp.path().join(sub);
        let unet = copy_fixture(&d);
        let cfg = std::fs::read_to_string(unet.join("config.json")).unwrap().replacen(edit.0, edit.1, 1);
        std::fs::write(unet.join("config.json"), cfg).unwrap();
        bad(&d, needle);
    }
    // a scheduler config with an unknown key
    let d = tmp.path().join("h");
    copy_fixture(&d);
    std::fs::create_dir_all(d.join("scheduler")).unwrap();
    std::fs::write(d.join("scheduler/scheduler_config.json"), r#"{"beta_schedule": "linear", "betas_end": 0.02}"#).unwrap();
    bad(&d, "betas_end");
}

/// The shipped default model: its .onnx reproduces its unet/ checkpoint through libtorch.
#[test]
fn the_shipped_onnx_matches_the_shipped_checkpoint() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained/digits");
    if !dir.join("digits.onnx").is_file() {
        eprintln!("no default model shipped yet: nothing to compare");
        return;
    }
    let ckpt = UNetCheckpoint::load(&dir.join("unet")).unwrap();
    let bytes = std::fs::read(dir.join("digits.onnx")).unwrap();
    let err = ddpm_exporter::export::verify(&bytes, &ckpt, 1000).unwrap();
    eprintln!("shipped digits.onnx vs unet/ through libtorch: relative error {err:.2e}");
    assert!(err <= 1e-4, "{err}");
}
