//! `runtime`: draw samples from a `.onnx` diffusion model.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use ddpm_io::cli::named;
use ddpm_io::npy::read_npy;
use ddpm_runtime::{ClassLabels, Denoiser, ExecutionProvider, OnnxDenoiser, Precision, SamplerKind, TimestepSpacing};

mod nll;
mod output;
mod plot;
mod pretrained;
mod remote;

use output::OutputKind;

#[derive(Parser)]
#[command(name = "runtime", version, about = "Sample from a DDPM U-Net exported to ONNX (DDPM, DDIM, DPM-Solver++)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reverse chain and write the samples.
    Sample(SampleArgs),
    /// Sample quality: FID between two image sets in an ONNX feature extractor's space,
    /// and (extractors with logits) mean confidence and class-histogram entropy.
    Eval(EvalArgs),
    /// What this machine offers: the ONNX Runtime library, execution providers, CPU
    /// features, usable precisions, the model cache and the built-in model (for bug reports).
    Info(InfoArgs),
    /// The variational bound on the negative log-likelihood (Ho et al. 2020, eq. 5) of a set
    /// of real images, in bits/dim, term by term, and the rate-distortion curve.
    Nll(nll::NllArgs),
    /// Join the .npy files of sample-set shards (`sample --first-index`) in the order given,
    /// into one .npy: the bytes one run of all the samples writes.
    Merge(MergeArgs),
    /// Line charts of a CSV file (loss.csv, `nll --csv`, a sweep's table) as a PNG: one
    /// panel per --y, one line per column.
    Plot(plot::PlotArgs),
}

#[derive(clap::Args)]
struct MergeArgs {
    /// The merged set: FILE.npy (float32 [N, C, H, W]), FILE.png (a grid) or DIR/ (one PNG
    /// per sample); written to a temporary name, then renamed.
    #[arg(long, value_name = "FILE.npy")]
    out: String,
    /// Columns of a FILE.png grid [default: about square].
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    cols: Option<usize>,
    /// The shards, first index first.
    #[arg(required = true, value_name = "SHARD.npy")]
    shards: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The model cache folder to report [default: $DDPM_RS_CACHE/models].
    #[arg(long, value_name = "DIR")]
    model_cache: Option<PathBuf>,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Generated images: float32 .npy [N, C, H, W] in [-1, 1], or a folder of PNGs.
    #[arg(long)]
    samples: PathBuf,
    /// Real images: .npy, a folder of PNGs, or an MNIST IDX images file.
    #[arg(long)]
    real: PathBuf,
    /// The feature extractor (input [B, C, H, W] in [-1, 1]; outputs `features` and
    /// optionally `logits`) [default: the project's digit classifier].
    #[arg(long, value_name = "FILE.onnx")]
    extractor: Option<PathBuf>,
    /// Use only the first N images of each set.
    #[arg(long)]
    n: Option<usize>,
    /// The most memory a request may use (e.g. 8G) [default: 80% of the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    ddpm_io::limits::parse_size(s).map_err(|e| e.to_string())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    use ddpm_eval::{evaluate, load_images, FeatureExtractor};
    if let Some(m) = args.max_memory {
        ddpm_io::limits::set_memory_limit(m);
    }
    let mut extractor = match &args.extractor {
        Some(p) => FeatureExtractor::from_file(p)?,
        None => FeatureExtractor::from_memory(pretrained::DIGIT_CLASSIFIER, "the built-in digit classifier")?,
    };
    let expected = [extractor.channels, extractor.height, extractor.width];
    let mut sets = Vec::new();
    for path in [&args.samples, &args.real] {
        let (mut data, shape) = load_images(path)?;
        if shape[1..] != expected {
            return Err(bad(format!(
                "{}: images of {}x{}x{}, expected {}x{}x{} (the extractor's input)",
                path.display(),
                shape[1],
                shape[2],
                shape[3],
                expected[0],
                expected[1],
                expected[2]
            )));
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("{}: contains NaN or infinite values", path.display())));
        }
        // An unclipped sampler overshoots [-1, 1] a little; a value beyond ±2 is another
        // scale ([0, 255] pixels), which would give a meaningless FID.
        let (lo, hi) = data.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if lo < -2.0 || hi > 2.0 {
            return Err(bad(format!(
                "{}: values from {lo} to {hi}, expected images on the [-1, 1] scale (pixel / 127.5 - 1)",
                path.display()
            )));
        }
        let mut n = shape[0];
        if let Some(limit) = args.n {
            if limit > n {
                return Err(bad(format!("--n {limit}: {} holds only {n} images", path.display())));
            }
            n = limit;
            data.truncate(n * expected.iter().product::<usize>());
        }
        if n < 2 {
            return Err(bad(format!("{}: {n} images, expected at least 2 for a covariance", path.display())));
        }
        sets.push((data, n));
    }
    let (real, n_real) = sets.pop().unwrap_or_default();
    let (samples, n_samples) = sets.pop().unwrap_or_default();
    let r = evaluate(&mut extractor, &samples, n_samples, &real, n_real)?;
    println!("FID {:.3} ({} samples vs {} real images)", r.fid, r.n_samples, r.n_real);
    if let (Some(c), Some(e)) = (r.confidence, r.class_entropy) {
        println!("mean confidence {c:.4}");
        println!("class entropy {e:.4} nats (uniform over 10 classes: {:.4})", 10f64.ln());
    }
    if let Some(pred) = &r.predicted {
        let k = pred.iter().max().map_or(0, |m| m + 1);
        let hist: Vec<String> = (0..k).map(|c| format!("{c}:{}", pred.iter().filter(|&&p| p == c).count())).collect();
        println!("predicted classes {}", hist.join(" "));
    }
    Ok(())
}

