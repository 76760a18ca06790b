//! `trainer fit` end to end on generated data: an image folder and an IDX pair; the run
//! loads back in libtorch and exports to a verified .onnx; killed (SIGKILL) and
//! interrupted (Ctrl-C) runs resume to the same bytes as an uninterrupted one; the NaN
//! guard; bad data and flags.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ddpm_models::{UNet2DModel, UNetCheckpoint};

const TINY: &str = r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [16, 32],
  "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8, "attention_head_dim": 16,
  "num_class_embeds": 2, "dropout": 0.1}"#;

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.json");
    std::fs::write(&p, text).unwrap();
    p
}

/// 8x8 gray IDX digits: class 0 a bright left half, class 1 a bright top half, with noise.
fn write_idx(dir: &Path, n: usize) -> PathBuf {
    use flate2::write::GzEncoder;
    let mut imgs = vec![0u8, 0, 8, 3];
    for d in [n as u32, 8, 8] {
        imgs.extend(d.to_be_bytes());
    }
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let class = (i % 2) as u8;
        for y in 0..8 {
            for x in 0..8 {
                let on = if class == 0 { x < 4 } else { y < 4 };
                imgs.push(if on { 200 + ((i * 7 + x * 3 + y) % 50) as u8 } else { ((i + x * y) % 40) as u8 });
            }
        }
        labels.push(class);
    }
    let path = dir.join("train-images-idx3-ubyte.gz");
    let mut gz = GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
    gz.write_all(&imgs).unwrap();
    gz.finish().unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    path
}

