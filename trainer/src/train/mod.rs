//! The training loop of Ho et al. 2020, Algorithm 1: x_0 from the data, t uniform over the
//! training steps, eps ~ N(0, I), a gradient step on || target - model(x_t, t) ||^2
//! (L_simple; the target is eps, v or x_0 by the scheduler's prediction type). Forward
//! noising uses the runtime's `Schedule`, the same code the samplers use.
//!
//! Every random draw is a function of (seed, step) or (seed, epoch), so a run resumed from
//! a checkpoint continues exactly as the uninterrupted run would have.
//!
//! The parts: `run` (the run folder, resume and checkpoints), `batch` (batch assembly),
//! `step` (the optimisation step), `report` (progress and logging); [`fit`] strings them
//! together with the previews.

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
    /// A new run's starting weights, from another run (`--init-from`); None: initialised.
    pub init: Option<Weights>,
}

mod batch;
mod report;
mod run;
mod step;
mod timesteps;
pub(crate) mod vlb;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ddpm_models::tch_backend::weights_to_tensors;
use ddpm_models::{UNet2DModel, UNetConfig, Weights};
use ddpm_runtime::{Schedule, SchedulerConfig};
use tch::Device;

use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use crate::options::{Loss, TrainOptions};
use batch::Batches;
use report::Report;
pub use run::{init_from, init_weights, ResumeState, RunDir};
use run::{io_err, read_loss_csv, write_loss_csv, Checkpointer, StartState};
use step::Trainee;
use vlb::VlbConstants;

/// Trains (or resumes) a run. Returns how it ended; a NaN loss is an error that keeps the
/// last good checkpoint.
pub fn fit(spec: FitSpec, stop: Arc<AtomicBool>) -> Result<Outcome> {
    let run = RunDir(spec.run.clone());
    let schedule = Schedule::from_config(&spec.scheduler)?;
    let prediction = spec.scheduler.prediction();
    let model = UNet2DModel::new(spec.config.clone())?;
    let options = &spec.options;
    let device = spec.device;

    // 1. state: fresh or from the last checkpoint
    let t_count = schedule.num_train_timesteps();
    let mut state = StartState::load(spec.resume.as_ref(), &spec.config, options, t_count, spec.threads, spec.init.as_ref())?;
    let vlb = match options.loss {
        Loss::Simple => None,
        _ => Some(VlbConstants::new(
            &schedule,
            spec.scheduler.variance_type.unwrap_or(ddpm_runtime::VarianceType::FixedSmall),
            prediction,
            device,
        )?),
    };
    let start = state.step;
    let params = weights_to_tensors(&state.params, device, true)?;
    let mut opt = AdamW::new(&params, options.weight_decay)?;
    if let Some((m, v)) = &state.moments {
        opt.m = weights_to_tensors(m, device, false)?;
        opt.v = weights_to_tensors(v, device, false)?;
    }
    let mut trainee = Trainee { model: &model, ema: weights_to_tensors(&state.ema, device, false)?, params, opt, device };
    let ckpt = Checkpointer { run: &run, config: &spec.config, options, threads: spec.threads };
    let loss_path = run.0.join("loss.csv");
    let mut rows = match &spec.resume {
        Some(r) => read_loss_csv(&r.dir.join("loss.csv"), start)?,
        None => vec![],
    };
    if start == 0 {
        ckpt.save(0, &trainee.params, &trainee.ema, &trainee.opt, &rows, state.history.as_ref())?;
        write_loss_csv(&loss_path, &rows)?;
    }
    let samples_dir = run.0.join("samples");
    std::fs::create_dir_all(&samples_dir).map_err(|e| io_err(&samples_dir, e))?;

    // 2. the loop
    let mut batches = Batches::new(&spec.data, options.seed, options.batch_size, options.flip, t_count as i64);
    if let (Some(k), true) = (spec.config.num_class_embeds, options.cond_drop_prob > 0.0) {
        batches = batches.with_label_dropout(options.cond_drop_prob, k as i64 - 1);
    }
    let report = Report::new(start, options.steps, options.batch_size);
    let mut step = start;
    let mut after_first: Option<Instant> = None;
    let mut last_update = Instant::now();
    while step < options.steps {
        if step == start + 1 {
            after_first = Some(Instant::now());
        }
        // 2a. the batch, 2b. the optimisation step
        let p = state.history.as_ref().map(|h| h.probabilities());
        let batch = batches.at(step, p.as_deref());
        let (loss, lr, per_image) = trainee.step(&batch, step, &schedule, prediction, options, vlb.as_ref())?;
        if !loss.is_finite() {
            report.finish();
            return Err(TrainError::Diverged(format!(
                "loss is {loss} at step {}: stopping; the last good checkpoint ({}) is kept",
                step + 1,
                run.latest().map(|p| p.display().to_string()).unwrap_or_default()
            )));
        }
        if let Some(h) = state.history.as_mut() {
            h.update(&batch.t, &per_image);
        }
        step += 1;
        rows.push((step, loss, lr));
        let trained_until = Instant::now();

        // 2c. what a person watching wants: progress, checkpoints, the loss curve, previews
        report.step(step, loss);
        let interrupted = stop.load(Ordering::SeqCst);
        if step % options.save_every == 0 || step == options.steps || interrupted {
            ckpt.save(step, &trainee.params, &trainee.ema, &trainee.opt, &rows, state.history.as_ref())?;
            write_loss_csv(&loss_path, &rows)?;
            let pairs: Vec<(u64, f64)> = rows.iter().map(|r| (r.0, r.1)).collect();
            crate::plot::write_loss_png(&run.0.join("loss.png"), &pairs)?;
        }
        if options.sample_every > 0 && (step % options.sample_every == 0) && !interrupted {
            let path = samples_dir.join(format!("step-{step:08}.png"));
            crate::preview::write_preview(&path, &model, &trainee.ema, &spec.scheduler, device, options.preview_steps)?;
        }
        last_update = trained_until;
        if interrupted {
            report.finish();
            return Ok(Outcome::Interrupted { step });
        }
    }
    report.finish();
    let _ = std::io::stderr().flush();
    // From the start of the second step to the end of the last update: checkpoints and
    // previews in between count, the final checkpoint does not.
    let b = options.batch_size;
    let images_per_s = match after_first {
        Some(t) if step > start + 1 => (step - start - 1) as f64 * b as f64 / (last_update - t).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Outcome::Finished { images_per_s })
}
