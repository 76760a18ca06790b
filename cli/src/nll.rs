//! `runtime nll`: the variational bound (Ho et al. 2020, eq. 5) of a model on a set of real
//! images, in bits per dimension, term by term, and the rate-distortion curve (section 4.3).

use std::path::PathBuf;

use ddpm_runtime::likelihood::{variational_bound_resumable, BoundModel, BoundOptions, BoundProgress, TermKind};
use ddpm_runtime::{Denoiser, OnnxDenoiser};
use sha2::{Digest, Sha256};

use crate::{bad, pretrained};

#[derive(clap::Args)]
pub struct NllArgs {
    /// The .onnx model [default: the built-in digits model].
    #[arg(long, value_name = "FILE.onnx")]
    model: Option<PathBuf>,
    /// A built-in model instead (`runtime info` lists them).
    #[arg(long, value_name = "NAME", conflicts_with = "model")]
    model_name: Option<String>,
    /// Real images: an MNIST IDX images file (labels from the IDX file beside it), a folder
    /// of PNGs (class sub-folders give labels), a float32 .npy, or CIFAR-10 batches.
    #[arg(long)]
    data: PathBuf,
    /// Use only the first N images.
    #[arg(long)]
    n: Option<usize>,
    /// Images per model evaluation (does not change the result).
    #[arg(long, default_value_t = 16, allow_hyphen_values = true)]
    batch_size: usize,
    /// The noise of x_t ~ q(x_t | x_0).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    seed: u64,
    /// Evaluate every K-th KL term (and t = T - 1 and 0), each scaled by the number of terms
    /// it stands for: a quicker estimate (said in the output); 1 is the exact bound (T model
    /// evaluations per batch).
    #[arg(long, value_name = "K", default_value_t = 1, allow_hyphen_values = true)]
    t_stride: usize,
    /// Condition a class-conditional model on its null label instead of the images' labels
    /// (models trained for classifier-free guidance).
    #[arg(long)]
    unconditional: bool,
    /// One row per term, averaged over the images: term,t,bits_per_dim.
    #[arg(long, value_name = "FILE.csv")]
    csv: Option<PathBuf>,
    /// The terms against t (log scale).
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// The rate-distortion curve: distortion (RMSE of the x_0 predicted from x_t, [0, 255]
    /// scale) against rate (the bits/dim of holding x_t: the prior and the KL terms above t);
    /// its numbers go to FILE.csv beside it.
    #[arg(long, value_name = "FILE.png")]
    rd: Option<PathBuf>,
    /// Save the bound's progress to FILE.json as it goes (after a timestep, at most every
    /// 10 s, and at the end) and continue from it when it exists: a stopped bound picks up
    /// where it was, with the same result. It belongs to one model, image set, --n, --seed,
    /// --t-stride and --unconditional; another is exit 2.
    #[arg(long, value_name = "FILE.json")]
    checkpoint: Option<PathBuf>,
    /// Intra-op threads [default: physical cores].
    #[arg(long, allow_hyphen_values = true)]
    threads: Option<usize>,
    /// The most memory a request may use (e.g. 8G) [default: 80% of the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = crate::parse_size)]
    max_memory: Option<u64>,
}

fn check_png_path(flag: &str, p: &std::path::Path) -> anyhow::Result<()> {
    if p.is_dir() {
        return Err(bad(format!("{flag} {}: is a folder, expected a FILE.png", p.display())));
    }
    if !p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(bad(format!("{flag} {}: expected a FILE.png", p.display())));
    }
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(bad(format!("{flag} {}: the folder {} does not exist", p.display(), parent.display())));
    }
    Ok(())
}

