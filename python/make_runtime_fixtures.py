"""Reference values for the runtime's schedule math and samplers, from diffusers.

Run with the fixture environment (diffusers on top of the project's torch):
    $(scripts/fixture-env.sh) python/make_runtime_fixtures.py
Writes small JSON files under tests/fixtures/runtime/ that the Rust tests read; the Rust
tests never need Python.

Sampler chains: for each scheduler config, x_T and a model output for every step are
drawn here (random, so clipping and thresholding are exercised); diffusers' `step` turns
them into the reference x_{t-1}, and the noise each stochastic step drew is recorded, so
the Rust sampler can replay the chain step for step.
"""

import json
import math
import pathlib

import numpy as np
import torch
import diffusers
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "runtime"
OUT.mkdir(parents=True, exist_ok=True)


def f32(t):
    """A tensor as a flat list of floats (float32 values, exactly representable)."""
    return [float(v) for v in torch.as_tensor(t).to(torch.float32).flatten().tolist()]


def dump(name, obj):
    obj = {"generated_by": "python/make_runtime_fixtures.py", "diffusers": diffusers.__version__, **obj}
    (OUT / name).write_text(json.dumps(obj, separators=(",", ":")))
    print(f"wrote {OUT / name} ({(OUT / name).stat().st_size} bytes)")


def schedules():
    cases = [
        {"beta_schedule": "linear"},
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        {"beta_schedule": "squaredcos_cap_v2"},
        {"beta_schedule": "sigmoid", "num_train_timesteps": 200},
        {"beta_schedule": "linear", "rescale_betas_zero_snr": True},
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True},
        {"trained_betas": np.linspace(0.001, 0.05, 50).tolist(), "num_train_timesteps": 50},
    ]
    out = []
    for cfg in cases:
        s = DDPMScheduler(**cfg)
        out.append({"config": cfg, "betas": f32(s.betas), "alphas_cumprod": f32(s.alphas_cumprod)})
    # add_noise / get_velocity on a batch with one timestep per item
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 2, 3, 3, generator=g)
    noise = torch.randn(4, 2, 3, 3, generator=g)
    t = torch.tensor([0, 17, 500, 999])
    s = DDPMScheduler()
    forward = {
        "x0": f32(x0), "noise": f32(noise), "timesteps": t.tolist(),
        "noisy": f32(s.add_noise(x0, noise, t)), "velocity": f32(s.get_velocity(x0, noise, t)),
    }
    dump("schedules.json", {"cases": out, "forward": forward})