/// Two class folders of 12x10 RGB PNGs (resized and cropped to 8x8), plus a corrupt file.
fn write_folder(dir: &Path) {
    for (c, name) in ["circles", "squares"].iter().enumerate() {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..6 {
            let img = image::RgbImage::from_fn(12, 10, |x, y| {
                let v = if c == 0 { ((x as i32 - 6).pow(2) + (y as i32 - 5).pow(2) < 12) as u8 } else { (x > 3 && x < 9) as u8 };
                image::Rgb([v * 200 + i as u8, 40, 255 - v * 100])
            });
            img.save(d.join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(dir.join("squares").join("broken.png"), b"not a png").unwrap();
}

fn ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn fit_on_an_image_folder_then_load_in_tch_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("images");
    write_folder(&data);
    let cfg = write_config(tmp.path(), &TINY.replace("\"in_channels\": 1, \"out_channels\": 1", "\"in_channels\": 3, \"out_channels\": 3"));
    let run = tmp.path().join("run");
    let o = trainer(&[
        "fit",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--steps",
        "24",
        "--batch-size",
        "4",
        "--save-every",
        "12",
        "--sample-every",
        "24",
        "--preview-steps",
        "4",
        "--flip",
        "--threads",
        "1",
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped 1 unreadable"), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    assert!(csv.starts_with("step,loss"));
    assert_eq!(csv.lines().count(), 25);
    assert!(run.join("loss.png").is_file() && run.join("samples/step-00000024.png").is_file());
    // unet/ holds the EMA weights in diffusers' layout: loads and runs in libtorch.
    let ckpt = UNetCheckpoint::load(&run.join("unet")).unwrap();
    let model = UNet2DModel::new(ckpt.config.clone()).unwrap();
    let x = vec![0.1f32; 2 * 3 * 64];
    let out = ddpm_models::tch_backend::forward_f32(&model, &ckpt.weights, &x, [2, 3, 8, 8], &[10, 900], Some(&[0, 1])).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
    // And exports to a verified .onnx (checked in ONNX Runtime against libtorch).
    let c = ddpm_exporter::Checkpoint::open(&run).unwrap();
    assert!(c.scheduler_source.is_some());
    let report = ddpm_exporter::export_checkpoint(&c, &tmp.path().join("m.onnx"), &Default::default(), Some(1e-4)).unwrap();
    assert!(report.max_rel_error.unwrap() <= 1e-4);
}

fn run_args<'a>(data: &'a str, run: &'a str, cfg: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "fit",
        "--data",
        data,
        "--out",
        run,
        "--config",
        cfg,
        "--steps",
        steps,
        "--batch-size",
        "4",
        "--save-every",
        "4",
        "--sample-every",
        "0",
        "--threads",
        "1",
        "--seed",
        "7",
    ]
}

fn same_run(a: &Path, b: &Path) {
    for f in ["unet/diffusion_pytorch_model.safetensors", "loss.csv"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }
    let latest = std::fs::read_to_string(a.join("train_state/LATEST")).unwrap();
    for f in ["params.safetensors", "ema.safetensors", "adam_m.safetensors", "adam_v.safetensors"] {
        let p = Path::new("train_state").join(latest.trim()).join(f);
        assert!(std::fs::read(a.join(&p)).unwrap() == std::fs::read(b.join(&p)).unwrap(), "{} differs", p.display());
    }
}

/// Starts a run and returns once it has saved a checkpoint past step 0, still running.
fn start_until_checkpoint(args: &[&str], run: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let latest = std::fs::read_to_string(run.join("train_state/LATEST")).unwrap_or_default();
        if latest.trim() > "step-00000000" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

/// Starts a run, waits until it has saved a checkpoint past step 0, then sends `signal`.
fn start_and_stop(args: &[&str], run: &Path, signal: &str) -> std::process::ExitStatus {
    let mut child = start_until_checkpoint(args, run);
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be stopped");
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    child.wait().unwrap()
}

#[test]
fn killed_and_interrupted_runs_resume_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = write_idx(tmp.path(), 40);
    let cfg = write_config(tmp.path(), TINY);
    let (d, c) = (idx.to_str().unwrap(), cfg.to_str().unwrap());
    let whole = tmp.path().join("whole");
    ok(&trainer(&run_args(d, whole.to_str().unwrap(), c, "80")));

    // SIGKILL mid-run, then --resume.
    let killed = tmp.path().join("killed");
    let args = run_args(d, killed.to_str().unwrap(), c, "80");
    let status = start_and_stop(&args, &killed, "-KILL");
    assert!(!status.success());
    let mut resume = args.clone();
    resume.push("--resume");
    ok(&trainer(&resume));
    same_run(&whole, &killed);

    // Ctrl-C (SIGINT): saves a checkpoint, exits 130, resumes.
    let inter = tmp.path().join("interrupted");
    let args = run_args(d, inter.to_str().unwrap(), c, "80");
    let status = start_and_stop(&args, &inter, "-INT");
    assert_eq!(status.code(), Some(130));
    let mut resume = args.clone();
    resume.push("--resume");
    ok(&trainer(&resume));
    same_run(&whole, &inter);
}

#[test]
fn nan_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = write_idx(tmp.path(), 16);
    let cfg = write_config(tmp.path(), TINY);
    let run = tmp.path().join("run");
    let o = trainer(&[
        "fit",
        "--data",
        idx.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--steps",
        "50",
        "--batch-size",
        "4",
        "--save-every",
        "1",
        "--sample-every",
        "0",
        "--lr",
        "1e30",
        "--warmup",
        "1",
        "--grad-clip",
        "0",
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("loss is") && stderr.contains("last good checkpoint"), "{stderr}");
    // The last checkpoint is intact and finite.
    let latest = std::fs::read_to_string(run.join("train_state/LATEST")).unwrap();
    let w = ddpm_models::weights::read_safetensors(&run.join("train_state").join(latest.trim()).join("ema.safetensors")).unwrap();
    assert!(w.values().all(|t| t.data.iter().all(|v| v.is_finite())));
    UNetCheckpoint::load(&run.join("unet")).unwrap();
}

fn bad(args: &[&str], needle: &str) {
    let o = trainer(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(lines[0].contains(needle), "{:?} does not name {needle:?}", lines[0]);
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_data_and_flags_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let c = cfg.to_str().unwrap();
    let out = tmp.path().join("run");
    let o = out.to_str().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    bad(&["fit", "--data", empty.to_str().unwrap(), "--out", o, "--config", c], "no usable image");
    // wrong channel count in the config
    let idx_dir = tmp.path().join("idx");
    std::fs::create_dir_all(&idx_dir).unwrap();
    let idx = write_idx(&idx_dir, 8);
    let two = tmp.path().join("two");
    std::fs::create_dir_all(&two).unwrap();
    let cfg2 = write_config(&two, &TINY.replace("\"in_channels\": 1, \"out_channels\": 1", "\"in_channels\": 2, \"out_channels\": 2"));
    bad(&["fit", "--data", idx.to_str().unwrap(), "--out", o, "--config", cfg2.to_str().unwrap()], "in_channels");
    let rgb = tmp.path().join("rgb");
    std::fs::create_dir_all(&rgb).unwrap();
    let cfg3 = write_config(&rgb, &TINY.replace("\"in_channels\": 1, \"out_channels\": 1", "\"in_channels\": 3, \"out_channels\": 3"));
    bad(&["fit", "--data", idx.to_str().unwrap(), "--out", o, "--config", cfg3.to_str().unwrap()], "in_channels");
    // corrupt IDX
    let corrupt = tmp.path().join("corrupt-images-idx3-ubyte");
    std::fs::write(&corrupt, [0u8, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 8, 1, 2, 3]).unwrap();
    bad(&["fit", "--data", corrupt.to_str().unwrap(), "--out", o, "--config", c], "corrupt-images-idx3-ubyte");
    // unknown preset, unknown config key, missing data
    bad(&["fit", "--data", idx.to_str().unwrap(), "--out", o, "--preset", "imagenet"], "imagenet");
    let cfg4 = write_config(&tmp.path().join("idx"), &TINY.replace("\"dropout\"", "\"dropuot\""));
    bad(&["fit", "--data", idx.to_str().unwrap(), "--out", o, "--config", cfg4.to_str().unwrap()], "dropuot");
    bad(&["fit", "--data", "/no/such/data", "--out", o, "--config", c], "/no/such/data");
    assert!(!out.join("train_state").exists(), "a failed start left a run behind");
    // the classifier: no epochs to train is refused before anything is written
    let clf = tmp.path().join("classifier.onnx");
    bad(&["classifier", "--data", idx.to_str().unwrap(), "--epochs", "0", "--out", clf.to_str().unwrap()], "--epochs");
    assert!(!clf.exists());
}

/// Killed (SIGKILL) at pseudo-random moments after a non-zero checkpoint and resumed as a
/// user would, with `--data D --out RUN --resume` and nothing else: the run keeps its own
/// options (steps, save_every, threads, ...) and ends bit-identical to an uninterrupted one.
#[test]
fn resumed_with_only_data_out_and_resume_the_run_keeps_its_own_options() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = write_idx(tmp.path(), 40);
    let cfg = write_config(tmp.path(), TINY);
    let (d, c) = (idx.to_str().unwrap(), cfg.to_str().unwrap());
    let whole = tmp.path().join("whole");
    ok(&trainer(&run_args(d, whole.to_str().unwrap(), c, "60")));
    for (i, delay_ms) in [(0u64, 0u64), (1, 37), (2, 151)] {
        let run = tmp.path().join(format!("killed{i}"));
        let args = run_args(d, run.to_str().unwrap(), c, "60");
        let mut child = start_until_checkpoint(&args, &run);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // A kill can land after the last step: the resume then has nothing left to train.
        let o = trainer(&["fit", "--data", d, "--out", run.to_str().unwrap(), "--resume"]);
        ok(&o);
        same_run(&whole, &run);
        let latest = std::fs::read_to_string(run.join("train_state/LATEST")).unwrap();
        assert_eq!(latest.trim(), "step-00000060", "kill {i}: the resumed run did not end at its own 60 steps");
    }
}

/// L_hybrid with learned_range and importance-sampled timesteps (T = 10, so that the loss
/// history fills within the run and p_t stops being uniform): a run killed mid-way and
/// resumed ends with the same bytes as the uninterrupted run, its timestep history included.
#[test]
fn an_importance_sampled_hybrid_run_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = write_idx(tmp.path(), 40);
    let cfg = write_config(tmp.path(), &TINY.replace("\"out_channels\": 1", "\"out_channels\": 2"));
    let sched = tmp.path().join("scheduler_config.json");
    std::fs::write(&sched, r#"{"num_train_timesteps": 10, "beta_schedule": "squaredcos_cap_v2", "variance_type": "learned_range"}"#)
        .unwrap();
    let (d, c, s) = (idx.to_str().unwrap(), cfg.to_str().unwrap(), sched.to_str().unwrap());
    let extra = ["--scheduler-config", s, "--loss", "hybrid", "--timestep-sampling", "importance"];
    let whole = tmp.path().join("whole");
    let mut args = run_args(d, whole.to_str().unwrap(), c, "80");
    args.extend(extra);
    ok(&trainer(&args));
    let latest = std::fs::read_to_string(whole.join("train_state/LATEST")).unwrap();
    let history = whole.join("train_state").join(latest.trim()).join("timestep_history.json");
    let h: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    assert!(h["per_t"].as_array().unwrap().iter().all(|l| l.as_array().unwrap().len() == 10), "the history filled up");

    let killed = tmp.path().join("killed");
    let mut args = run_args(d, killed.to_str().unwrap(), c, "80");
    args.extend(extra);
    let status = start_and_stop(&args, &killed, "-KILL");
    assert!(!status.success());
    let mut resume = args.clone();
    resume.push("--resume");
    ok(&trainer(&resume));
    same_run(&whole, &killed);
    let p = Path::new("train_state").join(latest.trim()).join("timestep_history.json");
    assert!(std::fs::read(whole.join(&p)).unwrap() == std::fs::read(killed.join(&p)).unwrap(), "the timestep history differs");
    let scheduler = std::fs::read_to_string(whole.join("scheduler/scheduler_config.json")).unwrap();
    assert!(scheduler.contains("\"variance_type\": \"learned_range\""), "{scheduler}");
}

#[test]
fn objectives_that_do_not_fit_the_network_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = write_idx(tmp.path(), 8);
    let i = idx.to_str().unwrap();
    let one = write_config(tmp.path(), TINY);
    let two_dir = tmp.path().join("two");
    std::fs::create_dir_all(&two_dir).unwrap();
    let two = write_config(&two_dir, &TINY.replace("\"out_channels\": 1", "\"out_channels\": 2"));
    let learned = tmp.path().join("learned.json");
    std::fs::write(&learned, r#"{"variance_type": "learned_range"}"#).unwrap();
    let out = tmp.path().join("run");
    let (o, c1, c2, l) = (out.to_str().unwrap(), one.to_str().unwrap(), two.to_str().unwrap(), learned.to_str().unwrap());
    bad(&["fit", "--data", i, "--out", o, "--config", c2, "--scheduler-config", l], "--loss simple");
    bad(&["fit", "--data", i, "--out", o, "--config", c1, "--scheduler-config", l, "--loss", "hybrid"], "out_channels");
    bad(&["fit", "--data", i, "--out", o, "--config", c1, "--loss", "hybrid"], "--loss hybrid");
    bad(&["fit", "--data", i, "--out", o, "--config", c1, "--timestep-sampling", "importance"], "importance");
    bad(&["fit", "--data", i, "--out", o, "--config", c1, "--loss", "kl"], "kl");
    assert!(!out.exists(), "nothing was written");
}

/// Label dropout for classifier-free guidance: P = 0 is today's training to the byte; with
/// P > 0 the run records its null label (guidance.json), a fine-tune of another run
/// (`--init-from`, the class embedding one row longer) starts from its weights with the
/// mean row added, and is killed and resumed to the same bytes.
#[test]
fn label_dropout_and_a_fine_tune_from_another_run() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = write_idx(tmp.path(), 40);
    let d = idx.to_str().unwrap();
    let cfg = write_config(tmp.path(), TINY);
    let c = cfg.to_str().unwrap();
    // P = 0: the same bytes as a run without the flag.
    let (plain, zero) = (tmp.path().join("plain"), tmp.path().join("zero"));
    ok(&trainer(&run_args(d, plain.to_str().unwrap(), c, "8")));
    let mut args = run_args(d, zero.to_str().unwrap(), c, "8");
    args.extend(["--cond-drop-prob", "0"]);
    ok(&trainer(&args));
    same_run(&plain, &zero);
    assert!(!zero.join("guidance.json").exists());

    // A fine-tune of `plain` with a null label (3 class rows: 0, 1 and the null 2).
    let three_dir = tmp.path().join("three");
    std::fs::create_dir_all(&three_dir).unwrap();
    let three = write_config(&three_dir, &TINY.replace("\"num_class_embeds\": 2", "\"num_class_embeds\": 3"));
    let t = three.to_str().unwrap();
    let src = plain.to_str().unwrap();
    let extra = ["--cond-drop-prob", "0.3", "--init-from", src];
    let whole = tmp.path().join("whole");
    let mut args = run_args(d, whole.to_str().unwrap(), t, "40");
    args.extend(extra);
    ok(&trainer(&args));
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(whole.join("guidance.json")).unwrap()).unwrap();
    assert_eq!(g["null_class_label"], 2);
    // Only the two newest checkpoints are kept: the start is checked on a 4-step run.
    let first = tmp.path().join("first");
    let mut args = run_args(d, first.to_str().unwrap(), t, "4");
    args.extend(extra);
    ok(&trainer(&args));
    let src_w = ddpm_models::UNetCheckpoint::load(&plain.join("unet")).unwrap().weights;
    let w = ddpm_models::weights::read_safetensors(&first.join("train_state").join("step-00000000").join("params.safetensors")).unwrap();
    let (old, new) = (&src_w["class_embedding.weight"], &w["class_embedding.weight"]);
    let dim = old.shape[1];
    assert_eq!(new.shape, vec![3, dim]);
    assert_eq!(&new.data[..2 * dim], &old.data[..], "the trained rows are kept");
    for j in 0..dim {
        let mean = (old.data[j] + old.data[dim + j]) / 2.0;
        assert!((new.data[2 * dim + j] - mean).abs() < 1e-6, "the null row is the mean row");
    }
    // The exported model carries the null label; the runtime reads it and guides by it.
    let ckpt = ddpm_exporter::Checkpoint::open(&first).unwrap();
    let onnx = tmp.path().join("first.onnx");
    ddpm_exporter::export_checkpoint(&ckpt, &onnx, &ddpm_exporter::ExportOptions::default(), None).unwrap();
    let mut model = ddpm_runtime::OnnxDenoiser::builder().intra_threads(1).from_file(&onnx).unwrap();
    let g = model.signature().guidance.expect("metadata guidance_config");
    assert_eq!((g.null_class_label, g.guidance_scale), (2, 1.0));
    let s = model.pipeline().guidance_scale(2.0).steps(3).n(6).run().unwrap();
    assert!(s.labels.unwrap().iter().all(|&l| l < 2), "the null label is never drawn");

    let killed = tmp.path().join("killed");
    let mut args = run_args(d, killed.to_str().unwrap(), t, "40");
    args.extend(extra);
    let status = start_and_stop(&args, &killed, "-KILL");
    assert!(!status.success());
    let mut resume: Vec<&str> = run_args(d, killed.to_str().unwrap(), t, "40");
    resume.extend(["--cond-drop-prob", "0.3", "--resume"]);
    ok(&trainer(&resume));
    same_run(&whole, &killed);

    // Bad inputs: exit 2, one line, nothing written.
    let out = tmp.path().join("bad");
    let o = out.to_str().unwrap();
    bad(&["fit", "--data", d, "--out", o, "--config", t, "--cond-drop-prob", "1.5"], "--cond-drop-prob 1.5");
    bad(&["fit", "--data", d, "--out", o, "--config", t, "--cond-drop-prob", "NaN"], "--cond-drop-prob NaN");
    bad(&["fit", "--data", d, "--out", o, "--config", c, "--cond-drop-prob", "0.1"], "null label");
    bad(&["fit", "--data", d, "--out", o, "--config", t, "--init-from", "/no/such/run"], "/no/such/run");
    assert!(!out.exists());
}