/// `--precision`: the library's precisions, and the two it names to refuse (fp16 and int8
/// on the CPU, with the reason).
const PRECISION_NAMES: &[&str] = &["fp32", "bf16", "auto", "fp16", "int8"];

#[derive(clap::Args)]
struct SampleArgs {
    /// The .onnx model (inputs sample, timestep[, class_labels]; output noise_pred).
    #[arg(long, value_name = "FILE.onnx")]
    model: Option<PathBuf>,
    /// A built-in model instead (models/pretrained/NAME; `runtime info` lists them)
    /// [default: digits].
    #[arg(long, value_name = "NAME", conflicts_with = "model")]
    model_name: Option<String>,
    /// Number of samples [default: 16, or the N of --noise].
    #[arg(long, allow_hyphen_values = true)]
    n: Option<usize>,
    /// Samples per model evaluation (does not change the output).
    #[arg(long, default_value_t = 16, allow_hyphen_values = true)]
    batch_size: usize,
    #[arg(long, default_value = "ddim", value_parser = named::<SamplerKind>(SamplerKind::NAMES))]
    sampler: SamplerKind,
    /// Inference steps [default: ddpm the full chain, ddim 50, dpm-solver++ 20].
    #[arg(long, allow_hyphen_values = true)]
    steps: Option<usize>,
    /// DDIM's eta, in [0, 1]: 0 deterministic, 1 DDPM-like.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    eta: f64,
    /// [default: the model's scheduler config, else the sampler's diffusers default]
    #[arg(long, value_parser = named::<TimestepSpacing>(TimestepSpacing::NAMES))]
    timestep_spacing: Option<TimestepSpacing>,
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    seed: u64,
    /// Draw samples I .. I+N-1 of the seed's per-sample streams (a shard of a larger set:
    /// shards drawn apart, joined with `runtime merge`, hold the bytes of one run).
    #[arg(long, value_name = "I", default_value_t = 0, allow_hyphen_values = true)]
    first_index: u64,
    /// Start from this x_T (float32 .npy, [N, C, H, W]) instead of noise from --seed.
    #[arg(long, value_name = "XT.npy")]
    noise: Option<PathBuf>,
    /// Class of every sample (class-conditional models); uniform over classes without it.
    #[arg(long, allow_hyphen_values = true)]
    class_label: Option<i64>,
    /// Classifier-free guidance: u + S (c - u) (diffusers' convention; 1 is no guidance),
    /// for models trained with label dropout [default: the model's recommended scale, else 1].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    guidance_scale: Option<f64>,
    /// Execution provider [default: cpu; openvino for --precision bf16].
    #[arg(long, value_parser = named::<ExecutionProvider>(ExecutionProvider::NAMES))]
    ep: Option<ExecutionProvider>,
    /// Arithmetic of the model: fp32 (exact); bf16 (a CPU with avx512_bf16 or amx_bf16, on
    /// the OpenVINO execution provider: set-up option `make setup-openvino`); auto (bf16
    /// where the CPU and library run it, else fp32; says which).
    #[arg(long, default_value = "fp32", value_parser = PossibleValuesParser::new(PRECISION_NAMES))]
    precision: String,
    /// The most memory a request may use (e.g. 8G) [default: 80% of the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Keep the optimized model in this folder for faster next starts
    /// [default: $DDPM_RS_CACHE/models, or ~/.cache/ddpm-rs/models].
    #[arg(long, value_name = "DIR")]
    model_cache: Option<PathBuf>,
    /// Do not read or write the optimized-model cache.
    #[arg(long, conflicts_with = "model_cache")]
    no_model_cache: bool,
    /// Intra-op threads [default: physical cores].
    #[arg(long, allow_hyphen_values = true)]
    threads: Option<usize>,
    /// FILE.png (a grid), FILE.npy (float32 [N, C, H, W]) or DIR/ (one PNG per sample).
    #[arg(long, default_value = "samples.png")]
    out: String,
    /// A Triton Inference Server that serves the model (KServe v2 over gRPC):
    /// grpc://HOST:PORT, with --model-name the served model's name. Shapes, labels and the
    /// schedule come from the server; every other flag is as for a local model.
    #[arg(long, value_name = "URL", conflicts_with = "model")]
    server: Option<String>,
    /// Batches of chains in flight at once at the server (with --server), so that its
    /// dynamic batcher can merge them; the samples do not depend on it.
    #[arg(long, value_name = "K", default_value_t = 1, allow_hyphen_values = true)]
    concurrency: usize,
    /// Retries of a request after a transient failure (with --server), waiting 0.1 s,
    /// then twice as long each time (at most 2 s).
    #[arg(long, value_name = "N", default_value_t = 5, allow_hyphen_values = true)]
    retries: u32,
    /// Also write the predicted x_0 of the first 8 samples across the reverse chain (rows:
    /// samples, columns: steps), as in the DDPM paper's progressive-generation figure.
    #[arg(long, value_name = "FILE.png")]
    trajectory: Option<PathBuf>,
}

