//! The training loop of Ho et al. 2020, Algorithm 1: x_0 from the data, t uniform over the
//! training steps, eps ~ N(0, I), a gradient step on || target - model(x_t, t) ||^2
//! (L_simple; the target is eps, v or x_0 by the scheduler's prediction type). Forward
//! noising uses the runtime's `Schedule`, the same code the samplers use.
//!
//! Every random draw is a function of (seed, step) or (seed, epoch), so a run resumed from
//! a checkpoint continues exactly as the uninterrupted run would have.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ddpm_models::tch_backend::{tensors_to_weights, weights_to_tensors, TchBackend, TchTensor};
use ddpm_models::weights::{read_safetensors, write_safetensors};
use ddpm_models::{parameter_list, UNet2DModel, UNetCheckpoint, UNetConfig, Weights};
use ddpm_runtime::{Schedule, SchedulerConfig};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::optim::{clip_grad_norm, ema_decay, ema_update, AdamW};
use crate::options::TrainOptions;

/// Exit status of a run that was interrupted by Ctrl-C after saving.
pub const INTERRUPTED: i32 = 130;

/// How a call to [`fit`] ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// `images_per_s`: training throughput from the second step of this call on.
    Finished {
        images_per_s: f64,
    },
    Interrupted {
        step: u64,
    },
}

/// The run folder (DESIGN.md): unet/, scheduler/, train_state/, loss.csv, samples/.
pub struct RunDir(pub PathBuf);

/// What `--resume` continues from: the newest checkpoint of the run, checked.
#[derive(Debug, Clone)]
pub struct ResumeState {
    pub dir: PathBuf,
    pub step: u64,
    pub options: TrainOptions,
    pub threads: i32,
}

/// The files of a checkpoint folder.
const CHECKPOINT_FILES: [&str; 6] =
    ["params.safetensors", "ema.safetensors", "adam_m.safetensors", "adam_v.safetensors", "state.json", "loss.csv"];

fn is_checkpoint_name(name: &str) -> bool {
    name.len() == 13 && name.starts_with("step-") && name[5..].bytes().all(|b| b.is_ascii_digit())
}

impl RunDir {
    fn state(&self) -> PathBuf {
        self.0.join("train_state")
    }

    /// The newest checkpoint as LATEST names it, if LATEST names one of this run's own.
    pub fn latest(&self) -> Option<PathBuf> {
        let name = std::fs::read_to_string(self.state().join("LATEST")).ok()?;
        let name = name.trim();
        if !is_checkpoint_name(name) {
            return None;
        }
        let p = self.state().join(name);
        let meta = std::fs::symlink_metadata(&p).ok()?;
        meta.is_dir().then_some(p)
    }

    /// What makes this folder a run (so that a new fit does not overwrite it), if anything.
    pub fn holds_a_run(&self) -> Option<String> {
        ["train_state", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "loss.csv"]
            .into_iter()
            .find(|f| self.0.join(f).symlink_metadata().is_ok())
            .map(|f| format!("{f} is there"))
    }