pub fn nll(args: NllArgs) -> anyhow::Result<()> {
    if let Some(m) = args.max_memory {
        ddpm_runtime::limits::set_memory_limit(m);
    }
    if args.t_stride == 0 {
        return Err(bad("--t-stride 0: expected 1 (every term) or more"));
    }
    if args.batch_size == 0 {
        return Err(bad("--batch-size 0: the batch size must be at least 1"));
    }
    if args.n == Some(0) {
        return Err(bad("--n 0: expected at least 1 image"));
    }
    if let Some(p) = &args.plot {
        check_png_path("--plot", p)?;
    }
    if let Some(p) = &args.rd {
        check_png_path("--rd", p)?;
    }
    for (flag, file) in [("--csv", &args.csv), ("--checkpoint", &args.checkpoint)] {
        if let Some(c) = file {
            // Found now, not after hours of model evaluations.
            if c.is_dir() {
                return Err(bad(format!("{flag} {}: is a folder, expected a file", c.display())));
            }
            let parent = c.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if !parent.is_dir() {
                return Err(bad(format!("{flag} {}: the folder {} does not exist", c.display(), parent.display())));
            }
        }
    }
    let mut builder = OnnxDenoiser::builder();
    if let Some(t) = args.threads {
        ddpm_runtime::limits::check_threads("--threads", t)?;
        builder = builder.intra_threads(t);
    }
    let mut model = match &args.model {
        Some(path) => builder.batch_size(args.batch_size).from_file(path)?,
        None => {
            let name = args.model_name.as_deref().unwrap_or(pretrained::DEFAULT);
            builder.batch_size(args.batch_size).from_memory(pretrained::model(name).map_err(bad)?, &format!("the built-in {name} model"))?
        }
    };
    // The model's identity for --checkpoint: the SHA-256 of its bytes.
    let model_sha256 = match (&args.checkpoint, &args.model) {
        (None, _) => String::new(),
        (Some(_), Some(path)) => format!("{:x}", Sha256::digest(std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?)),
        (Some(_), None) => {
            format!("{:x}", Sha256::digest(pretrained::model(args.model_name.as_deref().unwrap_or(pretrained::DEFAULT)).map_err(bad)?))
        }
    };
    let name = match &args.model {
        Some(p) => p.display().to_string(),
        None => format!("the built-in {} model", args.model_name.as_deref().unwrap_or(pretrained::DEFAULT)),
    };
    if !model.has_scheduler_config() {
        return Err(bad(format!(
            "{name}: has no scheduler_config metadata; the bound needs the schedule the model was trained with (export it with exporter onnx)"
        )));
    }
    let bound_model = BoundModel::from_config(&model.scheduler_config())?;
    let shape = model.shape();
    let set = ddpm_eval::load_image_set(&args.data)?;
    let expected = [shape.channels, shape.height, shape.width];
    if set.shape[1..] != expected {
        return Err(bad(format!(
            "{}: images of {}x{}x{}, expected {}x{}x{} (the model's sample)",
            args.data.display(),
            set.shape[1],
            set.shape[2],
            set.shape[3],
            expected[0],
            expected[1],
            expected[2]
        )));
    }
    let mut n = set.shape[0];
    if n == 0 {
        return Err(bad(format!("{}: holds no images, expected at least 1", args.data.display())));
    }
    if let Some(limit) = args.n {
        if limit > n {
            return Err(bad(format!("--n {limit}: {} holds only {n} images", args.data.display())));
        }
        n = limit;
    }
    let per = shape.sample_len();
    let images = &set.data[..n * per];
    if images.iter().any(|v| !v.is_finite()) {
        return Err(bad(format!("{}: contains NaN or infinite values", args.data.display())));
    }
    if images.iter().any(|v| !(-1.0..=1.0).contains(v)) {
        return Err(bad(format!(
            "{}: values outside [-1, 1]; the bound's decoder reads data on the 256-level grid of [-1, 1]",
            args.data.display()
        )));
    }
    // A model trained for classifier-free guidance has a null label: --unconditional
    // conditions on it, and the images' labels must be real classes (below it).
    let null_label = model.signature().guidance.map(|g| g.null_class_label);
    let labels: Option<Vec<i64>> = match (shape.num_classes, args.unconditional, null_label) {
        (None, true, _) => return Err(bad(format!("--unconditional: {name} is not class-conditional"))),
        (Some(_), true, None) => {
            return Err(bad(format!(
                "--unconditional: {name} has no null label (only models trained for classifier-free guidance have one)"
            )))
        }
        (Some(_), true, Some(null)) => Some(vec![null; n]),
        (None, false, _) => None,
        (Some(k), false, _) => {
            let labels = set.labels.as_ref().ok_or_else(|| {
                bad(format!(
                    "{}: no labels (an IDX label file beside the images, class sub-folders or CIFAR-10 batches), and {name} is class-conditional; or pass --unconditional",
                    args.data.display()
                ))
            })?;
            let labels = labels[..n].to_vec();
            if let Some(null) = null_label.filter(|null| labels.contains(null)) {
                return Err(bad(format!(
                    "{}: label {null} is the null label (no class) of {name}; expected the images' classes, or --unconditional",
                    args.data.display()
                )));
            }
            if let Some(l) = labels.iter().find(|&&l| l < 0 || l as usize >= k) {
                // The classes a label may name: all rows but a last-row null label.
                let last = if null_label == Some(k as i64 - 1) { k as i64 - 2 } else { k as i64 - 1 };
                return Err(bad(format!("{}: label {l} outside the classes 0..={last} of {name}", args.data.display())));
            }
            Some(labels)
        }
    };
    let options = BoundOptions { t_stride: args.t_stride, batch_size: args.batch_size, seed: args.seed };
    let mut saved = match &args.checkpoint {
        Some(path) => {
            let identity = Identity {
                model_sha256,
                n,
                data_sha256: data_sha256(images, labels.as_deref()),
                seed: args.seed,
                t_stride: args.t_stride,
                unconditional: args.unconditional,
            };
            Some(Checkpoint::open(path, identity)?)
        }
        None => None,
    };
    let resume = saved.as_ref().and_then(|c| c.progress.clone());
    let terms_saved = resume.as_ref().map(|p| p.terms().len());
    let mut read_back = false;
    let bar = crate::evaluations_bar(None);
    let started = std::time::Instant::now();
    let mut last_save = started;
    let bound = variational_bound_resumable(
        &mut model,
        &bound_model,
        images,
        n,
        labels.as_deref(),
        &options,
        resume,
        |progress| match saved.as_mut() {
            Some(c) if last_save.elapsed().as_secs_f64() >= 10.0 => {
                c.save(progress, started.elapsed().as_secs_f64())?;
                last_save = std::time::Instant::now();
                Ok(())
            }
            _ => Ok(()),
        },
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let mut sittings = None;
    if let Some(c) = saved.as_mut() {
        read_back = terms_saved == Some(bound.terms.len());
        if read_back {
            // Complete already: the figures are read back, and the file stays as it was.
            sittings = Some((c.sittings - 1, c.seconds_before));
        } else {
            c.save(&bound.progress(), secs)?;
            sittings = Some((c.sittings, c.seconds_before + secs));
        }
    }

    if let Some(path) = &args.csv {
        let mut text = String::from("term,t,bits_per_dim\n");
        for t in &bound.terms {
            text.push_str(&format!("{},{},{}\n", t.kind.name(), t.t, t.bits_per_dim));
        }
        ddpm_io::files::write_atomically(path, |w| w.write_all(text.as_bytes()))?;
    }
    if let Some(path) = &args.plot {
        let points = bound.terms.iter().filter(|t| t.kind != TermKind::Prior).map(|t| (t.t as f64, t.bits_per_dim)).collect();
        let title = format!("variational bound by term ({n} images)");
        let panel = ddpm_io::plot::Panel::new(title, "t", "bits/dim").log_y().line("L_0 (t = 0) and L_t-1", points, (0, 0, 255), 2);
        ddpm_io::plot::line_chart(path, &[panel])?;
    }
    if let Some(path) = &args.rd {
        let rd = bound.rate_distortion();
        let mut text = String::from("t,rate_bits_per_dim,distortion_rmse\n");
        for p in &rd {
            text.push_str(&format!("{},{},{}\n", p.t, p.rate, p.distortion));
        }
        ddpm_io::files::write_atomically(path.with_extension("csv"), |w| w.write_all(text.as_bytes()))?;
        let points = rd.iter().map(|p| (p.rate, p.distortion)).collect();
        let title = format!("rate-distortion ({n} images)");
        let panel = ddpm_io::plot::Panel::new(title, "rate (bits/dim)", "distortion (RMSE, [0, 255])").line("", points, (200, 0, 0), 2);
        ddpm_io::plot::line_chart(path, &[panel])?;
    }
    match (args.unconditional, null_label) {
        (true, Some(null)) => println!("unconditional: conditioned on the model's null label {null}"),
        _ => {
            if let Some(source) = set.labels_source.as_ref().filter(|_| labels.is_some()) {
                println!("conditioned on the images' own labels ({source})");
            }
        }
    }
    if bound.is_estimate() {
        let t_count = bound_model.schedule.num_train_timesteps();
        println!(
            "estimate: every {}th KL term evaluated, each scaled by the number of terms it stands for (at most {}; {} of {} model evaluations per batch)",
            args.t_stride,
            args.t_stride.min(t_count - 1),
            bound.terms.len() - 1,
            t_count
        );
    }
    let (secs, in_all) = match sittings {
        Some((k, all)) if read_back => {
            (all, format!(" over {k} sitting{}, read back from --checkpoint (nothing evaluated now)", if k == 1 { "" } else { "s" }))
        }
        Some((k, all)) if k > 1 => (secs, format!(" ({all:.1} s in all over {k} sittings, --checkpoint)")),
        _ => (secs, String::new()),
    };
    println!(
        "{:.1} s{in_all}, {} model evaluations of {} images in batches of {}",
        secs,
        (bound.terms.len() - 1) * n.div_ceil(args.batch_size),
        n,
        args.batch_size
    );
    println!(
        "NLL <= {:.4} bits/dim ± {:.4} (95%, {n} images): prior {:.6}, decoder {:.4}, KL terms {:.4}",
        bound.mean(),
        bound.ci95(),
        bound.total(TermKind::Prior),
        bound.total(TermKind::Decoder),
        bound.total(TermKind::Kl)
    );
    Ok(())
}

/// The SHA-256 of the images (f32, little-endian) and the labels the model is conditioned on.
fn data_sha256(images: &[f32], labels: Option<&[i64]>) -> String {
    let mut h = Sha256::new();
    for v in images {
        h.update(v.to_le_bytes());
    }
    for l in labels.unwrap_or_default() {
        h.update(l.to_le_bytes());
    }
    format!("{:x}", h.finalize())
}

const CHECKPOINT_FORMAT: &str = "ddpm-rs nll checkpoint 1";

/// What a `--checkpoint` file is the progress of.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    model_sha256: String,
    n: usize,
    data_sha256: String,
    seed: u64,
    t_stride: usize,
    unconditional: bool,
}

