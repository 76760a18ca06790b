//! Which training timesteps an S-step sampling chain visits (diffusers' `set_timesteps`),
//! in descending order. numpy's `round` rounds half to even; so does this.

use crate::config::TimestepSpacing;
use crate::error::{Error, Result};

fn check(steps: usize, num_train_timesteps: usize) -> Result<()> {
    if steps == 0 {
        return Err(Error::InvalidArgument("steps: found 0, expected at least 1".into()));
    }
    if steps > num_train_timesteps {
        return Err(Error::InvalidArgument(format!("steps: found {steps}, expected at most num_train_timesteps = {num_train_timesteps}")));
    }
    Ok(())
}

fn check_range(ts: Vec<i64>, num_train_timesteps: usize) -> Result<Vec<i64>> {
    if let Some(&t) = ts.iter().find(|&&t| t < 0 || t as usize >= num_train_timesteps) {
        return Err(Error::InvalidArgument(format!(
            "timestep {t} (from steps_offset) is outside the training range 0..{num_train_timesteps}"
        )));
    }
    Ok(ts)
}

/// Element `i` of `np.linspace(start, stop, num)`, computed as numpy does (i * step +
/// start, the last element exactly `stop`), so that half-way values round the same way.
fn numpy_linspace_at(start: f64, stop: f64, num: usize, i: usize) -> f64 {
    if num == 1 {
        return start;
    }
    if i == num - 1 {
        return stop;
    }
    i as f64 * ((stop - start) / (num - 1) as f64) + start
}

/// Timesteps of DDPMScheduler / DDIMScheduler for `steps` inference steps.
pub fn ddpm_timesteps(spacing: TimestepSpacing, num_train_timesteps: usize, steps: usize, steps_offset: i64) -> Result<Vec<i64>> {
    check(steps, num_train_timesteps)?;
    let t_count = num_train_timesteps as f64;
    let ts: Vec<i64> = match spacing {
        TimestepSpacing::Linspace => {
            let last = t_count - 1.0;
            (0..steps).rev().map(|i| numpy_linspace_at(0.0, last, steps, i).round_ties_even() as i64).collect()
        }
        TimestepSpacing::Leading => {
            let ratio = (num_train_timesteps / steps) as i64;
            (0..steps as i64).rev().map(|i| i * ratio + steps_offset).collect()
        }
        TimestepSpacing::Trailing => {
            // diffusers builds this with np.arange(T, 0, -T/S), whose float steps can add
            // an S+1-th element that becomes timestep -1; exactly S steps are taken here.
            let ratio = t_count / steps as f64;
            (0..steps).map(|i| (t_count - i as f64 * ratio).round_ties_even() as i64 - 1).collect()
        }
    };
    check_range(ts, num_train_timesteps)
}

/// Timesteps of DPMSolverMultistepScheduler (it spaces S + 1 points and drops the last).
pub fn dpm_solver_timesteps(spacing: TimestepSpacing, num_train_timesteps: usize, steps: usize, steps_offset: i64) -> Result<Vec<i64>> {
    check(steps, num_train_timesteps)?;
    let t_count = num_train_timesteps as f64;
    let ts: Vec<i64> = match spacing {
        TimestepSpacing::Linspace => {
            let last = t_count - 1.0;
            (1..=steps).rev().map(|i| numpy_linspace_at(0.0, last, steps + 1, i).round_ties_even() as i64).collect()
        }
        TimestepSpacing::Leading => {
            let ratio = (num_train_timesteps / (steps + 1)) as i64;
            (1..=steps as i64).rev().map(|i| i * ratio + steps_offset).collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = t_count / steps as f64;
            (0..steps).map(|i| (t_count - i as f64 * ratio).round_ties_even() as i64 - 1).collect()
        }
    };
    check_range(ts, num_train_timesteps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn linspace_rounds_like_numpy() {
        // The drift STYLE.md warns about: truncation gives 999, 964, 930.
        let ts = ddpm_timesteps(TimestepSpacing::Linspace, 1000, 30, 0).unwrap();
        assert_eq!(&ts[..3], &[999, 965, 930]);
    }

    #[test]
    fn zero_steps_is_an_error() {
        assert!(ddpm_timesteps(TimestepSpacing::Leading, 1000, 0, 0).is_err());
        assert!(dpm_solver_timesteps(TimestepSpacing::Leading, 1000, 1001, 0).is_err());
    }

    proptest! {
        #[test]
        fn len_is_steps_and_descending(t in 2usize..2000, frac in 0.0f64..1.0, kind in 0usize..3, offset in 0i64..2) {
            let steps = ((t as f64 * frac) as usize).clamp(1, t - 1);
            let spacing = [TimestepSpacing::Leading, TimestepSpacing::Trailing, TimestepSpacing::Linspace][kind];
            for ts in [ddpm_timesteps(spacing, t, steps, offset), dpm_solver_timesteps(spacing, t, steps, offset)] {
                // steps_offset can push the first timestep past T - 1: an error, never a panic.
                let ts = match ts {
                    Ok(ts) => ts,
                    Err(e) => { prop_assert!(offset > 0, "{e}"); continue; }
                };
                prop_assert_eq!(ts.len(), steps);
                for w in ts.windows(2) { prop_assert!(w[0] >= w[1]); }
                prop_assert!(ts.iter().all(|&x| x >= 0 && (x as usize) < t));
            }
        }
    }
}