    /// The checkpoint `--resume` continues from, checked: LATEST must name a checkpoint
    /// folder of this run (`step-NNNNNNNN` inside train_state, not a link), holding every
    /// file, with a readable state.json of the same step. None: the folder holds no run
    /// at all (nothing to resume). A damaged run is an error naming the file, never a
    /// silent new start over its checkpoints.
    pub fn resume_state(&self) -> Result<Option<ResumeState>> {
        let state = self.state();
        if self.holds_a_run().is_none() {
            return Ok(None);
        }
        let bad = |msg: String| TrainError::Usage(msg);
        let checkpoints = || -> String {
            let mut names: Vec<String> = std::fs::read_dir(&state)
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| is_checkpoint_name(n)).collect())
                .unwrap_or_default();
            names.sort();
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        };
        match std::fs::symlink_metadata(&state) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(bad(format!("{}: a link or a file, expected the run's own checkpoint folder", state.display()))),
            Err(_) => return Err(bad(format!("{}: missing, so {} holds no checkpoint to resume from", state.display(), self.0.display()))),
        }
        let latest_path = state.join("LATEST");
        // Killed before its first checkpoint: nothing is there to lose or to continue from.
        if std::fs::symlink_metadata(&latest_path).is_err() && checkpoints() == "none" && !self.0.join("unet/config.json").exists() {
            return Ok(None);
        }
        let text = ddpm_io::files::read_regular_text(&latest_path, 4096, "LATEST")
            .map_err(|e| bad(format!("{e} (the run's checkpoints: {})", checkpoints())))?;
        let name = text.trim();
        if !is_checkpoint_name(name) {
            return Err(bad(format!(
                "{}: names {name:?}, expected a checkpoint of this run (step-NNNNNNNN inside {}; there: {})",
                latest_path.display(),
                state.display(),
                checkpoints()
            )));
        }
        let dir = state.join(name);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(bad(format!(
                    "{}: not a checkpoint folder (a link or a file), named by {}",
                    dir.display(),
                    latest_path.display()
                )))
            }
            Err(_) => {
                return Err(bad(format!(
                    "{}: names {name}, which is missing (the run's checkpoints: {}); nothing was changed",
                    latest_path.display(),
                    checkpoints()
                )))
            }
        }
        for f in CHECKPOINT_FILES {
            let p = dir.join(f);
            if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                return Err(bad(format!("{}: missing or not a regular file; the checkpoint {name} is incomplete", p.display())));
            }
        }
        let state_path = dir.join("state.json");
        let text = ddpm_io::files::read_regular_text(&state_path, 1 << 20, "state.json")?;
        let parsed: StateJson = serde_json::from_str(&text)
            .map_err(|e| bad(format!("{}: not a checkpoint state ({e}); expected the JSON the trainer writes", state_path.display())))?;
        let named_step: u64 = name[5..].parse().unwrap_or(u64::MAX);
        if parsed.step != named_step {
            return Err(bad(format!("{}: step {}, but the folder is {name}", state_path.display(), parsed.step)));
        }
        for f in ["unet/config.json", "scheduler/scheduler_config.json"] {
            if !self.0.join(f).is_file() {
                return Err(bad(format!("{}: missing; the run cannot be resumed without it", self.0.join(f).display())));
            }
        }
        Ok(Some(ResumeState { dir, step: parsed.step, options: parsed.options, threads: parsed.threads }))
    }
}

/// Saved with every checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct StateJson {
    step: u64,
    options: TrainOptions,
    threads: i32,
}

fn to_weights(params: &BTreeMap<String, Tensor>) -> Result<Weights> {
    Ok(tensors_to_weights(params)?)
}

/// PyTorch's default initialisation (what a fresh diffusers UNet2DModel has), drawn from
/// the run's seed.
pub fn init_weights(config: &UNetConfig, seed: u64) -> Result<Weights> {
    Ok(ddpm_models::init::pytorch_default(&parameter_list(config)?, seed ^ 0x696e_6974))
}

/// The sample order of an epoch: a permutation drawn from (seed, epoch).
fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006f_7264_6572);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}

/// Everything a fit needs.
pub struct FitSpec {
    pub run: PathBuf,
    pub data: Dataset,
    pub config: UNetConfig,
    /// The run's scheduler config (checked).
    pub scheduler: SchedulerConfig,
    /// The run's options, already merged with the flags that may change on resume.
    pub options: TrainOptions,
    /// The checkpoint to continue from (see [`RunDir::resume_state`]); None: a new run.
    pub resume: Option<ResumeState>,
    pub device: Device,
    pub threads: i32,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io(format!("{}: {e}", path.display()))
}

fn write_loss_csv(path: &Path, rows: &[(u64, f64, f64)]) -> Result<()> {
    let mut text = String::from("step,loss,lr\n");
    for (s, l, lr) in rows {
        text.push_str(&format!("{s},{l},{lr}\n"));
    }
    ddpm_io::files::write_atomically(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// The loss history of a checkpoint: every row must parse, steps strictly increasing; a
/// damaged file is an error naming the line (the history is never silently dropped).
fn read_loss_csv(path: &Path, up_to: u64) -> Result<Vec<(u64, f64, f64)>> {
    let text = ddpm_io::files::read_regular_text(path, 1 << 30, "loss history")?;
    let bad = |line: usize, msg: String| TrainError::Usage(format!("{}: line {line}: {msg}", path.display()));
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("step,loss,lr") {
        return Err(bad(1, "expected the header step,loss,lr".into()));
    }
    let mut rows: Vec<(u64, f64, f64)> = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let parsed = match f.as_slice() {
            [s, l, lr] => (s.trim().parse::<u64>(), l.trim().parse::<f64>(), lr.trim().parse::<f64>()),
            _ => return Err(bad(i + 2, format!("found {line:?}, expected step,loss,lr"))),
        };
        let (Ok(s), Ok(l), Ok(lr)) = parsed else {
            return Err(bad(i + 2, format!("found {line:?}, expected an integer step and two numbers")));
        };
        if rows.last().is_some_and(|r| r.0 >= s) {
            return Err(bad(i + 2, format!("step {s} does not follow step {}", rows.last().map_or(0, |r| r.0))));
        }
        // Roll back to the checkpoint so that no step appears twice.
        if s <= up_to {
            rows.push((s, l, lr));
        }
    }
    if up_to > 0 && rows.last().map(|r| r.0) != Some(up_to) {
        return Err(bad(0, format!("the history ends at step {}, expected the checkpoint's step {up_to}", rows.last().map_or(0, |r| r.0))));
    }
    Ok(rows)
}

struct Checkpointer<'a> {
    run: &'a RunDir,
    config: &'a UNetConfig,
    options: &'a TrainOptions,
    threads: i32,
}

