//! `runtime nll` end to end: the bound of the exact Gaussian model (tests/fixtures/onnx/
//! gaussian.onnx) equals the library's on the same images, its CSV and plots are written,
//! and each bad input is exit 2 with one line.

use std::path::Path;
use std::process::{Command, Output};

use ddpm_runtime::likelihood::{variational_bound, variational_bound_resumable, BoundModel, BoundOptions, TermKind};
use ddpm_runtime::{GaussianDenoiser, ModelShape, SchedulerConfig};

fn model(name: &str) -> String {
    format!("{}/../tests/fixtures/onnx/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn nll(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runtime")).arg("nll").args(["--threads", "1"]).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn bad(args: &[&str], needle: &str) {
    let out = nll(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {stderr}");
    assert!(lines[0].contains(needle), "{args:?}: {:?} does not mention {needle:?}", lines[0]);
}

/// 8x8 images on the 256-level grid near the fixture's N(0.5, 0.2^2).
fn images(n: usize) -> Vec<f32> {
    (0..n * 64)
        .map(|i| {
            let u = ((i as u32).wrapping_mul(2654435761) >> 8) as f32 / 16777216.0;
            let v = (0.5 + 0.4 * (u - 0.5)).clamp(-1.0, 1.0);
            ((v + 1.0) * 127.5).round() / 127.5 - 1.0
        })
        .collect()
}

fn last_line(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string()
}

#[test]
fn the_cli_bound_is_the_librarys_and_its_files_are_written() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("x.npy");
    let n = 6;
    let x = images(n);
    ddpm_io::npy::write_npy(&data, &x, &[n, 1, 8, 8]).unwrap();
    let (csv, plot, rd) = (d.path().join("terms.csv"), d.path().join("terms.png"), d.path().join("rd.png"));
    let out = nll(&[
        "--model",
        &model("gaussian.onnx"),
        "--data",
        data.to_str().unwrap(),
        "--t-stride",
        "100",
        "--batch-size",
        "4",
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--rd",
        rd.to_str().unwrap(),
    ]);
    let line = last_line(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("estimate: every 100th KL term"), "{stdout}");
    let value: f64 = line.strip_prefix("NLL <= ").and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(line.contains(&format!("(95%, {n} images)")), "{line}");

    // The library on the same images with the same analytic model (the fixture's tables are
    // its float32 rounding).
    let config = SchedulerConfig { clip_sample: Some(false), ..SchedulerConfig::paper() };
    let bound = BoundModel::from_config(&config).unwrap();
    let shape = ModelShape { channels: 1, height: 8, width: 8, out_channels: 1, num_classes: None };
    let mut g = GaussianDenoiser { mean: 0.5, std: 0.2, schedule: bound.schedule.clone(), shape };
    let b = variational_bound(&mut g, &bound, &x, n, None, &BoundOptions { t_stride: 100, batch_size: 4, seed: 0 }, |_, _| {}).unwrap();
    assert!((value - b.mean()).abs() <= 1e-3 * b.mean().abs() + 1e-4, "CLI {value} vs library {}", b.mean());

    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "term,t,bits_per_dim");
    assert_eq!(rows.len(), 1 + b.terms.len());
    assert!(rows[1].starts_with("prior,1000,") && rows.last().unwrap().starts_with("decoder,0,"), "{text}");
    let kl: f64 = rows.iter().filter(|r| r.starts_with("kl,")).map(|r| r.rsplit(',').next().unwrap().parse::<f64>().unwrap()).sum();
    assert!((kl - b.total(TermKind::Kl)).abs() <= 1e-3 * kl.abs() + 1e-6);
    for png in [&plot, &rd] {
        let (_, c, h, w) = ddpm_io::png::read_png(png).unwrap();
        assert_eq!((c, h, w), (3, 420, 800));
    }
    assert!(Path::new(&rd.with_extension("csv")).is_file());
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("x.npy");
    ddpm_io::npy::write_npy(&data, &images(2), &[2, 1, 8, 8]).unwrap();
    let wrong = d.path().join("wrong.npy");
    ddpm_io::npy::write_npy(&wrong, &vec![0.0; 2 * 3 * 8 * 8], &[2, 3, 8, 8]).unwrap();
    let big = d.path().join("big.npy");
    ddpm_io::npy::write_npy(&big, &vec![0.0; 2 * 16 * 16], &[2, 1, 16, 16]).unwrap();
    let (g, x) = (model("gaussian.onnx"), data.to_str().unwrap());
    bad(&["--model", &g, "--data", wrong.to_str().unwrap()], "expected 1x8x8");
    bad(&["--model", &g, "--data", big.to_str().unwrap()], "expected 1x8x8");
    bad(&["--model", &model("gaussian_float_t.onnx"), "--data", x], "no scheduler_config");
    bad(&["--model", &g, "--data", x, "--t-stride", "0"], "--t-stride 0");
    bad(&["--model", &model("gaussian_classes.onnx"), "--data", x], "no labels");
    bad(&["--model", &g, "--data", x, "--n", "3"], "holds only 2");
    bad(&["--model", &g, "--data", "/no/such.npy"], "/no/such.npy");
    let empty = d.path().join("empty.npy");
    ddpm_io::npy::write_npy(&empty, &[], &[0, 1, 8, 8]).unwrap();
    bad(&["--model", &g, "--data", empty.to_str().unwrap()], "empty.npy: holds no images");
    bad(&["--model", &g, "--data", x, "--plot", "terms.gif"], "--plot terms.gif");
    // An output path that is a folder is refused before any model evaluation.
    let folder = d.path().to_str().unwrap();
    for flag in ["--csv", "--checkpoint", "--plot", "--rd"] {
        bad(&["--model", &g, "--data", x, flag, folder], "is a folder");
    }
}