/// `--beta-schedule`, `--variance-type` and `--prediction-type` are the scheduler config's
/// keys: a run started with them records them and trains as the same run started from a
/// `--scheduler-config` file holding them; a resumed run keeps its own, and an unknown
/// name is exit 2.
#[test]
fn schedule_flags_set_the_scheduler_config() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = write_idx(tmp.path(), 16);
    let cfg = write_config(tmp.path(), &TINY.replace("\"out_channels\": 1", "\"out_channels\": 2"));
    let sched = tmp.path().join("scheduler_config.json");
    std::fs::write(
        &sched,
        r#"{"beta_schedule": "squaredcos_cap_v2", "variance_type": "learned_range", "prediction_type": "v_prediction"}"#,
    )
    .unwrap();
    let (d, c) = (idx.to_str().unwrap(), cfg.to_str().unwrap());
    let (flags, file) = (tmp.path().join("flags"), tmp.path().join("file"));
    let mut args = run_args(d, flags.to_str().unwrap(), c, "4");
    args.extend(["--loss", "hybrid", "--beta-schedule", "squaredcos_cap_v2", "--variance-type", "learned_range"]);
    args.extend(["--prediction-type", "v_prediction"]);
    ok(&trainer(&args));
    let mut args2 = run_args(d, file.to_str().unwrap(), c, "4");
    args2.extend(["--loss", "hybrid", "--scheduler-config", sched.to_str().unwrap()]);
    ok(&trainer(&args2));
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(flags.join("scheduler/scheduler_config.json")).unwrap()).unwrap();
    assert_eq!(recorded["beta_schedule"], "squaredcos_cap_v2");
    assert_eq!(recorded["variance_type"], "learned_range");
    assert_eq!(recorded["prediction_type"], "v_prediction");
    same_run(&flags, &file);

    let f = flags.to_str().unwrap();
    bad(&["fit", "--data", d, "--out", f, "--resume", "--steps", "8", "--variance-type", "fixed_small"], "--variance-type fixed_small");
    ok(&trainer(&["fit", "--data", d, "--out", f, "--resume", "--steps", "8", "--beta-schedule", "squaredcos_cap_v2"]));
    let o = tmp.path().join("new").to_str().unwrap().to_string();
    bad(&["fit", "--data", d, "--out", &o, "--config", c, "--beta-schedule", "cosine"], "cosine");
}
