//! `trainer fit`: learn eps_theta on a folder of images, MNIST IDX files or CIFAR-10.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use ddpm_io::cli::named;
use ddpm_models::UNetConfig;
use ddpm_runtime::{BetaSchedule, PredictionType, SchedulerConfig, VarianceType};
use ddpm_trainer::options::{preset, Loss, Preset, TimestepSampling, TrainOptions};
use ddpm_trainer::train::{fit, FitSpec, Outcome, RunDir, INTERRUPTED};
use ddpm_trainer::{data, TrainError};

#[derive(Parser)]
#[command(name = "trainer", version, about = "Train a DDPM noise predictor (diffusers UNet2DModel layout) with libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(clap::Args)]
struct FitArgs {
    /// A folder of PNG/JPEG images (sub-folders = classes), an MNIST IDX images file
    /// (or a folder holding one), or a folder of CIFAR-10 data_batch_*.bin files.
    #[arg(long)]
    data: PathBuf,
    /// The run folder: unet/, scheduler/, train_state/, loss.csv, loss.png, samples/.
    #[arg(long)]
    out: PathBuf,
    /// A UNet2DModel config.json.
    #[arg(long, conflicts_with = "preset")]
    config: Option<PathBuf>,
    /// digits (28x28, class-conditional), digits-hybrid (the same with learned variances,
    /// the cosine schedule and L_hybrid) or cifar10 (the DDPM paper's network and
    /// hyper-parameters).
    #[arg(long)]
    preset: Option<String>,
    /// A DDPMScheduler scheduler_config.json [default: the paper's linear schedule, T = 1000].
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// The scheduler config's `beta_schedule` (squaredcos_cap_v2: the cosine schedule of
    /// improved DDPM) [default: the preset's or --scheduler-config's].
    #[arg(long, value_parser = scheduler_name(BetaSchedule::NAMES, BetaSchedule::from_name))]
    beta_schedule: Option<BetaSchedule>,
    /// The scheduler config's `variance_type` (learned_range: the model outputs 2C channels,
    /// trained with --loss hybrid) [default: the preset's or --scheduler-config's].
    #[arg(long, value_parser = scheduler_name(VarianceType::NAMES, VarianceType::from_name))]
    variance_type: Option<VarianceType>,
    /// The scheduler config's `prediction_type` [default: the preset's or --scheduler-config's].
    #[arg(long, value_parser = scheduler_name(PredictionType::NAMES, PredictionType::from_name))]
    prediction_type: Option<PredictionType>,
    #[arg(long, allow_hyphen_values = true)]
    steps: Option<u64>,
    #[arg(long, allow_hyphen_values = true)]
    batch_size: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    lr: Option<f64>,
    /// Linear learning-rate warm-up steps.
    #[arg(long, allow_hyphen_values = true)]
    warmup: Option<u64>,
    #[arg(long, allow_hyphen_values = true)]
    ema_decay: Option<f64>,
    /// Max global gradient norm (0: no clipping).
    #[arg(long, allow_hyphen_values = true)]
    grad_clip: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    weight_decay: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    seed: Option<u64>,
    /// The objective: simple (L_simple), hybrid (L_simple + 0.001 L_vlb, for learned
    /// variances) or vlb [default: the preset's; simple for digits and cifar10].
    #[arg(long, value_parser = named::<Loss>(Loss::NAMES))]
    loss: Option<Loss>,
    /// Label dropout for classifier-free guidance: each label becomes the null label (the
    /// class embedding's last row) with probability P [default: the preset's; 0.1 for digits].
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    cond_drop_prob: Option<f64>,
    /// Start a new run from another run's weights (its unet/, e.g. models/pretrained/digits):
    /// a fine-tune. A class embedding one row longer (the null label) gets the mean row.
    #[arg(long, value_name = "RUN", conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// How t is drawn: uniform, or importance (for L_vlb, from the last 10 losses at each t).
    #[arg(long, value_parser = named::<TimestepSampling>(TimestepSampling::NAMES))]
    timestep_sampling: Option<TimestepSampling>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Checkpoint every K steps.
    #[arg(long, allow_hyphen_values = true)]
    save_every: Option<u64>,
    /// A preview grid every K steps (0: none).
    #[arg(long, allow_hyphen_values = true)]
    sample_every: Option<u64>,
    /// DDIM steps of the preview grids.
    #[arg(long, allow_hyphen_values = true)]
    preview_steps: Option<usize>,
    /// Random horizontal flips.
    #[arg(long)]
    flip: bool,
    /// Stop on an unreadable image instead of skipping it.
    #[arg(long)]
    strict: bool,
    /// libtorch threads [default: physical cores]. Bit-identical results need the same count.
    #[arg(long, allow_hyphen_values = true)]
    threads: Option<i32>,
    /// Continue the run in --out from its last checkpoint, with its own network, schedule
    /// and hyper-parameters (only --steps, --save-every, --sample-every, --preview-steps may change).
    #[arg(long)]
    resume: bool,
    /// The most memory a request may use (e.g. 8G) [default: 80% of the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    ddpm_io::limits::parse_size(s).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// Train (or resume) a run.
    Fit(Box<FitArgs>),
    /// Train the digit classifier that `runtime eval` uses as its feature extractor, and
    /// export it to ONNX.
    Classifier {
        /// Labelled 28x28 training images (an MNIST IDX file or a folder holding one).
        #[arg(long)]
        data: PathBuf,
        /// Held-out labelled images to report the accuracy on.
        #[arg(long)]
        eval_data: Option<PathBuf>,
        #[arg(long, default_value = "classifier.onnx")]
        out: PathBuf,
        #[arg(long, default_value_t = 20)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        threads: Option<i32>,
    },
}

