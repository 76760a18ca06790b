//! The run folder (DESIGN.md: unet/, scheduler/, train_state/, loss.csv, samples/): what
//! `--resume` continues from, the training state it restores (or a fresh one), and the
//! checkpoints, each written whole under a temporary name and renamed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ddpm_models::tch_backend::tensors_to_weights;
use ddpm_models::weights::{read_safetensors, write_safetensors};
use ddpm_models::{parameter_list, UNetCheckpoint, UNetConfig, Weights};
use tch::Tensor;

use super::timesteps::LossHistory;
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use crate::options::{TimestepSampling, TrainOptions};

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

pub(super) fn to_weights(params: &BTreeMap<String, Tensor>) -> Result<Weights> {
    Ok(tensors_to_weights(params)?)
}

/// PyTorch's default initialisation (what a fresh diffusers UNet2DModel has), drawn from
/// the run's seed.
pub fn init_weights(config: &UNetConfig, seed: u64) -> Result<Weights> {
    Ok(ddpm_models::init::pytorch_default(&parameter_list(config)?, seed ^ 0x696e_6974))
}

/// The weights a new run starts from when it fine-tunes another run (`--init-from RUN`):
/// RUN's EMA weights (`unet/`), every tensor of the new network of the same shape, except
/// that a class embedding one row longer (a null label added for classifier-free
/// guidance) gets the mean of the existing rows as its new row: the embedding of "an
/// average class", a neutral start for "no label" that leaves every trained row as it was.
pub fn init_from(run: &Path, config: &UNetConfig) -> Result<Weights> {
    let unet = UNetCheckpoint::load(&run.join("unet"))?;
    let mut out = Weights::new();
    for (name, shape) in parameter_list(config)? {
        let bad = |msg: String| TrainError::Usage(format!("--init-from {}: tensor {name}: {msg}", run.display()));
        let src = unet.weights.get(&name).ok_or_else(|| bad("missing".into()))?;
        let w = if src.shape == shape {
            src.clone()
        } else if name == "class_embedding.weight" && shape.len() == 2 && src.shape == [shape[0] - 1, shape[1]] {
            let (rows, dim) = (src.shape[0], src.shape[1]);
            let mut data = src.data.clone();
            data.extend((0..dim).map(|j| (0..rows).map(|r| src.data[r * dim + j]).sum::<f32>() / rows as f32));
            ddpm_models::Weight { shape: shape.clone(), data }
        } else {
            return Err(bad(format!("shape {:?}, expected {shape:?} (the new run's network)", src.shape)));
        };
        out.insert(name, w);
    }
    Ok(out)
}

/// Where a fit starts: its step, weights, EMA weights and (resumed) Adam moments.
pub(super) struct StartState {
    pub(super) step: u64,
    pub(super) params: Weights,
    pub(super) ema: Weights,
    pub(super) moments: Option<(Weights, Weights)>,
    /// The losses importance sampling draws t from (--timestep-sampling importance).
    pub(super) history: Option<LossHistory>,
}

impl StartState {
    /// The state of the checkpoint `resume` names, every tensor checked against the network
    /// of `config` (present, of its shape, finite); a fresh initialisation from `seed` when
    /// there is none.
    /// `init`: a new run's starting weights (another run's, `--init-from`).
    pub(super) fn load(
        resume: Option<&ResumeState>,
        config: &UNetConfig,
        options: &TrainOptions,
        t_count: usize,
        threads: i32,
        init: Option<&Weights>,
    ) -> Result<Self> {
        let importance = options.timestep_sampling == TimestepSampling::Importance;
        let Some(r) = resume else {
            let w = match init {
                Some(w) => w.clone(),
                None => init_weights(config, options.seed)?,
            };
            let history = importance.then(|| LossHistory::new(t_count));
            return Ok(Self { step: 0, params: w.clone(), ema: w, moments: None, history });
        };
        let dir = &r.dir;
        if r.threads != threads {
            tracing::warn!(
                "the run was started with {} threads, resumed with {threads}: results stay close but are not bit-identical",
                r.threads
            );
        }
        let m = read_safetensors(&dir.join("adam_m.safetensors"))?;
        let v = read_safetensors(&dir.join("adam_v.safetensors"))?;
        let params = read_safetensors(&dir.join("params.safetensors"))?;
        let ema = read_safetensors(&dir.join("ema.safetensors"))?;
        let expected = parameter_list(config)?;
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
        let history = if importance { Some(LossHistory::load(dir, t_count)?) } else { None };
        Ok(Self { step: r.step, params, ema, moments: Some((m, v)), history })
    }
}

pub(super) fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io(format!("{}: {e}", path.display()))
}

pub(super) fn write_loss_csv(path: &Path, rows: &[(u64, f64, f64)]) -> Result<()> {
    let mut text = String::from("step,loss,lr\n");
    for (s, l, lr) in rows {
        text.push_str(&format!("{s},{l},{lr}\n"));
    }
    ddpm_io::files::write_atomically(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// The loss history of a checkpoint: every row must parse, steps strictly increasing; a
/// damaged file is an error naming the line (the history is never silently dropped).
pub(super) fn read_loss_csv(path: &Path, up_to: u64) -> Result<Vec<(u64, f64, f64)>> {
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

pub(super) struct Checkpointer<'a> {
    pub(super) run: &'a RunDir,
    pub(super) config: &'a UNetConfig,
    pub(super) options: &'a TrainOptions,
    pub(super) threads: i32,
}

impl Checkpointer<'_> {
    /// train_state/step-N (raw weights, EMA, moments, state.json) written under a
    /// temporary name and renamed, then LATEST, then unet/ (the EMA weights).
    pub(super) fn save(
        &self,
        step: u64,
        params: &BTreeMap<String, Tensor>,
        ema: &BTreeMap<String, Tensor>,
        opt: &AdamW,
        rows: &[(u64, f64, f64)],
        history: Option<&LossHistory>,
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
        let final_dir = state.join(&name);
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| io_err(&final_dir, e))?;
        }
        ddpm_io::files::create_dir_atomically(&final_dir, |tmp| -> Result<()> {
            write_safetensors(&tmp.join("params.safetensors"), &to_weights(params)?)?;
            write_safetensors(&tmp.join("ema.safetensors"), &to_weights(ema)?)?;
            write_safetensors(&tmp.join("adam_m.safetensors"), &to_weights(&opt.m)?)?;
            write_safetensors(&tmp.join("adam_v.safetensors"), &to_weights(&opt.v)?)?;
            let json = serde_json::to_string_pretty(&StateJson { step, options: self.options.clone(), threads: self.threads })
                .map_err(|e| TrainError::Io(e.to_string()))?;
            ddpm_io::files::write_atomically(tmp.join("state.json"), |w| w.write_all(json.as_bytes()))?;
            if let Some(h) = history {
                h.save(tmp)?;
            }
            // The loss history travels with the checkpoint, so that a run killed between the
            // checkpoint and the top-level loss.csv loses no row.
            write_loss_csv(&tmp.join("loss.csv"), rows)
        })?;
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