impl Checkpointer<'_> {
    /// train_state/step-N (raw weights, EMA, moments, state.json) written under a
    /// temporary name and renamed, then LATEST, then unet/ (the EMA weights).
    fn save(
        &self,
        step: u64,
        params: &BTreeMap<String, Tensor>,
        ema: &BTreeMap<String, Tensor>,
        opt: &AdamW,
        rows: &[(u64, f64, f64)],
    ) -> Result<()> {
        let state = self.run.state();
        std::fs::create_dir_all(&state).map_err(|e| io_err(&state, e))?;
        let name = format!("step-{step:08}");
        // A non-finite weight is never checkpointed: the last good checkpoint stays LATEST.
        for (what, set) in [("weights", params), ("EMA weights", ema)] {
            for (n, t) in set {
                let finite = t.f_isfinite()?.f_all()?.int64_value(&[]) != 0;
                if !finite {
                    return Err(TrainError::Diverged(format!(
                        "{what}: {n} holds NaN or infinite values at step {step}: stopping; the last good checkpoint ({}) is kept",
                        self.run.latest().map(|p| p.display().to_string()).unwrap_or_default()
                    )));
                }
            }
        }
        let tmp = tempfile::Builder::new().prefix(".tmp-step-").tempdir_in(&state).map_err(|e| io_err(&state, e))?;
        write_safetensors(&tmp.path().join("params.safetensors"), &to_weights(params)?)?;
        write_safetensors(&tmp.path().join("ema.safetensors"), &to_weights(ema)?)?;
        write_safetensors(&tmp.path().join("adam_m.safetensors"), &to_weights(&opt.m)?)?;
        write_safetensors(&tmp.path().join("adam_v.safetensors"), &to_weights(&opt.v)?)?;
        let json = serde_json::to_string_pretty(&StateJson { step, options: self.options.clone(), threads: self.threads })
            .map_err(|e| TrainError::Io(e.to_string()))?;
        ddpm_io::files::write_atomically(tmp.path().join("state.json"), |w| w.write_all(json.as_bytes()))?;
        // The loss history travels with the checkpoint, so that a run killed between the
        // checkpoint and the top-level loss.csv loses no row.
        write_loss_csv(&tmp.path().join("loss.csv"), rows)?;
        let final_dir = state.join(&name);
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| io_err(&final_dir, e))?;
        }
        ddpm_io::files::set_mode(tmp.path(), 0o755).map_err(|e| io_err(tmp.path(), e))?;
        let kept = tmp.keep();
        std::fs::rename(&kept, &final_dir).map_err(|e| io_err(&final_dir, e))?;
        ddpm_io::files::write_atomically(state.join("LATEST"), |w| w.write_all(name.as_bytes()))?;
        UNetCheckpoint::save(&self.run.0.join("unet"), self.config, &to_weights(ema)?)?;
        // Keep the two newest checkpoints.
        let mut steps: Vec<PathBuf> = std::fs::read_dir(&state)
            .map_err(|e| io_err(&state, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
            .collect();
        steps.sort();
        for old in steps.iter().rev().skip(2) {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(())
    }
}

/// Trains (or resumes) a run. Returns how it ended; a NaN loss is an error that keeps the
/// last good checkpoint.
pub fn fit(spec: FitSpec, stop: Arc<AtomicBool>) -> Result<Outcome> {
    let run = RunDir(spec.run.clone());
    let sched_cfg = &spec.scheduler;
    let schedule = Schedule::from_config(sched_cfg)?;
    let prediction = sched_cfg.prediction();
    let t_count = schedule.num_train_timesteps() as i64;
    let model = UNet2DModel::new(spec.config.clone())?;
    let device = spec.device;

    // 1. state: fresh or from the last checkpoint
    let options = spec.options.clone();
    let (start, params_w, ema_w, moments) = match &spec.resume {
        Some(r) => {
            let dir = &r.dir;
            if r.threads != spec.threads {
                tracing::warn!(
                    "the run was started with {} threads, resumed with {}: results stay close but are not bit-identical",
                    r.threads,
                    spec.threads
                );
            }
            let m = read_safetensors(&dir.join("adam_m.safetensors"))?;
            let v = read_safetensors(&dir.join("adam_v.safetensors"))?;
            let params = read_safetensors(&dir.join("params.safetensors"))?;
            let ema = read_safetensors(&dir.join("ema.safetensors"))?;
            // Every tensor the network needs, of its shape, finite.
            let expected = parameter_list(&spec.config)?;
            for (file, w) in [("params", &params), ("ema", &ema), ("adam_m", &m), ("adam_v", &v)] {
                let path = dir.join(format!("{file}.safetensors"));
                if w.len() != expected.len() {
                    return Err(TrainError::Usage(format!(
                        "{}: {} tensors, expected {} (the network of unet/config.json)",
                        path.display(),
                        w.len(),
                        expected.len()
                    )));
                }
                for (name, shape) in &expected {
                    match w.get(name) {
                        Some(t) if &t.shape == shape => {
                            if t.data.iter().any(|x| !x.is_finite()) {
                                return Err(TrainError::Usage(format!("{}: tensor {name} holds NaN or infinite values", path.display())));
                            }
                        }
                        Some(t) => {
                            return Err(TrainError::Usage(format!(
                                "{}: tensor {name} has shape {:?}, expected {shape:?}",
                                path.display(),
                                t.shape
                            )))
                        }
                        None => return Err(TrainError::Usage(format!("{}: tensor {name} is missing", path.display()))),
                    }
                }
            }
            (r.step, params, ema, Some((m, v)))
        }
        None => {
            let w = init_weights(&spec.config, spec.options.seed)?;
            (0, w.clone(), w, None)
        }
    };

    let params = weights_to_tensors(&params_w, device, true)?;
    let ema = weights_to_tensors(&ema_w, device, false)?;
    let mut opt = AdamW::new(&params, options.weight_decay)?;
    if let Some((m, v)) = moments {
        opt.m = weights_to_tensors(&m, device, false)?;
        opt.v = weights_to_tensors(&v, device, false)?;
    }
    let ckpt = Checkpointer { run: &run, config: &spec.config, options: &options, threads: spec.threads };
    let loss_path = run.0.join("loss.csv");
    let mut rows = match &spec.resume {
        Some(r) => read_loss_csv(&r.dir.join("loss.csv"), start)?,
        None => vec![],
    };
    if start == 0 {
        ckpt.save(0, &params, &ema, &opt, &rows)?;
        write_loss_csv(&loss_path, &rows)?;
    }
    let samples_dir = run.0.join("samples");
    std::fs::create_dir_all(&samples_dir).map_err(|e| io_err(&samples_dir, e))?;

    // 2. the loop
    let data = &spec.data;
    let (b, per) = (options.batch_size, data.item_len());
    let [c, h, w] = [data.channels as i64, data.height as i64, data.width as i64];
    let mut order_epoch = u64::MAX;
    let mut order = Vec::new();
    let bar = progress_bar(options.steps - start.min(options.steps));
    let started = Instant::now();
    let log_every = (options.steps / 50).max(1);
    let mut step = start;
    let mut after_first: Option<Instant> = None;
    let mut last_update = Instant::now();
    while step < options.steps {
        if step == start + 1 {
            after_first = Some(Instant::now());
        }
        // 2a. the batch: data order from (seed, epoch), everything else from (seed, step)
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        rng.set_stream(step + 1);
        let mut x0 = Vec::with_capacity(b * per);
        let mut labels = Vec::with_capacity(b);
        for i in 0..b {
            let k = step * b as u64 + i as u64;
            let (epoch, pos) = (k / data.n as u64, (k % data.n as u64) as usize);
            if epoch != order_epoch {
                order = epoch_order(data.n, options.seed, epoch);
                order_epoch = epoch;
            }
            let idx = order[pos];
            let flip = options.flip && rng.random_bool(0.5);
            data.push_item(idx, flip, &mut x0);
            if let Some(l) = &data.labels {
                labels.push(l[idx]);
            }
        }
        let t: Vec<i64> = (0..b).map(|_| rng.random_range(0..t_count)).collect();
        let noise: Vec<f32> = (0..b * per).map(|_| rng.sample(rand_distr::StandardNormal)).collect();
        let xt = schedule.add_noise(&x0, &noise, &t)?;
        let target = schedule.training_target(prediction, &x0, &noise, &t)?;

        // 2b. forward, L_simple, backward
        tch::manual_seed((options.seed.wrapping_mul(1_000_003).wrapping_add(step)) as i64);
        let xt = TchTensor(Tensor::f_from_slice(&xt)?.f_reshape([b as i64, c, h, w])?.f_to_device(device)?);
        let tt = TchTensor(Tensor::f_from_slice(&t)?.f_to_device(device)?);
        let target = Tensor::f_from_slice(&target)?.f_reshape([b as i64, c, h, w])?.f_to_device(device)?;
        let labels_t = if spec.config.num_class_embeds.is_some() {
            Some(TchTensor(Tensor::f_from_slice(&labels)?.f_to_device(device)?))
        } else {
            None
        };
        let mut backend = TchBackend::from_tensors(params.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect(), device);
        backend.train = true;
        let out = model.forward(&mut backend, &xt, &tt, labels_t.as_ref())?;
        let loss = out.f_sub(&target)?.f_square()?.f_mean(Kind::Float)?;
        let loss_value = loss.double_value(&[]);
        if !loss_value.is_finite() {
            bar.finish_and_clear();
            return Err(TrainError::Diverged(format!(
                "loss is {loss_value} at step {}: stopping; the last good checkpoint ({}) is kept",
                step + 1,
                run.latest().map(|p| p.display().to_string()).unwrap_or_default()
            )));
        }
        for p in params.values() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        loss.f_backward()?;
        clip_grad_norm(&params, options.grad_clip)?;
        let lr = options.lr * ((step + 1) as f64 / options.warmup.max(1) as f64).min(1.0);
        opt.step(&params, lr, step + 1)?;
        ema_update(&ema, &params, ema_decay(step + 1, options.ema_decay))?;
        step += 1;
        rows.push((step, loss_value, lr));
        let trained_until = Instant::now();

        // 2c. what a person watching wants
        let elapsed = started.elapsed().as_secs_f64();
        let rate = (step - start) as f64 / elapsed.max(1e-9);
        bar.set_position(step - start);
        bar.set_message(format!("loss {loss_value:.4}  {rate:.2} steps/s  {:.0} images/s", rate * b as f64));
        if bar.is_hidden() && (step % log_every == 0 || step == options.steps) {
            tracing::info!("step {step}/{}: loss {loss_value:.5}, {rate:.2} steps/s, {:.0} images/s", options.steps, rate * b as f64);
        }
        let interrupted = stop.load(Ordering::SeqCst);
        if step % options.save_every == 0 || step == options.steps || interrupted {
            ckpt.save(step, &params, &ema, &opt, &rows)?;
            write_loss_csv(&loss_path, &rows)?;
            let pairs: Vec<(u64, f64)> = rows.iter().map(|r| (r.0, r.1)).collect();
            crate::plot::write_loss_png(&run.0.join("loss.png"), &pairs)?;
        }
        if options.sample_every > 0 && (step % options.sample_every == 0) && !interrupted {
            let path = samples_dir.join(format!("step-{step:08}.png"));
            crate::preview::write_preview(&path, &model, &ema, sched_cfg, device, options.preview_steps)?;
        }
        last_update = trained_until;
        if interrupted {
            bar.finish_and_clear();
            return Ok(Outcome::Interrupted { step });
        }
    }
    bar.finish_and_clear();
    let _ = std::io::stderr().flush();
    // From the start of the second step to the end of the last update: checkpoints and
    // previews in between count, the final checkpoint does not.
    let images_per_s = match after_first {
        Some(t) if step > start + 1 => (step - start - 1) as f64 * b as f64 / (last_update - t).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Outcome::Finished { images_per_s })
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}