/// The progress bar of a run of model evaluations: on a terminal only (stderr).
fn evaluations_bar(total: Option<u64>) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(total, indicatif::ProgressDrawTarget::stderr());
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} evaluations  {per_sec}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

fn classify(e: &anyhow::Error) -> u8 {
    // The user's input: a marked error, or any file and limit error of ddpm-io.
    if e.chain().any(|c| c.downcast_ref::<BadInputMarker>().is_some() || c.downcast_ref::<ddpm_io::Error>().is_some()) {
        return 2;
    }
    match e.chain().find_map(|c| c.downcast_ref::<ddpm_runtime::Error>()) {
        Some(err) if err.is_bad_input() => 2,
        Some(_) => 1,
        None => 1,
    }
}

/// Marks an error of the user's input (exit 2), as opposed to an internal failure (exit 1).
#[derive(Debug)]
struct BadInputMarker(String);
impl std::fmt::Display for BadInputMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BadInputMarker {}

fn bad(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInputMarker(msg.into()))
}

fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(m) = args.max_memory {
        ddpm_io::limits::set_memory_limit(m);
    }
    let precision: Precision = args.precision.parse()?;
    if let Some(t) = args.threads {
        ddpm_io::limits::check_threads("--threads", t)?;
    }
    if args.batch_size == 0 {
        return Err(bad("--batch-size 0: the batch size must be at least 1"));
    }
    if args.n == Some(0) {
        return Err(bad("--n 0: expected at least 1 sample"));
    }
    if !(args.eta.is_finite() && (0.0..=1.0).contains(&args.eta)) {
        return Err(bad(format!(
            "--eta {}: expected a number in [0, 1] (0: deterministic DDIM, 1: DDPM's variance; above 1 the DDIM step can be NaN)",
            args.eta
        )));
    }
    if args.concurrency == 0 {
        return Err(bad("--concurrency 0: expected at least 1 batch in flight"));
    }
    if let Some(s) = args.guidance_scale {
        if !(s.is_finite() && s >= 0.0) {
            return Err(bad(format!("--guidance-scale {s}: expected a finite number >= 0 (1: no guidance)")));
        }
    }
    let out = OutputKind::from_path(&args.out)?;
    out.check_writable()?;
    if let Some(t) = &args.trajectory {
        // A PNG grid, found wrong now rather than after the chain.
        if t.is_dir() || !t.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            return Err(bad(format!("--trajectory {}: expected a FILE.png", t.display())));
        }
        OutputKind::PngGrid(t.clone()).check_writable()?;
    }
    if let Some(server) = &args.server {
        return remote::sample(&args, server, &out, started);
    }
    if args.concurrency != 1 {
        return Err(bad("--concurrency: only with --server (batches in flight at a Triton server)"));
    }
    let mut builder = OnnxDenoiser::builder().precision(precision);
    if let Some(ep) = args.ep {
        builder = builder.execution_provider(ep);
    }
    if let Some(t) = args.threads {
        builder = builder.intra_threads(t);
    }
    if !args.no_model_cache {
        builder = builder.cache_dir(args.model_cache.clone().unwrap_or_else(|| ddpm_runtime::sys::cache_dir().join("models")));
    }
    let mut model = match &args.model {
        Some(path) => builder.from_file(path)?,
        None => {
            let name = args.model_name.as_deref().unwrap_or(pretrained::DEFAULT);
            builder.from_memory(pretrained::model(name).map_err(bad)?, &format!("the built-in {name} model"))?
        }
    };
    let shape = model.shape();
    check_batch_memory(&args, shape)?;
    if precision == Precision::Auto {
        eprintln!("{}", model.precision_choice());
    }
    let noise = read_noise(&args, shape)?;
    let model_guidance = model.signature().guidance.map(|g| g.guidance_scale);
    // The session for the run's model calls is prepared before the chain starts: batches of
    // B, or 2B when guided (both halves in one call).
    let calls = args.batch_size.min(noise.as_ref().map_or(args.n.unwrap_or(16), |z| z.len() / shape.sample_len())).max(1);
    let guided = args.guidance_scale.or(model_guidance).is_some_and(|s| s != 1.0);
    model.prepare_batch(if guided { 2 * calls } else { calls })?;
    let config = model.scheduler_config();
    // diffusers' DDIMScheduler.step clips (or thresholds) x_0 but moves along the unclipped
    // epsilon: under guidance the two disagree and the chain falls apart. Said after a
    // successful run (an error stays one line).
    let clip_note =
        guided && args.sampler == SamplerKind::Ddim && (config.clip_sample.unwrap_or(true) || config.thresholding.unwrap_or(false));
    let what_ran = model.precision_choice().to_string();
    let pipeline = configure(model.pipeline(), &args, model_guidance, noise)?;
    let plan = pipeline.plan()?;
    let pipeline = match args.trajectory {
        Some(_) => pipeline.record_trajectory(plan.timesteps.len().div_ceil(10).max(1)),
        None => pipeline,
    };
    let bar = evaluations_bar(Some(plan.evaluations as u64));
    let samples = pipeline.on_progress(|p| bar.set_position(p.evaluations_done as u64)).run()?;
    bar.finish_and_clear();
    let guidance = args.guidance_scale.or(model_guidance).unwrap_or(1.0);
    finish(&args, &out, &samples, &what_ran, guidance, started)?;
    if clip_note {
        eprintln!(
            "note: guided DDIM on a model whose scheduler config clips x_0 (clip_sample or thresholding): diffusers' DDIM step keeps the unclipped epsilon, and guided samples degrade (a scheduler config with clip_sample false avoids it)"
        );
    }
    Ok(())
}