impl Identity {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_sha256": self.model_sha256,
            "n": self.n,
            "data_sha256": self.data_sha256,
            "seed": self.seed,
            "t_stride": self.t_stride,
            "unconditional": self.unconditional,
        })
    }
}

/// A `--checkpoint` file: the identity of the bound, the time spent on it in earlier
/// sittings and its progress.
struct Checkpoint {
    path: PathBuf,
    identity: Identity,
    seconds_before: f64,
    /// Sittings so far, this one included.
    sittings: u64,
    progress: Option<BoundProgress>,
}

impl Checkpoint {
    /// Reads the file when it exists (it must be of this bound), or starts a new one.
    fn open(path: &std::path::Path, identity: Identity) -> anyhow::Result<Self> {
        let mut c = Checkpoint { path: path.to_path_buf(), identity, seconds_before: 0.0, sittings: 1, progress: None };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
            Err(e) => return Err(bad(format!("--checkpoint {}: {e}", path.display()))),
        };
        let what = |msg: String| bad(format!("--checkpoint {}: {msg}", path.display()));
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| what(format!("not a checkpoint of runtime nll (invalid JSON: {e})")))?;
        if v["format"] != CHECKPOINT_FORMAT {
            return Err(what(format!("format {}, expected \"{CHECKPOINT_FORMAT}\" (a file of runtime nll --checkpoint)", v["format"])));
        }
        let want = c.identity.to_json();
        for key in ["model_sha256", "n", "data_sha256", "seed", "t_stride", "unconditional"] {
            if v[key] != want[key] {
                return Err(what(format!(
                    "saved for {key} {}, this bound has {}; delete the file to start over, or pass another one",
                    v[key], want[key]
                )));
            }
        }
        c.seconds_before = v["seconds"]
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| what(format!("seconds {}, expected a number >= 0", v["seconds"])))?;
        c.sittings = v["sittings"].as_u64().ok_or_else(|| what(format!("sittings {}, expected a count", v["sittings"])))? + 1;
        let progress: BoundProgress = serde_json::from_value(v["progress"].clone()).map_err(|e| what(format!("progress: {e}")))?;
        c.progress = Some(progress);
        Ok(c)
    }

    /// Writes the progress (atomically), with `seconds` spent in this sitting so far.
    fn save(&self, progress: &BoundProgress, seconds: f64) -> ddpm_runtime::Result<()> {
        let mut v = self.identity.to_json();
        v["format"] = CHECKPOINT_FORMAT.into();
        v["seconds"] = (self.seconds_before + seconds).into();
        v["sittings"] = self.sittings.into();
        v["progress"] = serde_json::to_value(progress).map_err(|e| ddpm_runtime::Error::InvalidArgument(e.to_string()))?;
        let text = serde_json::to_string(&v).map_err(|e| ddpm_runtime::Error::InvalidArgument(e.to_string()))?;
        ddpm_io::files::write_atomically(&self.path, |w| w.write_all(text.as_bytes()))
            .map_err(|e| ddpm_runtime::Error::InvalidArgument(format!("--checkpoint: {e}")))
    }
}
