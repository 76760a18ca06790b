"""Reference values of the variational bound's terms (Ho et al. 2020, eq. 5), per image in
bits per dimension, for tests/fixtures/vlb/terms.json.

The reference is a float64 NumPy transcription of improved-diffusion's
`gaussian_diffusion.py` and `losses.py` (Nichol & Dhariwal 2021, github.com/openai/
improved-diffusion): `q_posterior_mean_variance`, `p_mean_variance` (FIXED_SMALL,
FIXED_LARGE, LEARNED_RANGE; `_predict_xstart_from_eps`), `_vb_terms_bpd`, `normal_kl` and
`discretized_gaussian_log_likelihood`, plus diffusers' x_0 from a v-prediction (improved-
diffusion has none). No package on PyPI ships these functions without a training stack
around them (denoising-diffusion-pytorch imports accelerate, ema-pytorch and pytorch-fid at
import), so the transcription is written here, line for line with its source, and is not
the project's Rust. Fixed x_0 (on the 256-level grid, both edge bins included), noise,
model outputs and timesteps make each term comparable exactly.

    $(scripts/fixture-env.sh) python/make_vlb_fixtures.py
"""

import json
import math
import os

import numpy as np

T = 50
B, C, H, W = 4, 1, 4, 4
TS = [0, 1, 25, T - 1]


def cosine_betas(n, max_beta=0.999):
    # improved-diffusion betas_for_alpha_bar with the "cosine" alpha_bar.
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / n) / f(i / n), max_beta) for i in range(n)], dtype=np.float64)


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * np.power(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered_x = x - means
    inv_stdv = np.exp(-log_scales)
    plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
    cdf_plus = approx_standard_normal_cdf(plus_in)
    min_in = inv_stdv * (centered_x - 1.0 / 255.0)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
    log_one_minus_cdf_min = np.log(np.maximum(1.0 - cdf_min, 1e-12))
    cdf_delta = cdf_plus - cdf_min
    return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_one_minus_cdf_min, np.log(np.maximum(cdf_delta, 1e-12))))


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + np.exp(logvar1 - logvar2) + ((mean1 - mean2) ** 2) * np.exp(-logvar2))


class Diffusion:
    def __init__(self, betas):
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    def q_posterior(self, x0, xt, t):
        mean = self.posterior_mean_coef1[t] * x0 + self.posterior_mean_coef2[t] * xt
        return mean, self.posterior_log_variance_clipped[t]

    def pred_xstart(self, prediction, xt, out, t):
        ab = self.alphas_cumprod[t]
        if prediction == "epsilon":
            return self.sqrt_recip_alphas_cumprod[t] * xt - self.sqrt_recipm1_alphas_cumprod[t] * out
        if prediction == "sample":
            return out
        # diffusers' v-prediction: x_0 = sqrt(ab) x_t - sqrt(1 - ab) v
        return math.sqrt(ab) * xt - math.sqrt(1.0 - ab) * out

    def model_log_variance(self, variance_type, v, t):
        if variance_type == "learned_range":
            min_log = self.posterior_log_variance_clipped[t]
            max_log = np.log(self.betas)[t]
            frac = (v + 1) / 2
            return frac * max_log + (1 - frac) * min_log
        if variance_type == "fixed_large":
            return np.log(np.append(self.posterior_variance[1], self.betas[1:]))[t] * np.ones_like(v)
        return self.posterior_log_variance_clipped[t] * np.ones_like(v)

    def vb_terms_bpd(self, variance_type, prediction, x0, xt, out, v, t):
        true_mean, true_log_var = self.q_posterior(x0, xt, t)
        pred_x0 = self.pred_xstart(prediction, xt, out, t)
        model_mean, _ = self.q_posterior(pred_x0, xt, t)
        model_log_var = self.model_log_variance(variance_type, v, t)
        kl = normal_kl(true_mean, true_log_var, model_mean, model_log_var).mean() / np.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var).mean() / np.log(2.0)
        return nll if t == 0 else kl