/// A batch asked for (even when --n is smaller and it would be clamped) that no machine
/// holds is a mistake worth saying.
fn check_batch_memory(args: &SampleArgs, shape: ddpm_runtime::ModelShape) -> anyhow::Result<()> {
    ddpm_io::limits::check_memory(
        &format!(
            "--batch-size {}: a batch of {} samples of {}x{}x{} float32",
            args.batch_size, args.batch_size, shape.channels, shape.height, shape.width
        ),
        ddpm_io::limits::bytes_of(&[args.batch_size, shape.channels.max(shape.out_channels), shape.height, shape.width], 4 * 8),
    )?;
    Ok(())
}

/// The x_T of `--noise`, checked against the model's sample shape and `--n`.
fn read_noise(args: &SampleArgs, shape: ddpm_runtime::ModelShape) -> anyhow::Result<Option<Vec<f32>>> {
    let Some(path) = &args.noise else { return Ok(None) };
    let (data, dims) = read_npy(path)?;
    let expected = [shape.channels, shape.height, shape.width];
    if dims.len() != 4 || dims[1..] != expected {
        return Err(bad(format!("{}: shape {dims:?}, expected [N, {}, {}, {}]", path.display(), expected[0], expected[1], expected[2])));
    }
    if dims[0] == 0 {
        return Err(bad(format!("{}: holds 0 samples, expected at least 1", path.display())));
    }
    if let Some(n) = args.n {
        if n != dims[0] {
            return Err(bad(format!("--n {n} disagrees with the {} samples of {}", dims[0], path.display())));
        }
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(bad(format!("{}: contains NaN or infinite values", path.display())));
    }
    Ok(Some(data))
}

