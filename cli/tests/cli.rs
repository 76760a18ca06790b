//! `runtime sample` end to end: determinism, --noise, every output format, and each bad
//! input of the contract (exit 2, one line, no panic, nothing partial under the output name).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ddpm_io::npy::{read_npy, write_npy};

fn model(name: &str) -> String {
    format!("{}/../tests/fixtures/onnx/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn runtime(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runtime")).arg("sample").args(["--threads", "1"]).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = runtime(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit 2, exactly one line on stderr that contains `needle`, no panic.
fn bad(args: &[&str], needle: &str) {
    let out = runtime(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {stderr}");
    assert!(lines[0].contains(needle), "{args:?}: {:?} does not mention {needle:?}", lines[0]);
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

#[test]
fn same_seed_same_bytes_whatever_the_batch_size() {
    let d = tmp();
    let g = model("gaussian.onnx");
    for sampler in ["ddpm", "ddim", "dpm-solver++"] {
        let steps = if sampler == "ddpm" { "30" } else { "10" };
        let mut files = Vec::new();
        for (i, b) in ["1", "3", "7", "7"].iter().enumerate() {
            let out = p(d.path(), &format!("{sampler}-{i}.npy"));
            ok(&["--model", &g, "--sampler", sampler, "--steps", steps, "--n", "7", "--batch-size", b, "--seed", "5", "--out", &out]);
            files.push(std::fs::read(&out).unwrap());
        }
        assert!(files.windows(2).all(|w| w[0] == w[1]), "{sampler}: outputs differ across batch sizes or runs");
        let other = p(d.path(), "other.npy");
        ok(&["--model", &g, "--sampler", sampler, "--steps", steps, "--n", "7", "--seed", "6", "--out", &other]);
        assert_ne!(std::fs::read(&other).unwrap(), files[0], "{sampler}: the seed changes nothing");
    }
}

#[test]
fn noise_file_sets_x_t_and_n() {
    let d = tmp();
    let g = model("gaussian.onnx");
    let noise = p(d.path(), "xt.npy");
    let xt: Vec<f32> = (0..5 * 64).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    write_npy(&noise, &xt, &[5, 1, 8, 8]).unwrap();
    let (a, b) = (p(d.path(), "a.npy"), p(d.path(), "b.npy"));
    // DDIM (eta 0) is deterministic given x_T: the seed must not matter.
    ok(&["--model", &g, "--noise", &noise, "--seed", "1", "--out", &a]);
    ok(&["--model", &g, "--noise", &noise, "--seed", "2", "--out", &b]);
    let (da, shape) = read_npy(&a).unwrap();
    assert_eq!(shape, vec![5, 1, 8, 8]);
    assert_eq!(da, read_npy(&b).unwrap().0);
    // And it is the chain from this x_T, not from seeded noise.
    let c = p(d.path(), "c.npy");
    ok(&["--model", &g, "--n", "5", "--seed", "1", "--out", &c]);
    assert_ne!(da, read_npy(&c).unwrap().0);
    // A different --n is bad usage.
    bad(&["--model", &g, "--noise", &noise, "--n", "4", "--out", &p(d.path(), "x.npy")], "--n 4");
}

#[test]
fn every_output_format() {
    let d = tmp();
    let g = model("gaussian.onnx");
    // .npy: float32 [N, C, H, W], as the scheduler left it (no clipping configured: values
    // around the data mean 0.5).
    let npy = p(d.path(), "s.npy");
    let stdout = ok(&["--model", &g, "--n", "6", "--out", &npy]);
    assert!(stdout.contains("samples/s") && stdout.contains("ms per model evaluation"), "{stdout}");
    let (data, shape) = read_npy(&npy).unwrap();
    assert_eq!(shape, vec![6, 1, 8, 8]);
    let mean = data.iter().sum::<f32>() / data.len() as f32;
    assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
    // .png: one grid, 3 x 2 samples of 8 x 8 with a 2-pixel border.
    let png_path = p(d.path(), "grid.png");
    ok(&["--model", &g, "--n", "6", "--out", &png_path]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height, info.color_type), (3 * 10 + 2, 2 * 10 + 2, png::ColorType::Grayscale));
    // DIR/: one PNG per sample, for FID tools.
    let dir = p(d.path(), "each/");
    ok(&["--model", &g, "--n", "4", "--out", &dir]);
    let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["000000.png", "000001.png", "000002.png", "000003.png"]);
}

#[test]
fn class_label_flag_steers_a_class_conditional_model() {
    let d = tmp();
    let g = model("gaussian_classes.onnx");
    for (label, mean) in [("0", -0.5f32), ("2", 0.5)] {
        let out = p(d.path(), &format!("c{label}.npy"));
        ok(&["--model", &g, "--class-label", label, "--n", "8", "--out", &out]);
        let (data, _) = read_npy(&out).unwrap();
        let m = data.iter().sum::<f32>() / data.len() as f32;
        assert!((m - mean).abs() < 0.05, "label {label}: mean {m}");
    }
    bad(&["--model", &g, "--class-label", "3", "--out", &p(d.path(), "x.npy")], "class label 3");
}

#[test]
fn bad_inputs_exit_2_with_one_line_and_write_nothing() {
    let d = tmp();
    let g = model("gaussian.onnx");
    let out = p(d.path(), "out.npy");
    let missing = p(d.path(), "missing.onnx");
    bad(&["--model", &missing, "--out", &out], "missing.onnx");
    let corrupt = p(d.path(), "corrupt.onnx");
    std::fs::write(&corrupt, b"this is not an onnx file").unwrap();
    bad(&["--model", &corrupt, "--out", &out], "corrupt.onnx");
    let truncated = p(d.path(), "truncated.onnx");
    let bytes = std::fs::read(&g).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    bad(&["--model", &truncated, "--out", &out], "truncated.onnx");
    let wrong_noise = p(d.path(), "wrong.npy");
    write_npy(&wrong_noise, &[0.0; 2 * 3 * 8 * 8], &[2, 3, 8, 8]).unwrap();
    bad(&["--model", &g, "--noise", &wrong_noise, "--out", &out], "wrong.npy");
    let nan_noise = p(d.path(), "nan.npy");
    write_npy(&nan_noise, &[f32::NAN; 64], &[1, 1, 8, 8]).unwrap();
    bad(&["--model", &g, "--noise", &nan_noise, "--out", &out], "NaN");
    let not_npy = p(d.path(), "not.npy");
    std::fs::write(&not_npy, b"garbage").unwrap();
    bad(&["--model", &g, "--noise", &not_npy, "--out", &out], "not.npy");
    bad(&["--model", &g, "--steps", "0", "--out", &out], "steps");
    bad(&["--model", &g, "--steps", "1001", "--out", &out], "steps");
    bad(&["--model", &g, "--sampler", "euler", "--out", &out], "euler");
    bad(&["--model", &g, "--ep", "cuda", "--out", &out], "cuda");
    bad(&["--model", &g, "--ep", "tensorrt", "--out", &out], "tensorrt");
    // bf16 on the CPU provider: refused for the provider (a bf16 CPU) or for the CPU itself.
    bad(&["--model", &g, "--ep", "cpu", "--precision", "bf16", "--out", &out], "bf16");
    bad(&["--model", &g, "--precision", "fp16", "--out", &out], "precision");
    bad(&["--model", &g, "--precision", "int8", "--out", &out], "precision");
    bad(&["--model", &g, "--n", "0", "--out", &out], "n");
    bad(&["--model", &g, "--batch-size", "0", "--out", &out], "batch size");
    bad(&["--model", &g, "--eta", "-1", "--out", &out], "eta");
    bad(&["--model", &g, "--out", &p(d.path(), "samples.txt")], "samples.txt");
    bad(&["--model", &g, "--out", &p(d.path(), "no/such/dir/s.png")], "no/such/dir");
    bad(&["--model", &g, "--class-label", "1", "--out", &out], "not class-conditional");
    // Without a shipped default model, no --model is bad usage.
    #[cfg(not(default_model))]
    bad(&["--out", &out], "--model");
    assert!(!Path::new(&out).exists(), "a failed run left {out}");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_failed_run_leaves_an_existing_output_untouched() {
    let d = tmp();
    let g = model("gaussian.onnx");
    let out = p(d.path(), "keep.npy");
    ok(&["--model", &g, "--n", "2", "--out", &out]);
    let before = std::fs::read(&out).unwrap();
    bad(&["--model", &g, "--steps", "0", "--out", &out], "steps");
    let corrupt = p(d.path(), "corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x01garbage").unwrap();
    bad(&["--model", &corrupt, "--out", &out], "corrupt.onnx");
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

fn runtime_eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runtime")).arg("eval").args(args).env_remove("RUST_LOG").output().unwrap()
}

fn mnist(name: &str) -> String {
    format!("{}/../data/mnist/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn eval_gives_fid_0_for_identical_sets_and_more_for_different_ones() {
    let test = mnist("test-images-idx3-ubyte.gz");
    let o = runtime_eval(&["--samples", &test, "--real", &test, "--n", "300"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let fid: f64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(fid.abs() < 1e-6, "{out}");
    assert!(out.contains("mean confidence") && out.contains("class entropy"), "{out}");
    // The same digits written as PNGs and as .npy read back to the same set.
    let d = tmp();
    let (data, shape) = ddpm_eval::load_images(Path::new(&test)).unwrap();
    let n = 50;
    let part = &data[..n * 784];
    write_npy(p(d.path(), "real.npy"), part, &[n, 1, 28, 28]).unwrap();
    ddpm_io::png::write_png_dir(d.path().join("pngs"), part, [n, 1, 28, 28]).unwrap();
    assert_eq!(shape, [1000, 1, 28, 28]);
    let o = runtime_eval(&["--samples", &p(d.path(), "pngs"), "--real", &p(d.path(), "real.npy")]);
    let out = String::from_utf8_lossy(&o.stdout);
    let fid: f64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(fid < 1e-3, "PNG round trip: {out}");
    // Noise is far from digits.
    let noise: Vec<f32> = (0..n * 784).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    write_npy(p(d.path(), "noise.npy"), &noise, &[n, 1, 28, 28]).unwrap();
    let o = runtime_eval(&["--samples", &p(d.path(), "noise.npy"), "--real", &p(d.path(), "real.npy")]);
    let out = String::from_utf8_lossy(&o.stdout);
    let fid: f64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(fid > 10.0, "noise vs digits: {out}");
}

#[test]
fn eval_rejects_mismatched_shapes_with_exit_2() {
    let d = tmp();
    let small = p(d.path(), "small.npy");
    write_npy(&small, &[0.0; 4 * 64], &[4, 1, 8, 8]).unwrap();
    let test = mnist("test-images-idx3-ubyte.gz");
    let o = runtime_eval(&["--samples", &small, "--real", &test]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("small.npy") && stderr.contains("28x28"), "{stderr}");
    let o = runtime_eval(&["--samples", &test, "--real", &p(d.path(), "missing.npy")]);
    assert_eq!(o.status.code(), Some(2));
}

/// With no --model, the built-in digits model; --class-label steers what the built-in
/// classifier sees.
#[cfg(default_model)]
#[test]
fn sample_without_a_model_uses_the_default_one_and_labels_steer_it() {
    let d = tmp();
    let out = p(d.path(), "default.png");
    let stdout = ok(&["--n", "4", "--steps", "10", "--out", &out]);
    assert!(stdout.contains("wrote 4 samples"), "{stdout}");
    let mut ex =
        ddpm_eval::FeatureExtractor::from_memory(include_bytes!("../../models/pretrained/digits/classifier.onnx"), "classifier").unwrap();
    for label in [1usize, 7] {
        let npy = p(d.path(), &format!("l{label}.npy"));
        ok(&["--n", "10", "--steps", "20", "--class-label", &label.to_string(), "--seed", "3", "--out", &npy]);
        let (data, shape) = read_npy(&npy).unwrap();
        assert_eq!(shape, vec![10, 1, 28, 28]);
        let (_, logits) = ex.features(&data, 10).unwrap();
        let (_, _, pred) = ddpm_eval::class_stats(&logits.unwrap(), 10);
        let hits = pred.iter().filter(|&&p| p == label).count();
        assert!(hits >= 8, "label {label}: the classifier sees {pred:?}");
    }
}

fn runtime_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runtime"));
    c.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// --precision bf16 samples close to fp32 (same seed) and not byte-identical to them where
/// the CPU has bf16 arithmetic; elsewhere it exits 2 naming what the CPU lacks, and auto
/// gives the fp32 bytes and says so. The model cache folder is filled on the first run and
/// --no-model-cache writes nothing.
#[test]
fn bf16_is_close_to_fp32_and_the_model_cache_is_used() {
    let d = tmp();
    let model = format!("{}/../models/pretrained/digits/digits.onnx", env!("CARGO_MANIFEST_DIR"));
    let cache = p(d.path(), "cache");
    let (a, b) = (p(d.path(), "fp32.npy"), p(d.path(), "bf16.npy"));
    let common = ["--model", &model, "--n", "4", "--steps", "10", "--seed", "5", "--model-cache", &cache];
    ok(&[&common[..], &["--out", &a]].concat());
    assert!(std::fs::read_dir(format!("{cache}/optimized")).unwrap().count() == 1, "fp32: one optimized model cached");
    let cpu = ddpm_runtime::CpuFeatures::get();
    if cpu.has_bf16() {
        eprintln!("branch: this CPU has bf16 arithmetic ({})", cpu.summary());
        ok(&[&common[..], &["--precision", "bf16", "--out", &b]].concat());
        assert!(std::fs::read_dir(format!("{cache}/openvino")).unwrap().count() >= 1, "bf16: OpenVINO's compiled model cached");
        let ((x, _), (y, _)) = (read_npy(&a).unwrap(), read_npy(&b).unwrap());
        let mean_abs = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).sum::<f32>() / x.len() as f32;
        assert!(mean_abs > 0.0, "bf16 gave the fp32 bytes: not reduced precision");
        assert!(mean_abs < 0.05, "bf16 samples differ from fp32 by {mean_abs} on average");
    } else {
        eprintln!("branch: no bf16 arithmetic on this CPU ({})", cpu.summary());
        bad(&[&common[..], &["--precision", "bf16", "--out", &b]].concat(), "no bf16 arithmetic");
        assert!(!Path::new(&b).exists());
        let out = runtime(&[&common[..], &["--precision", "auto", "--out", &b]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("precision auto: fp32 (this CPU has no bf16 arithmetic"), "{stderr}");
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "auto's fp32 is not the fp32 run");
    }
    // The default cache folder is $DDPM_RS_CACHE/models; --no-model-cache leaves it alone.
    let home = p(d.path(), "home");
    for (flag, expect) in [(Some("--no-model-cache"), false), (None, true)] {
        let out = Command::new(env!("CARGO_BIN_EXE_runtime"))
            .args(["sample", "--threads", "1", "--model", &model, "--n", "1", "--steps", "2", "--out", &p(d.path(), "c.npy")])
            .args(flag)
            .env("DDPM_RS_CACHE", &home)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(Path::new(&home).join("models/optimized").is_dir(), expect, "{flag:?}");
    }
}

/// The branch of a CPU without bf16, taken on every machine: DDPM_RS_CPU_MASK hides the
/// AVX-512 and AMX features from the runtime's detection. bf16 is refused naming what is
/// missing (and that it was masked), auto runs fp32 and says why, and `runtime info` agrees.
#[test]
fn without_bf16_arithmetic_bf16_is_refused_and_auto_runs_fp32() {
    let d = tmp();
    let model = format!("{}/../models/pretrained/digits/digits.onnx", env!("CARGO_MANIFEST_DIR"));
    let mask = [("DDPM_RS_CPU_MASK", "avx512,amx")];
    let (a, b, c) = (p(d.path(), "fp32.npy"), p(d.path(), "bf16.npy"), p(d.path(), "auto.npy"));
    let common = ["sample", "--threads", "1", "--model", &model, "--n", "2", "--steps", "4", "--seed", "3", "--no-model-cache"];
    let o = runtime_env(&[&common[..], &["--out", &a]].concat(), &mask);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = runtime_env(&[&common[..], &["--precision", "bf16", "--out", &b]].concat(), &mask);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{stderr}");
    assert!(stderr.contains("no bf16 arithmetic") && stderr.contains("avx512_bf16") && stderr.contains("amx_bf16"), "{stderr}");
    assert!(!Path::new(&b).exists());
    let o = runtime_env(&[&common[..], &["--precision", "auto", "--out", &c]].concat(), &mask);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("precision auto: fp32 (this CPU has no bf16 arithmetic"), "{stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("precision auto: fp32"));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap(), "auto's fp32 is not the fp32 run");
    let o = runtime_env(&["info", "--json"], &mask);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["cpu"]["bf16_arithmetic"], false, "{info}");
    assert_eq!(info["precisions"]["bf16"], false, "{info}");
    assert_eq!(info["precisions"]["auto"], "fp32 on cpu", "{info}");
    assert!(info["cpu"]["missing"].as_array().unwrap().iter().any(|f| f == "avx512_bf16"), "{info}");
}

/// `runtime info`: one screen for a bug report, and the same as JSON.
#[test]
fn info_describes_the_library_cpu_precisions_cache_and_model() {
    let d = tmp();
    let cache = p(d.path(), "cache");
    let o = runtime_env(&["info", "--model-cache", &cache], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "ddpm-rs runtime",
        "ONNX Runtime 1.",
        "execution providers: ",
        "CPUExecutionProvider",
        "CPU: ",
        "features: ",
        "precision: fp32 yes",
        "model cache: ",
        "built-in model: ",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    let o = runtime_env(&["info", "--json"], &[]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cpu = ddpm_runtime::CpuFeatures::get();
    assert_eq!(info["cpu"]["bf16_arithmetic"], cpu.has_bf16());
    assert_eq!(info["cpu"]["features"].as_array().unwrap().len(), cpu.present().len());
    assert!(info["onnxruntime"]["execution_providers"].as_array().unwrap().iter().any(|p| p == "CPUExecutionProvider"), "{info}");
}

/// OpenVINO's compiled-model cache is checked like the CPU one: a blob replaced under its
/// name is removed (with a warning) and recompiled, never loaded; the samples stay the same.
#[test]
fn the_openvino_cache_checks_what_it_loads() {
    let d = tmp();
    let model = format!("{}/../models/pretrained/digits/digits.onnx", env!("CARGO_MANIFEST_DIR"));
    let cache = p(d.path(), "cache");
    let run = |out: &str| {
        let o = runtime_env(
            &[
                "sample",
                "--threads",
                "1",
                "--model",
                &model,
                "--ep",
                "openvino",
                "--n",
                "2",
                "--steps",
                "3",
                "--model-cache",
                &cache,
                "--out",
                out,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let (a, b, c) = (p(d.path(), "a.npy"), p(d.path(), "b.npy"), p(d.path(), "c.npy"));
    run(&a);
    let second = run(&b);
    assert!(!second.contains("removed"), "a blob the runtime wrote itself was not trusted: {second}");
    let blobs: Vec<PathBuf> = std::fs::read_dir(format!("{cache}/openvino")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(!blobs.is_empty(), "OpenVINO wrote no compiled model");
    for blob in &blobs {
        let mut bytes = std::fs::read(blob).unwrap();
        bytes.extend_from_slice(b"placed by someone else");
        std::fs::remove_file(blob).unwrap();
        std::fs::write(blob, bytes).unwrap();
    }
    let third = run(&c);
    assert!(third.contains("not what this runtime wrote to its cache"), "{third}");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

/// `--model-name` picks a built-in model; an unknown name is exit 2 listing the built-in ones.
#[cfg(default_model)]
#[test]
fn model_name_picks_a_built_in_model() {
    let d = tmp();
    let (a, b) = (p(d.path(), "a.npy"), p(d.path(), "b.npy"));
    ok(&["--n", "2", "--steps", "2", "--seed", "3", "--out", &a]);
    ok(&["--model-name", "digits", "--n", "2", "--steps", "2", "--seed", "3", "--out", &b]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "--model-name digits is the default model");
    bad(&["--model-name", "imagenet", "--out", &p(d.path(), "c.npy")], "built in: digits");
}

/// The second shipped model (improved DDPM: learned_range variances, cosine schedule) is
/// built in as `digits-hybrid`: the same bytes as its file, a short DDPM chain (respaced betas
/// at both ends of the learned interpolation) gives finite samples in [-1, 1], and it is not
/// the default.
#[test]
fn the_hybrid_model_is_built_in() {
    let d = tmp();
    let file = format!("{}/../models/pretrained/digits-hybrid/digits-hybrid.onnx", env!("CARGO_MANIFEST_DIR"));
    let (a, b, c) = (p(d.path(), "a.npy"), p(d.path(), "b.npy"), p(d.path(), "c.npy"));
    let flags = ["--sampler", "ddpm", "--steps", "10", "--n", "4", "--seed", "5", "--class-label", "3"];
    ok(&[&["--model-name", "digits-hybrid", "--out", &a][..], &flags].concat());
    ok(&[&["--model", &file, "--out", &b][..], &flags].concat());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "--model-name digits-hybrid is the shipped file");
    let (x, shape) = read_npy(Path::new(&a)).unwrap();
    assert_eq!(shape, vec![4, 1, 28, 28]);
    assert!(x.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-6), "samples outside [-1, 1]");
    ok(&[&["--model-name", "digits", "--out", &c][..], &flags].concat());
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap(), "the hybrid model is another network");
}

/// `--guidance-scale`: 1 is no guidance (the same bytes); a scale on a model without a null
/// label, or a NaN or negative scale, is exit 2 with one line.
#[test]
fn guidance_scale_flags() {
    let d = tmp();
    let g = model("gaussian_classes.onnx");
    let (a, b) = (p(d.path(), "a.npy"), p(d.path(), "b.npy"));
    ok(&["--model", &g, "--n", "3", "--steps", "4", "--seed", "2", "--out", &a]);
    ok(&["--model", &g, "--n", "3", "--steps", "4", "--seed", "2", "--guidance-scale", "1", "--out", &b]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let out = p(d.path(), "c.npy");
    bad(&["--model", &g, "--guidance-scale", "3", "--out", &out], "no null label");
    bad(&["--model", &g, "--guidance-scale", "nan", "--out", &out], "--guidance-scale NaN");
    bad(&["--model", &g, "--guidance-scale", "-2", "--out", &out], "--guidance-scale -2");
    assert!(!Path::new(&out).exists());
}

fn runtime_cmd(cmd: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runtime")).arg(cmd).args(args).env_remove("RUST_LOG").output().unwrap()
}

#[test]
fn shards_drawn_apart_and_merged_are_the_bytes_of_one_run() {
    let d = tmp();
    // A class-conditional model: the uniform labels are per-sample streams too.
    let g = model("gaussian_classes.onnx");
    for sampler in ["ddpm", "ddim"] {
        let common = ["--model", &g, "--sampler", sampler, "--steps", "12", "--seed", "11", "--batch-size", "3"];
        let whole = p(d.path(), &format!("{sampler}-whole.npy"));
        ok(&[&common[..], &["--n", "7", "--out", &whole]].concat());
        let mut shards = Vec::new();
        for (first, n) in [("0", "2"), ("2", "4"), ("6", "1")] {
            let out = p(d.path(), &format!("{sampler}-{first}.npy"));
            ok(&[&common[..], &["--first-index", first, "--n", n, "--out", &out]].concat());
            shards.push(out);
        }
        let merged = p(d.path(), &format!("{sampler}-merged.npy"));
        let args: Vec<&str> = ["--out", merged.as_str()].into_iter().chain(shards.iter().map(String::as_str)).collect();
        let out = runtime_cmd("merge", &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&merged).unwrap(), std::fs::read(&whole).unwrap(), "{sampler}: merged shards differ from one run");
        // A shard is not the start of the set: its samples are the set's samples 2 .. 5.
        let (second, all) = (read_npy(&shards[1]).unwrap().0, read_npy(&whole).unwrap().0);
        let per = all.len() / 7;
        assert_eq!(second[..], all[2 * per..6 * per]);
        assert_ne!(second[..per], all[..per]);
    }
    // The merged set as a grid of 7 columns: 7 samples wide, 1 high.
    let grid = p(d.path(), "grid.png");
    let out = runtime_cmd(
        "merge",
        &["--out", &grid, "--cols", "7", &p(d.path(), "ddim-0.npy"), &p(d.path(), "ddim-2.npy"), &p(d.path(), "ddim-6.npy")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, _, gh, gw) = ddpm_io::png::read_png(Path::new(&grid)).unwrap();
    assert!(gw > 5 * gh, "7 columns, 1 row: {gw}x{gh}");
    // Shards of different sample shapes do not merge.
    let other = p(d.path(), "other.npy");
    write_npy(&other, &[0.0; 2 * 4], &[2, 1, 2, 2]).unwrap();
    let merged = p(d.path(), "bad-merge.npy");
    let out = runtime_cmd("merge", &["--out", &merged, &p(d.path(), "ddim-0.npy"), &other]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("other.npy"));
    assert!(!Path::new(&merged).exists());
    // A shard with NaN in it, and --out naming one of the shards (it would be replaced by
    // the merged set): exit 2, one line, and the shard is left as it was.
    let nan = p(d.path(), "nan.npy");
    write_npy(&nan, &[f32::NAN; 4], &[1, 1, 2, 2]).unwrap();
    let shard = p(d.path(), "ddim-2.npy");
    let before = std::fs::read(&shard).unwrap();
    for (args, needle) in [
        (vec!["--out", merged.as_str(), other.as_str(), nan.as_str()], "nan.npy: contains NaN"),
        (vec!["--out", shard.as_str(), p(d.path(), "ddim-0.npy").as_str(), shard.as_str()], "is also the shard"),
    ] {
        let out = runtime_cmd("merge", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle) && stderr.lines().count() == 1, "{args:?}: {stderr}");
    }
    assert_eq!(std::fs::read(&shard).unwrap(), before);
    assert!(!Path::new(&merged).exists());
}

#[test]
fn plot_draws_one_panel_per_y_and_refuses_bad_tables() {
    let d = tmp();
    let csv = p(d.path(), "sweep.csv");
    std::fs::write(&csv, "scale,fid,floor,worst\n1,58.9,49.0,0.955\n1.5,57.1,49.0,0.98\n2,58.0,49.0,0.99\n").unwrap();
    let png = p(d.path(), "sweep.png");
    let out = runtime_cmd("plot", &["--csv", &csv, "--x", "scale", "--y", "fid,floor", "--y", "worst", "--out", &png]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, c, h, w) = ddpm_io::png::read_png(Path::new(&png)).unwrap();
    assert_eq!((c, h, w), (3, 420, 2 * 560), "two panels side by side");
    let before = std::fs::read(&png).unwrap();
    let bad_plot = |csv_text: &str, args: &[&str], needle: &str| {
        std::fs::write(&csv, csv_text).unwrap();
        let all: Vec<&str> = ["--csv", csv.as_str(), "--out", png.as_str()].into_iter().chain(args.iter().copied()).collect();
        let out = runtime_cmd("plot", &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{csv_text:?} {args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(needle), "{args:?}: {:?} does not mention {needle:?}", lines[0]);
        assert_eq!(std::fs::read(&png).unwrap(), before, "{args:?}: the chart already written changed");
    };
    let good = "scale,fid\n1,58.9\n2,57\n";
    bad_plot(good, &["--x", "scale", "--y", "fdi"], "no column `fdi`");
    bad_plot(good, &["--x", "step", "--y", "fid"], "no column `step`");
    bad_plot("scale,fid\n1,58.9\n2,NaN\n", &["--x", "scale", "--y", "fid"], "expected a finite number");
    bad_plot("scale,fid\n1,58.9\n2,abc\n", &["--x", "scale", "--y", "fid"], "`abc`");
    bad_plot("scale,fid\n1,58.9\n2\n", &["--x", "scale", "--y", "fid"], "row 3");
    bad_plot("scale,fid\n", &["--x", "scale", "--y", "fid"], "no data rows");
    bad_plot("scale,fid\n1,-1\n", &["--x", "scale", "--y", "fid", "--log-y"], "--log-y");
    bad_plot("scale,fid\n1,-1e308\n2,1e308\n", &["--x", "scale", "--y", "fid"], "span more than");
    bad_plot(good, &["--x", "scale", "--y", "fid", "--title", "a", "--title", "b"], "one per panel");
    bad_plot(good, &["--x", "scale", "--y", "fid", "--filter", "scale"], "COLUMN=VALUE");
    bad_plot("scale,fid,fid\n1,58.9,3\n", &["--x", "scale", "--y", "fid"], "column `fid` appears twice");
    bad_plot("", &["--x", "scale", "--y", "fid"], "no header row");
    std::fs::remove_file(&csv).unwrap();
    let out = runtime_cmd("plot", &["--csv", &csv, "--x", "scale", "--y", "fid", "--out", &png]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sweep.csv"));
    let out = runtime_cmd("plot", &["--csv", &png, "--x", "scale", "--y", "fid", "--out", &p(d.path(), "x.jpg")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FILE.png"));
}