def spacings():
    out = []
    for cls, kind in [(DDPMScheduler, "ddpm"), (DDIMScheduler, "ddim"), (DPMSolverMultistepScheduler, "dpm")]:
        for T in [1000, 50, 37]:
            for steps in [1, 3, 7, 10, 20, 30, 50, 999]:
                if steps > T or (kind == "dpm" and steps >= T):
                    continue
                for spacing in ["leading", "trailing", "linspace"]:
                    for offset in [0, 1]:
                        s = cls(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
                        try:
                            s.set_timesteps(steps)
                        except Exception:
                            continue
                        ts = s.timesteps.tolist()
                        # Cases where diffusers leaves the range or yields steps+1 values are
                        # its float-arange artefacts (see runtime/src/spacing.rs): not fixtures.
                        if len(ts) != steps or min(ts) < 0 or max(ts) >= T:
                            continue
                        out.append({"sampler": kind, "T": T, "steps": steps, "spacing": spacing,
                                    "steps_offset": offset, "timesteps": ts})
    dump("spacing.json", {"cases": out})


def to_float64(s):
    """Runs diffusers' step in float64: its float32 internals lose up to ~1e-4 to
    cancellation (1 - ab_t / ab_prev at small t, sigma at ab ~ 0), which would measure
    diffusers' rounding rather than the semantics. Only dtypes change, no formula."""
    s.alphas_cumprod = s.alphas_cumprod.double()
    s.betas = s.betas.double()
    if hasattr(s, "one"):
        s.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(s, "final_alpha_cumprod"):
        s.final_alpha_cumprod = s.final_alpha_cumprod.double()
    if isinstance(s, DPMSolverMultistepScheduler):
        s.alpha_t = torch.sqrt(s.alphas_cumprod)
        s.sigma_t = torch.sqrt(1 - s.alphas_cumprod)
        s.lambda_t = torch.log(s.alpha_t) - torch.log(s.sigma_t)


def chain(name, cls, config, steps, eta=0.0, shape=(2, 1, 3, 3), out_channels=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = cls(**config)
    to_float64(s)
    s.set_timesteps(steps)
    if cls is DPMSolverMultistepScheduler:
        # set_timesteps casts sigmas to float32; recompute the same values in float64.
        ab = s.alphas_cumprod.numpy()
        sig = ((1 - ab) / ab) ** 0.5
        ts = s.timesteps.numpy()
        s.sigmas = torch.from_numpy(np.concatenate([np.interp(ts, np.arange(len(sig)), sig), [0.0]]))
    b, c, h, w = shape
    oc = out_channels or c
    # Inputs are float32 values (what the Rust side holds), computed on in float64.
    x = torch.randn(shape, generator=g, dtype=torch.float32).double()
    record = {"name": name, "sampler": {DDPMScheduler: "ddpm", DDIMScheduler: "ddim",
                                         DPMSolverMultistepScheduler: "dpm-solver++"}[cls],
              "config": config, "steps": steps, "eta": eta, "shape": list(shape), "out_channels": oc,
              "timesteps": s.timesteps.tolist(), "x_T": f32(x), "steps_data": []}
    step_gen = torch.Generator().manual_seed(seed + 1)
    for t in s.timesteps:
        # A stand-in model output: mostly the sample (so x_0 drifts and gets clipped),
        # plus noise; for learned variance the extra channels are in [-1, 1].
        eps = (0.6 * x.float() + 0.8 * torch.randn(shape, generator=g)).double()
        if oc == 2 * c:
            var = torch.rand(shape, generator=g) * 2 - 1
            if config.get("variance_type") == "learned":
                var = torch.rand(shape, generator=g) * 0.02 + 1e-4
            model_out = torch.cat([eps, var.double()], dim=1)
        else:
            model_out = eps
        entry = {"t": int(t), "model_output": f32(model_out)}
        if cls is DDPMScheduler:
            state = step_gen.get_state()
            x = s.step(model_out, t, x, generator=step_gen).prev_sample
            x = x.float().double()  # the chain runs on float32 values, as the Rust side
            if int(t) > 0:
                replay = torch.Generator().set_state(state)
                entry["noise"] = f32(torch.randn((b, c, h, w), generator=replay, dtype=torch.float64))
        elif cls is DDIMScheduler:
            noise = torch.randn((b, c, h, w), generator=step_gen).double() if eta > 0 else None
            x = s.step(model_out, t, x, eta=eta, variance_noise=noise).prev_sample.float().double()
            if noise is not None:
                entry["noise"] = f32(noise)
        else:
            x = s.step(model_out, t, x).prev_sample.float().double()
        entry["prev_sample"] = f32(x)
        record["steps_data"].append(entry)
    assert torch.isfinite(x).all(), name
    return record


def chains():
    P = {"beta_schedule": "linear"}
    cases = [
        # DDPM: the full chain and subsequences, every variance type and prediction type
        chain("ddpm_full_fixed_small", DDPMScheduler, {**P}, 1000, shape=(1, 1, 2, 2)),
        chain("ddpm_50_fixed_small_clip", DDPMScheduler, {**P, "clip_sample": True}, 50),
        chain("ddpm_25_fixed_large_noclip", DDPMScheduler, {**P, "variance_type": "fixed_large", "clip_sample": False}, 25),
        chain("ddpm_20_fixed_small_log", DDPMScheduler, {**P, "variance_type": "fixed_small_log"}, 20),
        chain("ddpm_20_learned_range", DDPMScheduler, {**P, "variance_type": "learned_range"}, 20, out_channels=2),
        chain("ddpm_20_learned", DDPMScheduler, {**P, "variance_type": "learned"}, 20, out_channels=2),
        # Improved DDPM's setting: the cosine schedule, learned_range, K < T steps with the
        # respaced betas at both ends of the interpolation.
        chain("ddpm_25_learned_range_cosine", DDPMScheduler,
              {**P, "variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2"}, 25, out_channels=2),
        chain("ddpm_100_learned_range_cosine", DDPMScheduler,
              {**P, "variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2"}, 100, out_channels=2),
        chain("ddpm_30_v_prediction_trailing", DDPMScheduler,
              {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
               "prediction_type": "v_prediction", "timestep_spacing": "trailing", "clip_sample": False}, 30),
        chain("ddpm_10_sample_prediction_threshold", DDPMScheduler,
              {**P, "prediction_type": "sample", "thresholding": True, "sample_max_value": 1.5,
               "dynamic_thresholding_ratio": 0.9}, 10, shape=(3, 2, 4, 4)),
        chain("ddpm_40_cosine_linspace_offset", DDPMScheduler,
              {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace", "clip_sample_range": 1.5}, 40),
        chain("ddpm_16_leading_offset", DDPMScheduler, {**P, "steps_offset": 1}, 16),
        # DDIM
        chain("ddim_50_eta0", DDIMScheduler, {**P}, 50),
        chain("ddim_50_eta0_noclip_leading_offset", DDIMScheduler,
              {**P, "clip_sample": False, "steps_offset": 1, "set_alpha_to_one": False}, 50),
        chain("ddim_20_eta05", DDIMScheduler, {**P}, 20, eta=0.5),
        chain("ddim_25_v_trailing_zero_snr", DDIMScheduler,
              {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
               "prediction_type": "v_prediction", "timestep_spacing": "trailing",
               "rescale_betas_zero_snr": True, "clip_sample": False}, 25),
        chain("ddim_10_sample_threshold_linspace", DDIMScheduler,
              {**P, "prediction_type": "sample", "thresholding": True, "timestep_spacing": "linspace"}, 10,
              shape=(2, 3, 4, 4)),
        chain("ddim_100_scaled_linear", DDIMScheduler, {"beta_schedule": "scaled_linear", "clip_sample": False}, 100),
        chain("ddpm_50_sigmoid", DDPMScheduler, {"beta_schedule": "sigmoid", "clip_sample": False}, 50),
        # DPM-Solver++ 2M
        chain("dpm_20", DPMSolverMultistepScheduler, {**P}, 20),
        chain("dpm_10_lower_order_final", DPMSolverMultistepScheduler, {**P}, 10),
        chain("dpm_25_v_leading_offset", DPMSolverMultistepScheduler,
              {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
               "prediction_type": "v_prediction", "timestep_spacing": "leading", "steps_offset": 1}, 25),
        chain("dpm_15_sample_threshold_trailing", DPMSolverMultistepScheduler,
              {**P, "prediction_type": "sample", "thresholding": True, "timestep_spacing": "trailing"}, 15,
              shape=(2, 3, 4, 4)),
        chain("dpm_20_order1_cosine", DPMSolverMultistepScheduler,
              {"beta_schedule": "squaredcos_cap_v2", "solver_order": 1}, 20),
        chain("dpm_20_learned_range_channels", DPMSolverMultistepScheduler,
              {**P, "variance_type": "learned_range"}, 20, shape=(2, 3, 3, 3), out_channels=6),
    ]
    dump("chains.json", {"cases": cases})


if __name__ == "__main__":
    torch.manual_seed(0)
    schedules()
    spacings()
    chains()