def main():
    rng = np.random.default_rng(0)
    betas = cosine_betas(T)
    d = Diffusion(betas)
    x0 = rng.integers(0, 256, size=(B, C, H, W)) / 127.5 - 1.0
    x0[0, 0, 0, 0], x0[0, 0, 0, 1] = -1.0, 1.0
    noise = rng.standard_normal((B, C, H, W))
    xt = np.stack([math.sqrt(d.alphas_cumprod[t]) * x0[i] + math.sqrt(1 - d.alphas_cumprod[t]) * noise[i] for i, t in enumerate(TS)])
    cases = []
    for variance_type in ["fixed_small", "fixed_large", "learned_range"]:
        for prediction in ["epsilon", "v_prediction", "sample"]:
            # A model output near the truth (so the terms are of realistic size) plus noise.
            out = rng.standard_normal((B, C, H, W)) * 0.1
            if prediction == "epsilon":
                out += noise
            elif prediction == "sample":
                out += x0
            else:
                out += np.stack([math.sqrt(d.alphas_cumprod[t]) * noise[i] - math.sqrt(1 - d.alphas_cumprod[t]) * x0[i] for i, t in enumerate(TS)])
            v = rng.uniform(-1, 1, size=(B, C, H, W))
            terms = [float(d.vb_terms_bpd(variance_type, prediction, x0[i], xt[i], out[i], v[i], t)) for i, t in enumerate(TS)]
            cases.append({
                "variance_type": variance_type,
                "prediction_type": prediction,
                "out": out.ravel().tolist(),
                "v": v.ravel().tolist(),
                "terms_bits_per_dim": terms,
            })
    # L_hybrid (improved-diffusion's training_losses with learn_sigma, loss_type
    # RESCALED_MSE: mse + vb * T / 1000, the mean detached inside vb) and its gradient with
    # respect to the model output, by torch autograd in float64 on the same transcription.
    import torch

    tt = lambda a: torch.tensor(a, dtype=torch.float64)
    eps_out = tt(noise + 0.1 * rng.standard_normal((B, C, H, W))).requires_grad_(True)
    v_out = tt(rng.uniform(-1, 1, size=(B, C, H, W))).requires_grad_(True)
    betas_t = tt(betas)
    ab = torch.cumprod(1 - betas_t, 0)
    ab_prev = torch.cat([tt([1.0]), ab[:-1]])
    post_var = betas_t * (1 - ab_prev) / (1 - ab)
    post_lv = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
    c1 = betas_t * torch.sqrt(ab_prev) / (1 - ab)
    c2 = (1 - ab_prev) * torch.sqrt(1 - betas_t) / (1 - ab)
    x0_t, xt_t, noise_t = tt(x0), tt(xt), tt(noise)

    def t_cdf(x):
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))

    losses = []
    for i, t in enumerate(TS):
        mse = ((noise_t[i] - eps_out[i]) ** 2).mean()
        eps_d = eps_out[i].detach()
        pred_x0 = torch.sqrt(1 / ab[t]) * xt_t[i] - torch.sqrt(1 / ab[t] - 1) * eps_d
        model_mean = c1[t] * pred_x0 + c2[t] * xt_t[i]
        true_mean = c1[t] * x0_t[i] + c2[t] * xt_t[i]
        frac = (v_out[i] + 1) / 2
        model_lv = frac * torch.log(betas_t[t]) + (1 - frac) * post_lv[t]
        if t == 0:
            centered = x0_t[i] - model_mean
            inv = torch.exp(-0.5 * model_lv)
            cp, cm = t_cdf(inv * (centered + 1 / 255)), t_cdf(inv * (centered - 1 / 255))
            lp = torch.where(x0_t[i] < -0.999, torch.log(cp.clamp(min=1e-12)),
                             torch.where(x0_t[i] > 0.999, torch.log((1 - cm).clamp(min=1e-12)), torch.log((cp - cm).clamp(min=1e-12))))
            vb = -lp.mean() / math.log(2.0)
        else:
            kl = 0.5 * (-1.0 + model_lv - post_lv[t] + torch.exp(post_lv[t] - model_lv) + (true_mean - model_mean) ** 2 * torch.exp(-model_lv))
            vb = kl.mean() / math.log(2.0)
        losses.append(mse + vb * T / 1000.0)
    total = torch.stack(losses).mean()
    total.backward()
    hybrid = {
        "eps_out": eps_out.detach().numpy().ravel().tolist(),
        "v_out": v_out.detach().numpy().ravel().tolist(),
        "noise": noise.ravel().tolist(),
        "per_image_loss": [float(l) for l in losses],
        "grad_eps": eps_out.grad.numpy().ravel().tolist(),
        "grad_v": v_out.grad.numpy().ravel().tolist(),
    }
    fixture = {
        "source": "python/make_vlb_fixtures.py: float64 transcription of improved-diffusion's _vb_terms_bpd",
        "hybrid_learned_range_epsilon": hybrid,
        "betas": betas.tolist(),
        "shape": [B, C, H, W],
        "t": TS,
        "x0": x0.ravel().tolist(),
        "xt": xt.ravel().tolist(),
        "cases": cases,
    }
    out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "vlb")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "terms.json"), "w") as f:
        json.dump(fixture, f, indent=1)
    print("wrote tests/fixtures/vlb/terms.json:", len(cases), "cases")


if __name__ == "__main__":
    main()