fn run_classifier(
    data: PathBuf,
    eval_data: Option<PathBuf>,
    out: PathBuf,
    epochs: usize,
    seed: u64,
    threads: Option<i32>,
) -> Result<ExitCode, TrainError> {
    if epochs == 0 {
        return Err(usage("--epochs: found 0, expected at least 1"));
    }
    let threads = threads.unwrap_or_else(|| ddpm_runtime::sys::physical_cores() as i32);
    if threads < 1 {
        return Err(usage(format!("--threads {threads}: expected at least 1")));
    }
    ddpm_io::limits::check_threads("--threads", threads as usize)?;
    tch::set_num_threads(threads);
    let train = data::load(&data, 1, (28, 28), true)?;
    let classes = train
        .labels
        .as_ref()
        .map(|l| l.iter().max().copied().unwrap_or(0) as usize + 1)
        .ok_or_else(|| usage(format!("{}: no labels beside the images", data.display())))?;
    let t0 = std::time::Instant::now();
    let (clf, weights) = ddpm_trainer::classify::train(&train, classes, epochs, seed)?;
    let (train_acc, _) = ddpm_trainer::classify::accuracy(&clf, &weights, &train)?;
    let held = match &eval_data {
        Some(p) => {
            let d = data::load(p, 1, (28, 28), true)?;
            Some(ddpm_trainer::classify::accuracy(&clf, &weights, &d)?)
        }
        None => None,
    };
    let err = ddpm_trainer::classify::export(&clf, &weights, &train, &out)?;
    println!(
        "wrote {} in {:.0} s: training accuracy {:.4}{}; ONNX vs libtorch relative error {err:.1e}",
        out.display(),
        t0.elapsed().as_secs_f64(),
        train_acc,
        held.as_ref().map(|(a, _)| format!(", held-out accuracy {a:.4}")).unwrap_or_default()
    );
    if let Some((_, per_class)) = held {
        let line: Vec<String> = per_class.iter().enumerate().map(|(k, a)| format!("{k}:{a:.3}")).collect();
        println!("held-out accuracy per class: {}", line.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

fn usage(msg: impl Into<String>) -> TrainError {
    TrainError::Usage(msg.into())
}

/// The network's outputs, the variance type and the objective must agree: a learned
/// variance is a second set of C output channels that only L_vlb trains.
fn check_objective(config: &UNetConfig, sched: &SchedulerConfig, o: &TrainOptions) -> Result<(), TrainError> {
    let variance = sched.variance_type.unwrap_or(VarianceType::FixedSmall);
    let (c, out) = (config.in_channels, config.out_channels);
    if variance == VarianceType::Learned {
        return Err(usage(
            "variance_type learned: the trainer learns variances as learned_range (an interpolation that stays in range); use variance_type learned_range",
        ));
    }
    if variance.is_learned() {
        if out != 2 * c {
            return Err(usage(format!(
                "config key `out_channels`: found {out}, expected {} (variance_type {variance} learns a variance per input channel beside the noise prediction)",
                2 * c
            )));
        }
        if o.loss == Loss::Simple {
            return Err(usage(format!(
                "--loss simple: variance_type {variance} needs --loss hybrid or vlb (L_simple does not train the variance)"
            )));
        }
    } else {
        if out != c {
            return Err(usage(format!(
                "config key `out_channels`: found {out}, expected {c} (one noise prediction per input channel; a variance is learned only with variance_type learned or learned_range)"
            )));
        }
        if o.loss == Loss::Hybrid {
            return Err(usage(format!(
                "--loss hybrid: variance_type {variance} is fixed, and L_hybrid's L_vlb term trains only the variance; use --loss simple or vlb, or a learned variance"
            )));
        }
    }
    if o.timestep_sampling == TimestepSampling::Importance && o.loss == Loss::Simple {
        return Err(usage("--timestep-sampling importance: samples t for L_vlb; use it with --loss hybrid or vlb"));
    }
    Ok(())
}

/// Checks every hyper-parameter before anything is written.
fn check_options(o: &TrainOptions, t_count: usize) -> Result<(), TrainError> {
    if o.steps == 0 || o.steps > 1_000_000_000 {
        return Err(usage(format!("--steps {}: expected 1 to 1000000000", o.steps)));
    }
    if o.batch_size == 0 || o.batch_size > 65_536 {
        return Err(usage(format!("--batch-size {}: expected 1 to 65536", o.batch_size)));
    }
    if o.save_every == 0 {
        return Err(usage("--save-every 0: expected at least 1"));
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(usage(format!("--lr {}: expected a finite number > 0", o.lr)));
    }
    if !(o.ema_decay.is_finite() && (0.0..1.0).contains(&o.ema_decay)) {
        return Err(usage(format!("--ema-decay {}: expected a number in [0, 1)", o.ema_decay)));
    }
    if !(o.grad_clip.is_finite() && o.grad_clip >= 0.0) {
        return Err(usage(format!("--grad-clip {}: expected a finite number >= 0 (0: no clipping)", o.grad_clip)));
    }
    if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
        return Err(usage(format!("--weight-decay {}: expected a finite number >= 0", o.weight_decay)));
    }
    if o.sample_every > 0 && (o.preview_steps == 0 || o.preview_steps > t_count) {
        return Err(usage(format!(
            "--preview-steps {}: expected 1 to {t_count} (num_train_timesteps) when --sample-every is {} (0 turns previews off)",
            o.preview_steps, o.sample_every
        )));
    }
    Ok(())
}

/// A clap parser for a scheduler config name (diffusers' spelling, shown in --help).
fn scheduler_name<T: Clone + Send + Sync + 'static>(
    names: &'static [&'static str],
    from_name: fn(&str) -> Option<T>,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names).try_map(move |s| from_name(&s).ok_or("not a known name"))
}

