"""Training throughput: `trainer fit` against PyTorch eager (diffusers UNet2DModel, AdamW,
EMA) on the same network, batch size and thread count, interleaved rounds in one run.

    make build && $(scripts/fixture-env.sh) scripts/bench_train.py [--rounds 3] [--steps 12]

Both sides do the same work per step: forward, L_simple, backward, AdamW, EMA update.
Ours is timed by the trainer itself from its second step (checkpoint writes excluded by
a --save-every past the end); PyTorch after one warm-up step. Prints a Markdown table.
"""

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import tempfile
import time

import numpy as np
import torch
from diffusers import UNet2DModel

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cifar_data(d):
    rng = np.random.default_rng(0)
    recs = np.concatenate([rng.integers(0, 10, (1000, 1)), rng.integers(0, 256, (1000, 3072))], axis=1).astype(np.uint8)
    (d / "data_batch_1.bin").write_bytes(recs.tobytes())
    return d


def ours(preset, data, batch, steps, threads, tmp):
    run = tmp / f"run-{preset}-{time.time_ns()}"
    out = subprocess.run([str(ROOT / "bin" / "trainer"), "fit", "--data", str(data), "--out", str(run), "--preset", preset,
                          "--steps", str(steps), "--batch-size", str(batch), "--save-every", str(steps + 1),
                          "--sample-every", "0", "--threads", str(threads)],
                         capture_output=True, text=True, check=True, env={**os.environ, "RUST_LOG": "warn"})
    ips = float(re.search(r"\(([0-9.]+) images/s", out.stdout).group(1))
    return ips, json.loads((run / "unet" / "config.json").read_text())


def pytorch(config, batch, steps, threads, classes):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    model = UNet2DModel(**cfg).train()
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)
    c, s = cfg["in_channels"], cfg["sample_size"]
    x = torch.randn(batch, c, s, s)
    noise = torch.randn_like(x)
    labels = torch.randint(0, classes, (batch,)) if classes else None

    def step():
        t = torch.randint(0, 1000, (batch,))
        out = model(x, t, class_labels=labels).sample
        loss = torch.nn.functional.mse_loss(out, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, model.parameters()):
                e.mul_(0.999).add_(p.detach(), alpha=0.001)

    step()
    t0 = time.perf_counter()
    for _ in range(steps - 1):
        step()
    return (steps - 1) * batch / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cdir = tmp / "cifar"
        cdir.mkdir()
        presets = [("digits", ROOT / "data" / "mnist"), ("cifar10", cifar_data(cdir))]
        rows = []
        for preset, data in presets:
            best_ours, best_torch = 0.0, 0.0
            for r in range(a.rounds):
                o, config = ours(preset, data, a.batch, a.steps, a.threads, tmp)
                p = pytorch(config, a.batch, a.steps, a.threads, config.get("num_class_embeds"))
                print(f"{preset} round {r}: ours {o:.1f} images/s, PyTorch eager {p:.1f} images/s", flush=True)
                best_ours, best_torch = max(best_ours, o), max(best_torch, p)
            rows.append((preset, best_ours, best_torch))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"\nMachine: {cpu}, {a.threads} threads; torch {torch.__version__}; batch {a.batch}; best of {a.rounds} interleaved rounds of {a.steps} steps\n")
    print("| preset | trainer (images/s) | PyTorch eager (images/s) | ratio |")
    print("|---|---|---|---|")
    for preset, o, p in rows:
        print(f"| {preset} | {o:.1f} | {p:.1f} | {o / p:.2f} |")


if __name__ == "__main__":
    main()