fn nll_value(line: &str) -> f64 {
    line.strip_prefix("NLL <= ").and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap()
}

/// `--checkpoint`: a bound continues from saved progress (its saved sums carried over, the
/// rest evaluated), a complete one is not evaluated again, and a file of another bound or
/// a corrupt one is exit 2 with one line.
#[test]
fn a_checkpointed_bound_continues_from_its_saved_progress() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("x.npy");
    let n = 5;
    let x = images(n);
    ddpm_io::npy::write_npy(&data, &x, &[n, 1, 8, 8]).unwrap();
    let ckpt = d.path().join("progress.json");
    let (g, xs, c) = (model("gaussian.onnx"), data.to_str().unwrap(), ckpt.to_str().unwrap());
    let args = ["--model", &g, "--data", xs, "--t-stride", "100", "--batch-size", "2", "--checkpoint", c];
    let whole = last_line(&nll(&args));
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ckpt).unwrap()).unwrap();
    assert_eq!(saved["sittings"], 1);
    assert_eq!(saved["progress"]["terms"].as_array().unwrap().len(), 1 + 11, "the prior and 11 terms: {saved}");

    // Complete: the same figures again, with no model evaluation, and the file as it was
    // (reading it back is not a sitting).
    let before = std::fs::read(&ckpt).unwrap();
    let again = nll(&args);
    assert_eq!(last_line(&again), whole);
    let stdout = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(stdout.contains("over 1 sitting, read back from --checkpoint (nothing evaluated now)"), "{stdout}");
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);

    // Part-way: the library's progress after 4 terms, each image's sum raised by 0.25
    // bits/dim; the continued bound is the uninterrupted one plus 0.25, so the saved sums
    // were carried over and the remaining terms evaluated.
    let config = SchedulerConfig { clip_sample: Some(false), ..SchedulerConfig::paper() };
    let bound = BoundModel::from_config(&config).unwrap();
    let shape = ModelShape { channels: 1, height: 8, width: 8, out_channels: 1, num_classes: None };
    let mut gauss = GaussianDenoiser { mean: 0.5, std: 0.2, schedule: bound.schedule.clone(), shape };
    let mut partial = None;
    let options = BoundOptions { t_stride: 100, batch_size: 2, seed: 0 };
    let stop = variational_bound_resumable(
        &mut gauss,
        &bound,
        &x,
        n,
        None,
        &options,
        None,
        |p| {
            partial = Some(serde_json::to_value(p).unwrap());
            if p.terms().len() == 5 {
                return Err(ddpm_runtime::Error::InvalidArgument("stop".into()));
            }
            Ok(())
        },
        |_, _| {},
    );
    assert!(stop.is_err());
    let mut partial = partial.unwrap();
    for v in partial["per_image"].as_array_mut().unwrap() {
        *v = (f64::from_bits(v.as_u64().unwrap()) + 0.25).to_bits().into();
    }
    let mut file = saved.clone();
    file["progress"] = partial;
    std::fs::write(&ckpt, serde_json::to_string(&file).unwrap()).unwrap();
    let continued = nll_value(&last_line(&nll(&args)));
    assert!((continued - (nll_value(&whole) + 0.25)).abs() < 2e-4, "continued {continued}, uninterrupted {whole}");
    let done: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ckpt).unwrap()).unwrap();
    assert_eq!(done["progress"]["terms"].as_array().unwrap().len(), 12);

    // Another bound, a corrupt file.
    let mut other: Vec<&str> = args.to_vec();
    other.extend(["--seed", "1"]);
    bad(&other, "saved for seed 0, this bound has 1");
    let mut other: Vec<&str> = args.to_vec();
    other.extend(["--n", "4"]);
    bad(&other, "saved for n 5, this bound has 4");
    std::fs::write(&ckpt, "{").unwrap();
    bad(&args, "not a checkpoint of runtime nll");
    std::fs::write(&ckpt, serde_json::to_string(&saved).unwrap().replace("\"kl\"", "\"kk\"")).unwrap();
    bad(&args, "expected prior, kl or decoder");
}