/// `--beta-schedule`, `--variance-type` and `--prediction-type` set those keys of the
/// scheduler config that the run records; a resumed run must already have the value given
/// (an absent key counts as DDPMScheduler's default).
fn scheduler_flags(a: &FitArgs, text: &str, resumed: bool) -> Result<String, TrainError> {
    let given = [
        ("beta_schedule", a.beta_schedule.map(|v| v.name())),
        ("variance_type", a.variance_type.map(|v| v.name())),
        ("prediction_type", a.prediction_type.map(|v| v.name())),
    ];
    if given.iter().all(|(_, v)| v.is_none()) {
        return Ok(text.to_string());
    }
    let own = SchedulerConfig::from_json_str(text, "scheduler config")?;
    let own_value = |key: &str| match key {
        "beta_schedule" => own.beta_schedule.unwrap_or(BetaSchedule::Linear).name(),
        "variance_type" => own.variance_type.unwrap_or(VarianceType::FixedSmall).name(),
        _ => own.prediction_type.unwrap_or(PredictionType::Epsilon).name(),
    };
    let mut json: serde_json::Value = serde_json::from_str(text).map_err(|e| usage(format!("scheduler config: {e}")))?;
    let map = json.as_object_mut().ok_or_else(|| usage("scheduler config: expected a JSON object"))?;
    for (key, value) in given {
        let Some(value) = value else { continue };
        if resumed && own_value(key) != value {
            return Err(usage(format!(
                "--{} {value}: the run in {} was started with {key} {}; a resumed run keeps its schedule",
                key.replace('_', "-"),
                a.out.display(),
                own_value(key)
            )));
        }
        map.insert(key.to_string(), value.into());
    }
    if resumed {
        return Ok(text.to_string());
    }
    serde_json::to_string_pretty(&json).map_err(|e| usage(format!("scheduler config: {e}")))
}