/// The flags of `sample` applied to a pipeline over any model; `model_guidance` is the
/// model's recommended scale (None: the model has no null label).
fn configure<'p, D: Denoiser>(
    pipeline: ddpm_runtime::Pipeline<'p, D>,
    args: &SampleArgs,
    model_guidance: Option<f64>,
    noise: Option<Vec<f32>>,
) -> anyhow::Result<ddpm_runtime::Pipeline<'p, D>> {
    let mut pipeline =
        pipeline.sampler(args.sampler).batch_size(args.batch_size).seed(args.seed).first_index(args.first_index).eta(args.eta);
    if let Some(s) = args.steps {
        pipeline = pipeline.steps(s);
    }
    if let Some(spacing) = args.timestep_spacing {
        pipeline = pipeline.timestep_spacing(spacing);
    }
    pipeline = match noise {
        Some(noise) => pipeline.initial_noise(noise),
        None => pipeline.n(args.n.unwrap_or(16)),
    };
    if let Some(l) = args.class_label {
        pipeline = pipeline.class_labels(ClassLabels::Fixed(l));
    }
    if let Some(s) = args.guidance_scale {
        if s != 1.0 && model_guidance.is_none() {
            return Err(bad(format!(
                "--guidance-scale {s}: the model has no null label (metadata guidance_config; it was not trained with label dropout); use 1"
            )));
        }
        pipeline = pipeline.guidance_scale(s);
    }
    Ok(pipeline)
}