/// 28x28 digits as an IDX pair (images and the labels file beside them) in `dir`.
#[cfg(default_model)]
fn idx_digits(dir: &Path, labels: &[u8]) -> String {
    let n = labels.len() as u32;
    let mut images = [2051u32, n, 28, 28].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    images.extend((0..n as usize * 784).map(|i| if (i % 28) / 9 == 1 { 255 } else { 0 }));
    let mut l = [2049u32, n].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    l.extend_from_slice(labels);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), l).unwrap();
    dir.join("t10k-images-idx3-ubyte").to_str().unwrap().to_string()
}

/// The built-in digits model was trained for classifier-free guidance: `--unconditional`
/// conditions it on its null label (another bound than the images' own labels give), and a
/// data label equal to the null label is exit 2, not an unconditional term in disguise.
#[cfg(default_model)]
#[test]
fn unconditional_uses_the_null_label_of_a_guided_model() {
    let d = tempfile::tempdir().unwrap();
    let data = idx_digits(d.path(), &[1, 1, 7]);
    let quick = ["--data", &data, "--t-stride", "250", "--batch-size", "3"];
    let conditional = nll(&quick);
    assert!(String::from_utf8_lossy(&conditional.stdout).contains("conditioned on the images' own labels"));
    let unconditional = nll(&[&quick[..], &["--unconditional"]].concat());
    let stdout = String::from_utf8_lossy(&unconditional.stdout).to_string();
    assert!(stdout.contains("conditioned on the model's null label 10"), "{stdout}");
    let value =
        |out: &Output| -> f64 { last_line(out).strip_prefix("NLL <= ").unwrap().split_whitespace().next().unwrap().parse().unwrap() };
    let (c, u) = (value(&conditional), value(&unconditional));
    assert!(c.is_finite() && u.is_finite() && c != u, "conditional {c}, unconditional {u}");

    let d2 = tempfile::tempdir().unwrap();
    bad(&["--data", &idx_digits(d2.path(), &[1, 10, 7]), "--t-stride", "250"], "label 10 is the null label");
    let d3 = tempfile::tempdir().unwrap();
    bad(&["--data", &idx_digits(d3.path(), &[1, 11, 7]), "--t-stride", "250"], "label 11 outside the classes 0..=9");
}