fn run_fit(a: FitArgs) -> Result<ExitCode, TrainError> {
    if let Some(m) = a.max_memory {
        ddpm_io::limits::set_memory_limit(m);
    }
    if let Some(t) = a.threads {
        if t < 1 {
            return Err(usage(format!("--threads {t}: expected at least 1")));
        }
        ddpm_io::limits::check_threads("--threads", t as usize)?;
    }
    let run = RunDir(a.out.clone());
    // 1. network, schedule and hyper-parameters: a resumed run's own (its folder is checked
    // and trusted no further than itself), or a new run's from the preset or config and flags.
    let resumed = if a.resume { run.resume_state()? } else { None };
    if !a.resume {
        if let Some(what) = run.holds_a_run() {
            return Err(usage(format!(
                "{} already holds a run ({what}): pass --resume to continue it, or choose another --out",
                a.out.display()
            )));
        }
    }
    let given = match (&a.config, &a.preset) {
        (Some(path), None) => {
            let config = UNetConfig::from_file(path)?;
            let digits = preset("digits")?;
            // The config decides the network; label dropout only when asked (--cond-drop-prob).
            Some(Preset { config, options: TrainOptions { steps: 10_000, cond_drop_prob: 0.0, ..digits.options }, ..digits })
        }
        (None, Some(name)) => Some(preset(name)?),
        _ => None,
    };
    let (config, mut options, scheduler_json, threads) = match &resumed {
        Some(r) => {
            let config = UNetConfig::from_file(&a.out.join("unet/config.json"))?;
            if let Some(Preset { config: given_config, .. }) = &given {
                if *given_config != config {
                    return Err(usage(format!(
                        "{}: the network of --{} differs from the run's own ({}); a resumed run keeps its network",
                        a.out.display(),
                        if a.config.is_some() { "config" } else { "preset" },
                        a.out.join("unet/config.json").display()
                    )));
                }
            }
            let p = a.out.join("scheduler/scheduler_config.json");
            let text = ddpm_io::files::read_regular_text(&p, ddpm_io::limits::MAX_CONFIG_BYTES, "scheduler config")?;
            SchedulerConfig::from_json_str(&text, &p.display().to_string())?;
            if let Some(sc) = &a.scheduler_config {
                let given = ddpm_io::files::read_regular_text(sc, ddpm_io::limits::MAX_CONFIG_BYTES, "scheduler config")?;
                if SchedulerConfig::from_json_str(&given, &sc.display().to_string())? != SchedulerConfig::from_json_str(&text, "")? {
                    return Err(usage(format!(
                        "--scheduler-config {}: differs from the run's own ({}); a resumed run keeps its schedule",
                        sc.display(),
                        p.display()
                    )));
                }
            }
            (config, r.options.clone(), text, a.threads.unwrap_or(r.threads))
        }
        None => {
            let Some(Preset { config, options, scheduler }) = given else {
                return Err(usage(if a.resume {
                    format!(
                        "--resume: {} holds no run to continue; give --config FILE or --preset NAME (digits, digits-hybrid, cifar10) to start one",
                        a.out.display()
                    )
                } else {
                    "give --config FILE or --preset NAME (digits, digits-hybrid, cifar10)".to_string()
                }));
            };
            let text = match &a.scheduler_config {
                Some(p) => {
                    let text = ddpm_io::files::read_regular_text(p, ddpm_io::limits::MAX_CONFIG_BYTES, "scheduler config")?;
                    SchedulerConfig::from_json_str(&text, &p.display().to_string())?;
                    text
                }
                // The preset's schedule (the paper's for digits and cifar10).
                None => scheduler.to_json_string("DDPMScheduler"),
            };
            let threads = a.threads.unwrap_or_else(|| ddpm_runtime::sys::physical_cores() as i32);
            (config, options, text, threads)
        }
    };
    // Flags. On resume only how long and how often to save and preview may change; any
    // other flag must agree with the run's own value.
    macro_rules! flag {
        ($($f:ident),*) => { $(
            if let Some(v) = a.$f {
                if let (Some(r), false) = (&resumed, options.$f == v) {
                    return Err(usage(format!(
                        "--{} {}: the run in {} was started with {}; a resumed run keeps its hyper-parameters (only --steps, --save-every, --sample-every and --preview-steps may change)",
                        // As spelled on the command line (`hybrid`, not `Hybrid`).
                        stringify!($f).replace('_', "-"), format!("{v:?}").to_lowercase(), a.out.display(), format!("{:?}", r.options.$f).to_lowercase()
                    )));
                }
                options.$f = v;
            }
        )* };
    }
    flag!(batch_size, lr, warmup, ema_decay, grad_clip, weight_decay, seed, loss, timestep_sampling, cond_drop_prob);
    if a.flip && !options.flip {
        if resumed.is_some() {
            return Err(usage(format!(
                "--flip: the run in {} was started without flips; a resumed run keeps its hyper-parameters",
                a.out.display()
            )));
        }
        options.flip = true;
    }
    if let Some(v) = a.steps {
        options.steps = v;
    }
    if let Some(v) = a.save_every {
        options.save_every = v;
    }
    if let Some(v) = a.sample_every {
        options.sample_every = v;
    }
    if let Some(v) = a.preview_steps {
        options.preview_steps = v;
    }
    let scheduler_json = scheduler_flags(&a, &scheduler_json, resumed.is_some())?;
    let sched = SchedulerConfig::from_json_str(&scheduler_json, "scheduler config")?;
    check_options(&options, sched.num_train_timesteps())?;
    if let Some(r) = &resumed {
        if options.steps < r.step {
            return Err(usage(format!("--steps {}: the run is already at step {}", options.steps, r.step)));
        }
    }
    let (h, w) = config.sample_size.ok_or_else(|| usage("config key `sample_size`: missing, the trainer needs the image size"))?;
    if !(config.in_channels == 1 || config.in_channels == 3) {
        return Err(usage(format!("config key `in_channels`: found {}, expected 1 (grayscale) or 3 (RGB)", config.in_channels)));
    }
    check_objective(&config, &sched, &options)?;
    // Memory: weights, gradients, EMA and two Adam moments, and a batch's activations
    // (a generous bound: every level's width at full resolution, a few tensors each).
    let params = ddpm_models::parameter_count(&config)?;
    let widest = config.block_out_channels.iter().copied().max().unwrap_or(1);
    let activations = ddpm_io::limits::bytes_of(
        &[options.batch_size, widest, h, w],
        4 * 4 * config.block_out_channels.len() * (config.layers_per_block + 2),
    );
    ddpm_io::limits::check_memory(
        &format!("training a network of {params} parameters on batches of {} images of {h}x{w}", options.batch_size),
        ddpm_io::limits::bytes_of(&[params], 4 * 5) + activations,
    )?;

    // 2. data
    let t0 = std::time::Instant::now();
    let dataset = data::load(&a.data, config.in_channels, (h, w), a.strict)?;
    tracing::info!(
        "data: {} images of {}x{}x{} from {} in {:.2} s ({} unreadable skipped)",
        dataset.n,
        dataset.channels,
        dataset.height,
        dataset.width,
        dataset.source,
        t0.elapsed().as_secs_f64(),
        dataset.skipped
    );
    if dataset.skipped > 0 {
        eprintln!("skipped {} unreadable files (use --strict to stop on them)", dataset.skipped);
    }
    if !(options.cond_drop_prob.is_finite() && (0.0..1.0).contains(&options.cond_drop_prob)) {
        return Err(usage(format!("--cond-drop-prob {}: expected a probability in [0, 1)", options.cond_drop_prob)));
    }
    let null_label = match (config.num_class_embeds, options.cond_drop_prob > 0.0) {
        (Some(k), true) if k >= 2 => Some(k as i64 - 1),
        (_, true) => {
            return Err(usage(format!(
                "--cond-drop-prob {}: label dropout needs a class-conditional network with a null label (config key `num_class_embeds` = classes + 1)",
                options.cond_drop_prob
            )))
        }
        (_, false) => None,
    };
    if let Some(k) = config.num_class_embeds {
        let labels = dataset.labels.as_ref().ok_or_else(|| {
            usage(format!(
            "config key `num_class_embeds` is {k}, but {} has no labels (use class sub-folders, or an IDX labels file beside the images)",
            a.data.display()
        ))
        })?;
        if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= k) {
            return Err(usage(format!("{}: label {bad} is outside 0..{k} (config key `num_class_embeds`)", a.data.display())));
        }
        if let Some(null) = null_label {
            if let Some(bad) = labels.iter().find(|&&l| l == null) {
                return Err(usage(format!(
                    "{}: label {bad} is the null label of --cond-drop-prob (the last of config key `num_class_embeds` = {k}); set num_class_embeds to the classes + 1",
                    a.data.display()
                )));
            }
        }
    }

    // A fine-tune's starting weights, checked before anything is written.
    let init = match (&a.init_from, &resumed) {
        (Some(src), None) => Some(ddpm_trainer::train::init_from(src, &config)?),
        _ => None,
    };

    // 3. device, threads, the run folder
    let device = match a.device {
        DeviceArg::Cpu => tch::Device::Cpu,
        DeviceArg::Cuda if tch::Cuda::is_available() => tch::Device::Cuda(0),
        DeviceArg::Cuda => return Err(usage("--device cuda: no CUDA device is available to libtorch")),
    };
    if threads < 1 {
        return Err(usage(format!("threads {threads} (the run's state.json): expected at least 1")));
    }
    ddpm_io::limits::check_threads("--threads", threads as usize)?;
    tch::set_num_threads(threads);
    std::fs::create_dir_all(a.out.join("scheduler")).map_err(|e| usage(format!("{}: {e}", a.out.display())))?;
    ddpm_io::files::write_atomically(a.out.join("scheduler/scheduler_config.json"), |w| w.write_all(scheduler_json.as_bytes()))?;
    let state = a.out.join("train_state");
    if let Ok(entries) = std::fs::read_dir(&state) {
        for e in entries.flatten() {
            // A checkpoint under its temporary name (".step-N.XXXX"), left by a killed run.
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let steps = options.steps;
    if let Some(null) = null_label {
        // Which label means "no label", for the exporter (metadata guidance_config) and the
        // runtime; the recommended scale is 1 until one is measured (exporter --guidance-scale).
        let json = format!("{{\n  \"null_class_label\": {null},\n  \"guidance_scale\": 1.0\n}}\n");
        ddpm_io::files::write_atomically(a.out.join("guidance.json"), |w| w.write_all(json.as_bytes()))?;
    }
    let spec = FitSpec { run: a.out.clone(), data: dataset, config, scheduler: sched, options, resume: resumed, device, threads, init };
    match fit(spec, stop)? {
        Outcome::Finished { images_per_s } => {
            println!(
                "trained {} to step {steps}: weights in {} ({images_per_s:.1} images/s after the first step)",
                a.out.display(),
                a.out.join("unet").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted { step } => {
            eprintln!("interrupted: checkpoint saved at step {step}; continue with --resume");
            Ok(ExitCode::from(INTERRUPTED as u8))
        }
    }
}

fn main() -> ExitCode {
    let run = |cli: Cli| match cli.command {
        Command::Fit(a) => run_fit(*a),
        Command::Classifier { data, eval_data, out, epochs, seed, threads } => run_classifier(data, eval_data, out, epochs, seed, threads),
    };
    ddpm_io::cli::main("info", true, run, |e: &TrainError| if e.is_bad_input() { 2 } else { 1 })
}