/// Writes the samples (and trajectory) and says what ran, on one line.
fn finish(
    args: &SampleArgs,
    out: &OutputKind,
    samples: &ddpm_runtime::Samples,
    what_ran: &str,
    guidance: f64,
    started: Instant,
) -> anyhow::Result<()> {
    out.write(&samples.data, samples.shape, args.first_index)?;
    if let Some(path) = &args.trajectory {
        // Rows: the first (up to) 8 samples; columns: predicted x_0 along the chain, then
        // the final sample.
        let [n, c, h, w] = samples.shape;
        let rows = n.min(8);
        let per = c * h * w;
        let cols = samples.trajectory.len() + 1;
        let mut grid = Vec::with_capacity(rows * cols * per);
        for r in 0..rows {
            for (_, x0) in &samples.trajectory {
                grid.extend(x0[r * per..(r + 1) * per].iter().map(|v| v.clamp(-1.0, 1.0)));
            }
            grid.extend(samples.data[r * per..(r + 1) * per].iter().map(|v| v.clamp(-1.0, 1.0)));
        }
        ddpm_io::png::write_png_grid_cols(path, &grid, [rows * cols, c, h, w], Some(cols))?;
        println!("wrote the trajectory of {rows} samples over {} steps to {}", cols - 1, path.display());
    }
    let n = samples.shape[0];
    let secs = samples.total_time.as_secs_f64();
    let shard = if args.first_index > 0 { format!(" {} .. {}", args.first_index, args.first_index + n as u64 - 1) } else { String::new() };
    println!(
        "wrote {n} samples{shard} to {} ({} {} steps, {what_ran}{}): {:.2} s, {:.2} samples/s, {:.2} ms per model evaluation ({} evaluations); total {:.2} s",
        args.out,
        args.sampler.name(),
        samples.evaluations / n.div_ceil(args.batch_size.max(1)).max(1),
        if guidance != 1.0 { format!(", guidance {guidance}") } else { String::new() },
        secs,
        n as f64 / secs.max(1e-9),
        samples.model_time.as_secs_f64() * 1e3 / samples.evaluations.max(1) as f64,
        samples.evaluations,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn merge(args: MergeArgs) -> anyhow::Result<()> {
    // Writing over a shard would replace an input with the merged set.
    if let Ok(out) = std::fs::canonicalize(&args.out) {
        if let Some(shard) = args.shards.iter().find(|p| std::fs::canonicalize(p).is_ok_and(|p| p == out)) {
            return Err(bad(format!(
                "--out {}: is also the shard {}; the merge would replace it, write to another file",
                args.out,
                shard.display()
            )));
        }
    }
    let mut data = Vec::new();
    let mut dims: Option<Vec<usize>> = None;
    for path in &args.shards {
        let (d, s) = read_npy(path)?;
        if s.len() != 4 {
            return Err(bad(format!("{}: shape {s:?}, expected [N, C, H, W] (a sample set)", path.display())));
        }
        if d.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("{}: contains NaN or infinite values, expected a sample set", path.display())));
        }
        match &mut dims {
            None => dims = Some(s),
            Some(all) if all[1..] == s[1..] => all[0] += s[0],
            Some(all) => {
                return Err(bad(format!(
                    "{}: samples of shape {:?}, expected {:?} as in {}",
                    path.display(),
                    &s[1..],
                    &all[1..],
                    args.shards[0].display()
                )))
            }
        }
        // The merged set and the shard being added, held at once.
        ddpm_io::limits::check_memory(
            &format!("runtime merge: {} float32 values so far and {} of {}", data.len(), d.len(), path.display()),
            ddpm_io::limits::bytes_of(&[data.len() + 2 * d.len()], 4),
        )?;
        data.extend(d);
    }
    let dims = dims.unwrap_or_default();
    let shape = [dims[0], dims[1], dims[2], dims[3]];
    let out = OutputKind::from_path(&args.out)?;
    out.check_writable()?;
    match (out, args.cols) {
        (_, Some(0)) => return Err(bad("--cols 0: expected at least 1 column")),
        (OutputKind::PngGrid(p), Some(cols)) => ddpm_io::png::write_png_grid_cols(&p, &data, shape, Some(cols))?,
        (_, Some(_)) => return Err(bad(format!("--cols: only for a FILE.png grid, not --out {}", args.out))),
        (out, None) => out.write(&data, shape, 0)?,
    }
    let k = args.shards.len();
    println!("wrote {} samples from {k} shard{} to {}", dims[0], if k == 1 { "" } else { "s" }, args.out);
    Ok(())
}

fn main() -> ExitCode {
    let run = |cli: Cli| {
        match cli.command {
            Command::Sample(args) => sample(args),
            Command::Eval(args) => eval(args),
            Command::Info(args) => info(args),
            Command::Nll(args) => nll::nll(args),
            Command::Merge(args) => merge(args),
            Command::Plot(args) => plot::plot(args),
        }
        .map(|()| ExitCode::SUCCESS)
        .map_err(Chain)
    };
    ddpm_io::cli::main("warn", false, run, |e: &Chain| classify(&e.0))
}

/// An error with its causes, displayed as one line (see [`one_line`]).
struct Chain(anyhow::Error);

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&one_line(&self.0))
    }
}

/// The error chain as one line: a cause that repeats its context said once, whitespace
/// collapsed (ONNX Runtime's messages span lines).
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = ddpm_io::cli::one_line(&cause.to_string());
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    ddpm_io::cli::one_line(&parts.join(": "))
}

fn info(args: InfoArgs) -> anyhow::Result<()> {
    use ddpm_runtime::onnx::{library_info, Library};
    use ddpm_runtime::sys::{cpu_model, logical_cpus, physical_cores, CpuFeatures};
    use serde_json::json;
    let cpu = CpuFeatures::get();
    let library = library_info(None, Library::Default);
    let openvino = ddpm_runtime::onnx::openvino_library();
    let cache = args.model_cache.clone().unwrap_or_else(|| ddpm_runtime::sys::cache_dir().join("models"));
    let (files, bytes) = folder_size(&cache);
    let (mem_limit, mem_source) = ddpm_io::limits::memory_limit();
    // Precisions this machine really runs.
    let bf16_ok = cpu.has_bf16() && openvino.is_some();
    let bf16_why = if !cpu.has_bf16() {
        "no: the CPU has no avx512_bf16 or amx_bf16".to_string()
    } else if openvino.is_none() {
        "no: the OpenVINO build of ONNX Runtime is not installed (make setup-openvino, then rebuild)".to_string()
    } else {
        format!("yes: on openvino ({})", if cpu.avx512_bf16 { "avx512_bf16" } else { "amx_bf16" })
    };
    let auto = if bf16_ok { "bf16 on openvino" } else { "fp32 on cpu" };
    let model = pretrained::model(pretrained::DEFAULT).ok().map(|b| {
        let desc = OnnxDenoiser::builder()
            .static_shapes(false)
            .intra_threads(1)
            .from_memory(b, "the built-in digits model")
            .map(|m| {
                let s = m.shape();
                format!("{}x{}x{}, {} classes", s.channels, s.height, s.width, s.num_classes.unwrap_or(0))
            })
            .unwrap_or_else(|e| format!("not loadable: {e}"));
        (b.len(), desc)
    });
    if args.json {
        let lib = match &library {
            Ok(l) => {
                json!({"path": l.path, "version": l.version, "build": format!("{:?}", l.build).to_lowercase(), "execution_providers": l.providers})
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        let out = json!({
            "runtime_version": env!("CARGO_PKG_VERSION"),
            "onnxruntime": lib,
            "openvino_build": openvino,
            "cpu": {
                "model": cpu_model(),
                "logical_cpus": logical_cpus(),
                "physical_cores": physical_cores(),
                "features": cpu.present(),
                "missing": cpu.absent(),
                "masked": cpu.masked,
                "bf16_arithmetic": cpu.has_bf16(),
            },
            "precisions": {"fp32": true, "bf16": bf16_ok, "auto": auto},
            "model_cache": {"path": cache, "files": files, "bytes": bytes},
            "memory_limit": {"bytes": mem_limit, "source": mem_source},
            "builtin_model": model.as_ref().map(|(n, d)| json!({"name": "digits", "bytes": n, "shape": d})),
            "builtin_models": pretrained::MODELS.iter().map(|(n, b)| json!({"name": n, "bytes": b.len()})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("ddpm-rs runtime {}", env!("CARGO_PKG_VERSION"));
    match &library {
        Ok(l) => {
            println!("ONNX Runtime {} ({:?} build) from {}", l.version, l.build, l.path.display());
            println!("  execution providers: {}", l.providers.join(", "));
        }
        Err(e) => println!("ONNX Runtime: {}", one_line(&anyhow::anyhow!(e.to_string()))),
    }
    println!(
        "  OpenVINO build (for bf16): {}",
        openvino.map_or("not installed (make setup-openvino, then rebuild)".to_string(), |p| p.to_string())
    );
    println!("CPU: {} ({} logical CPUs, {} physical cores)", cpu_model(), logical_cpus(), physical_cores());
    println!("  features: {}; lacks {}", cpu.summary(), if cpu.absent().is_empty() { "none".into() } else { cpu.absent().join(", ") });
    println!("precision: fp32 yes (cpu{}); bf16 {bf16_why}; auto: {auto}", if openvino.is_some() { ", openvino" } else { "" });
    println!("model cache: {} ({files} files, {})", cache.display(), ddpm_io::limits::human(bytes));
    println!("memory limit: {} ({mem_source})", ddpm_io::limits::human(mem_limit));
    match model {
        Some((n, d)) => println!("built-in model: digits ({d}; {}, models/pretrained/digits)", ddpm_io::limits::human(n as u64)),
        None => println!("built-in model: none in this build"),
    }
    let names: Vec<&str> = pretrained::MODELS.iter().map(|(n, _)| *n).collect();
    println!("built-in models (--model-name): {}", if names.is_empty() { "none".to_string() } else { names.join(", ") });
    Ok(())
}

/// Files and bytes under a folder (not following links).
fn folder_size(dir: &std::path::Path) -> (u64, u64) {
    let mut stack = vec![dir.to_path_buf()];
    let (mut files, mut bytes) = (0, 0);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}
