"""Inference speed of the runtime against PyTorch on this machine, in one interleaved run.

    make bench                       (builds, runs criterion, then this script)
    $(scripts/fixture-env.sh) scripts/bench_compare.py [--rounds 3] [--iters 10] [--no-compile]
                                     [--threads 2] [--write BENCHMARKS.md]

Same network, same weights, same thread count on every side:
  - digits: the shipped default model (models/pretrained/digits/unet, float16 on disk, loaded
    as float32 everywhere); ours runs the float32 export of that folder by our exporter.
  - cifar10: the DDPM paper's CIFAR-10 network with random weights (seed 0), written as a
    diffusers unet/ folder by bench-eval; ours runs its export by our exporter.
Engines: the runtime (fp32 on the default ONNX Runtime build; bf16 on the OpenVINO build),
the same U-Net in libtorch eager through tch (the trainer's backend), PyTorch eager fp32,
PyTorch eager bf16 (weights cast once; channels_last for CIFAR-10), torch.compile (inductor,
freezing) fp32 and bf16, compile time reported apart. Each figure is the minimum over
`--iters` evaluations, then the minimum over rounds; the rounds interleave every engine.
FLOPs are counted by torch.utils.flop_counter on the PyTorch model (2 x MACs of
convolutions, linear layers and attention). The fp32 and bf16 peaks are 4096^3 matmuls in
PyTorch (MKL / oneDNN) with the same thread count, measured in the same run.
"""

import argparse
import copy
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("DDPM_RS_CACHE") or pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "ddpm-rs")
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or CACHE / "target") / "release"
BEGIN, END = "<!-- bench_compare:begin -->", "<!-- bench_compare:end -->"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def machine():
    info = pathlib.Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    isa = [f for f in ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile"] if f in flags]
    import onnxruntime
    return {"cpu": model, "cores": os.cpu_count(), "isa": isa, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}


def cpu_has_bf16():
    """As the runtime decides (DDPM_RS_CPU_MASK included): AVX512-BF16 or AMX-BF16. Without it the
    runtime refuses --precision bf16, so the bf16 rows of ours are left out and said so."""
    flags = set(re.search(r"flags\s*:\s*(.*)", pathlib.Path("/proc/cpuinfo").read_text()).group(1).split())
    mask = set(m.strip() for m in os.environ.get("DDPM_RS_CPU_MASK", "").split(","))
    hidden = lambda f: f in mask or "all" in mask or ("avx512" in mask and f.startswith("avx512")) or ("amx" in mask and f.startswith("amx"))
    return any(f in flags and not hidden(f) for f in ["avx512_bf16", "amx_bf16"])


HAS_BF16 = cpu_has_bf16()


def run_json(cmd):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def det_input(batch, c, h, w):
    """bench-eval's deterministic input, in the same float32 arithmetic."""
    i = np.arange(batch * c * h * w, dtype=np.int64)
    k = ((i * 7919) % 2003).astype(np.float32)
    return (k / np.float32(1001.5) - np.float32(1.0)).astype(np.float32).reshape(batch, c, h, w)


NUMPY_PEAK = """
import time, numpy as np
a = np.random.rand(4096, 4096).astype(np.float32); b = np.random.rand(4096, 4096).astype(np.float32)
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(3))
print(2 * 4096 ** 3 / best / 1e9)
"""


def peaks(threads):
    """4096^3 matmul in PyTorch (MKL; oneDNN for bf16) and, for fp32, numpy (OpenBLAS), which
    is faster than MKL on AMD CPUs; the higher figure is the peak."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", NUMPY_PEAK], capture_output=True, text=True, env=env, check=True)
    res = {"fp32 numpy": float(out.stdout.strip())}
    # Without bf16 arithmetic PyTorch emulates a bf16 matmul (minutes, and no peak of anything).
    res["bf16"] = float("nan")
    for name, dt in [("fp32", torch.float32), ("bf16", torch.bfloat16)][: 2 if HAS_BF16 else 1]:
        a = torch.randn(4096, 4096).to(dt)
        b = torch.randn(4096, 4096).to(dt)
        torch.mm(a, b)
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t)
        res[name] = 2 * 4096 ** 3 / best / 1e9
    res["fp32 torch"] = res["fp32"]
    res["fp32"] = max(res["fp32"], res["fp32 numpy"])
    return res


def flops(model, x, t, y):
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x, t, class_labels=y)
    return fc.get_total_flops()


class _Wrap(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, t, y):
        return self.m(x, t, class_labels=y).sample


def torch_onnx_export(model, path):
    """The same network through torch.onnx (TorchScript exporter, opset 17, dynamic batch):
    the usual way to get a diffusers U-Net into ONNX Runtime, run as a peer."""
    cfg = model.config
    x = torch.zeros(1, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    t = torch.full((1,), 500, dtype=torch.int64)
    y = torch.zeros(1, dtype=torch.int64) if cfg.num_class_embeds else None
    names = ["sample", "timestep"] + (["class_labels"] if y is not None else [])
    axes = {n: {0: "batch"} for n in names + ["noise_pred"]}
    with torch.no_grad():
        torch.onnx.export(_Wrap(model), (x, t, y), str(path), input_names=names, output_names=["noise_pred"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    return path


def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def node_count(path):
    import onnx
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def time_torch(fn, args, iters):
    with torch.no_grad():
        for _ in range(2):
            fn(*args)
        best = 1e9
        for _ in range(iters):
            t = time.perf_counter()
            fn(*args)
            best = min(best, time.perf_counter() - t)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compilation)")
    ap.add_argument("--nets", default="digits,cifar10")
    ap.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import UNet2DModel

    work = CACHE / "bench"
    work.mkdir(parents=True, exist_ok=True)
    exporter = TARGET / "exporter"
    bench_eval, bench_tch, runtime = TARGET / "bench-eval", TARGET / "bench-tch", TARGET / "runtime"
    for b in [exporter, bench_eval, bench_tch, runtime]:
        if not b.exists():
            sys.exit(f"{b} is missing: run `make bench` (it builds them)")

    nets = {}
    for name in args.nets.split(","):
        if name == "digits":
            unet = ROOT / "models/pretrained/digits/unet"
        else:
            unet = work / "cifar10-random-seed0" / "unet"
            if not (unet / "config.json").exists():
                run_json_ok = subprocess.run([str(bench_eval), "--write-cifar10-unet", str(unet)], capture_output=True, text=True)
                if run_json_ok.returncode != 0:
                    sys.exit(run_json_ok.stderr)
        onnx = work / f"{name}-fp32.onnx"
        t0 = time.time()
        subprocess.run([str(exporter), "onnx", "--ckpt", str(unet), "--out", str(onnx)], check=True, capture_output=True)
        log(f"{name}: exported {onnx} in {time.time() - t0:.1f} s (verified against libtorch)")
        model = UNet2DModel.from_pretrained(str(unet), torch_dtype=torch.float32).eval()
        nets[name] = {"unet": unet, "onnx": onnx, "model": model, "config": model.config}
        # A copy: the TorchScript exporter leaves the module it traced behaving differently.
        nets[name]["torch_onnx"] = torch_onnx_export(copy.deepcopy(model), work / f"{name}-torch.onnx")

    info = machine()
    log("machine:", info)
    results = {}  # (net, batch, engine) -> min ms
    compile_s = {}
    extra = {}

    def record(key, ms):
        results[key] = min(results.get(key, 1e9), ms)

    # Inputs, FLOPs, exactness of ours vs PyTorch, and compiled models.
    compiled = {}
    for name, n in nets.items():
        cfg = n["config"]
        c, s = cfg.in_channels, cfg.sample_size
        for batch in [1, 16]:
            x = torch.from_numpy(det_input(batch, c, s, s))
            t = torch.full((batch,), 500, dtype=torch.int64)
            y = torch.arange(batch) % cfg.num_class_embeds if cfg.num_class_embeds else None
            n[batch] = (x, t, y)
        x, t, y = n[1]
        n["gflop"] = flops(n["model"], x, t, y) / 1e9
        with torch.no_grad():
            want = n["model"](x, t, class_labels=y).sample.numpy()
        dump = work / f"{name}-ours-b1.npy"
        run_json([bench_eval, "--model", n["onnx"], "--batch", 1, "--iters", 1, "--threads", args.threads, "--dump", dump])
        got = np.load(dump)
        extra[(name, "exact")] = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)))
        log(f"{name}: {n['gflop']:.3f} GFLOP per sample; ours fp32 vs PyTorch max relative error {extra[(name, 'exact')]:.2e}")
        if not args.no_compile:
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True
            # bf16 peers only where the CPU has bf16 arithmetic (elsewhere PyTorch emulates it,
            # 10-15x slower than fp32: no peer of anything the runtime runs).
            for prec in ["fp32", "bf16"] if HAS_BF16 else ["fp32"]:
                for batch in [1, 16]:
                    m = copy.deepcopy(n["model"])
                    if prec == "bf16":
                        m = m.to(torch.bfloat16)
                    if name == "cifar10" and prec == "bf16":
                        m = m.to(memory_format=torch.channels_last)
                    fn = torch.compile(lambda a, b, cl, m=m: m(a, b, class_labels=cl).sample, dynamic=False)
                    xx, tt, yy = n[batch]
                    if prec == "bf16":
                        xx = xx.to(torch.bfloat16)
                    t0 = time.time()
                    with torch.no_grad():
                        fn(xx, tt, yy)
                    compile_s[(name, batch, prec)] = time.time() - t0
                    compiled[(name, batch, prec)] = (fn, (xx, tt, yy))
                    log(f"{name} b{batch} torch.compile {prec}: {compile_s[(name, batch, prec)]:.1f} s to compile")

    ort_sessions = {name: ort_session(n["torch_onnx"], args.threads) for name, n in nets.items()}
    for name, n in nets.items():
        extra[(name, "nodes")] = (node_count(n["onnx"]), node_count(n["torch_onnx"]))
    bf16_models = {}
    for name, n in nets.items():
        m = copy.deepcopy(n["model"]).to(torch.bfloat16)
        if name == "cifar10":
            m = m.to(memory_format=torch.channels_last)
        bf16_models[name] = m

    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}")
        for name, n in nets.items():
            for batch in [1, 16]:
                iters = max(3, args.iters if not (name == "cifar10" and batch == 16) else args.iters // 2)
                x, t, y = n[batch]
                chain = ["--chain", "ddim:50"] if r == 0 and not (name == "cifar10" and batch == 16) else []
                ours = run_json([bench_eval, "--model", n["onnx"], "--batch", batch, "--iters", iters, "--threads", args.threads] + chain)
                record((name, batch, "ours fp32"), ours["min_ms"])
                if "chain_s" in ours:
                    extra[(name, batch, "chain")] = (ours["chain_s"], ours["chain_outside_model_fraction"])
                if HAS_BF16:
                    ours = run_json([bench_eval, "--model", n["onnx"], "--batch", batch, "--iters", iters, "--threads", args.threads, "--precision", "bf16"]
                                    + (["--error-vs-fp32"] if r == 0 else []))
                    record((name, batch, "ours bf16"), ours["min_ms"])
                    if "rel_l2_error_vs_fp32_by_t" in ours:
                        extra[(name, batch, "bf16 error")] = ours["rel_l2_error_vs_fp32_by_t"]
                tch_r = run_json([bench_tch, "--ckpt", n["unet"], "--batch", batch, "--iters", iters, "--threads", args.threads])
                record((name, batch, "tch eager fp32"), tch_r["min_ms"])
                feed = {"sample": x.numpy(), "timestep": t.numpy()}
                if y is not None:
                    feed["class_labels"] = y.numpy()
                record((name, batch, "ORT fp32 (torch.onnx graph)"), time_torch(lambda f: ort_sessions[name].run(None, f), (feed,), iters))
                record((name, batch, "PyTorch eager fp32"), time_torch(lambda a, b, c: n["model"](a, b, class_labels=c), (x, t, y), iters))
                if HAS_BF16:
                    xb = x.to(torch.bfloat16)
                    record((name, batch, "PyTorch eager bf16"), time_torch(lambda a, b, c: bf16_models[name](a, b, class_labels=c), (xb, t, y), iters))
                for prec in ["fp32", "bf16"]:
                    if (name, batch, prec) in compiled:
                        fn, a = compiled[(name, batch, prec)]
                        record((name, batch, f"torch.compile {prec}"), time_torch(fn, a, iters))
                log(name, batch, {k[2]: round(v, 2) for k, v in results.items() if k[:2] == (name, batch)})

    # Start-up: process start to the first sample (one DDIM step), with an empty model cache
    # and again with the cache the first run left.
    startup = {}
    for name, n in nets.items():
        for prec in ["fp32", "bf16"] if HAS_BF16 else ["fp32"]:
            with tempfile.TemporaryDirectory() as cache:
                times = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    subprocess.run([str(runtime), "sample", "--model", str(n["onnx"]), "--n", "1", "--batch-size", "1", "--steps", "1",
                                    "--precision", prec, "--threads", str(args.threads), "--model-cache", cache,
                                    "--out", str(pathlib.Path(cache) / "x.npy")], check=True, capture_output=True)
                    times.append(time.perf_counter() - t0)
                startup[(name, prec)] = times
    peak = peaks(args.threads)
    log("peaks GFLOP/s:", peak)
    write(args, info, nets, results, compile_s, extra, startup, peak)


def write(args, info, nets, results, compile_s, extra, startup, peak):
    engines = ["ours fp32", "ours bf16", "tch eager fp32", "ORT fp32 (torch.onnx graph)", "PyTorch eager fp32", "PyTorch eager bf16", "torch.compile fp32", "torch.compile bf16"]
    engines = [e for e in engines if any(k[2] == e for k in results)]
    cmd = "make bench" if not args.no_compile else "scripts/bench_compare.py --no-compile"
    lines = [BEGIN, "",
             f"Machine: {info['cpu']}, {info['cores']} cores visible, ISA {' '.join(info['isa'])}; torch {info['torch']}, "
             f"onnxruntime {info['onnxruntime']} (ours fp32), onnxruntime-openvino 1.24.1 (ours bf16); {args.threads} threads on every side.",
             f"Command: `{cmd}` (scripts/bench_compare.py, {args.rounds} interleaved rounds, minimum of {args.iters} evaluations each; "
             f"run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
             f"Peaks measured in the same run (4096^3 matmul, {args.threads} threads): fp32 {peak['fp32']:.0f} GFLOP/s (numpy/OpenBLAS {peak['fp32 numpy']:.0f}, "
             f"PyTorch/MKL {peak['fp32 torch']:.0f}), " + (f"bf16 {peak['bf16']:.0f} GFLOP/s (PyTorch/oneDNN)." if HAS_BF16 else "bf16 not measured (this CPU has no bf16 arithmetic)."),
             "", "Milliseconds per model evaluation (lower is better):", "",
             "| network (GFLOP/sample) | batch | " + " | ".join(engines) + " |",
             "|---|---|" + "---|" * len(engines)]
    for name, n in nets.items():
        for batch in [1, 16]:
            row = [f"{name} ({n['gflop']:.3f})", str(batch)]
            for e in engines:
                v = results.get((name, batch, e))
                row.append(f"{v:.2f}" if v is not None else "-")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Speed-up of ours over each peer (peer ms / ours ms) and achieved GFLOP/s:", "",
              "| network | batch | ours fp32 vs PyTorch eager fp32 | ours fp32 vs ORT on torch.onnx's graph | ours fp32 vs tch eager | ours bf16 vs best peer (engine) | ours fp32 GFLOP/s (% fp32 peak) | ours bf16 GFLOP/s (% bf16 peak) |",
              "|---|---|---|---|---|---|---|---|"]
    for name, n in nets.items():
        for batch in [1, 16]:
            g = n["gflop"] * batch
            o32, o16 = results.get((name, batch, "ours fp32")), results.get((name, batch, "ours bf16"))
            peers = {e: results[(name, batch, e)] for e in engines if not e.startswith("ours") and (name, batch, e) in results}
            best = min(peers, key=peers.get)
            lines.append(f"| {name} | {batch} | {results[(name, batch, 'PyTorch eager fp32')] / o32:.2f}x | "
                         f"{results[(name, batch, 'ORT fp32 (torch.onnx graph)')] / o32:.2f}x | {results[(name, batch, 'tch eager fp32')] / o32:.2f}x | "
                         + (f"{peers[best] / o16:.2f}x ({best})" if o16 else "n/a (no bf16 arithmetic on this CPU)") +
                         f" | {g / o32 * 1e3:.0f} ({g / o32 * 1e3 / peak['fp32'] * 100:.0f}%) | "
                         + (f"{g / o16 * 1e3:.0f} ({g / o16 * 1e3 / peak['bf16'] * 100:.0f}%) |" if o16 else "n/a |"))
    lines += ["", "Graph size: ours " + ", ".join(f"{name} {extra[(name, 'nodes')][0]} nodes" for name in nets) +
              "; torch.onnx (opset 17) " + ", ".join(f"{name} {extra[(name, 'nodes')][1]} nodes" for name in nets) + "."]
    lines += ["", "Exactness of ours fp32 (max |ours - PyTorch| / max(1, |PyTorch|), batch 1, t = 500): " +
              ", ".join(f"{name} {extra[(name, 'exact')]:.1e}" for name in nets) + ".", "",
              "bf16 error per model evaluation (relative L2 distance to ours fp32, batch 1 and 16, by timestep):", "",
              "| network | batch | t=999 | t=750 | t=500 | t=250 | t=50 | t=1 |", "|---|---|---|---|---|---|---|---|"]
    for name in nets:
        for batch in [1, 16]:
            e = extra.get((name, batch, "bf16 error"))
            if e:
                lines.append(f"| {name} | {batch} | " + " | ".join(f"{e[k]:.1e}" for k in ["999", "750", "500", "250", "50", "1"]) + " |")
    chains = [(k, v) for k, v in extra.items() if len(k) == 3 and k[2] == "chain"]
    if chains:
        lines += ["", "Whole DDIM-50 chain of ours fp32 (`bench-eval --chain ddim:50`) and the share of its time spent outside the model call "
                  "(schedule math, sampler update, noise, copies): " +
                  ", ".join(f"{k[0]} b{k[1]} {v[0]:.2f} s, {v[1] * 100:.2f}%" for k, v in chains) + "."]
    if compile_s:
        lines += ["", "torch.compile time (first call, inductor with freezing): " +
                  ", ".join(f"{k[0]} b{k[1]} {k[2]} {v:.0f} s" for k, v in compile_s.items()) + "."]
    lines += ["", "Start-up, process start to the first sample (`runtime sample --n 1 --steps 1`), first run with an empty "
              "model cache / second run with the cache the first left:", "",
              "| network | fp32 first | fp32 second | bf16 first | bf16 second |", "|---|---|---|---|---|"]
    for name in nets:
        f, b = startup[(name, "fp32")], startup.get((name, "bf16"))
        bf = f"{b[0]:.2f} s | {b[1]:.2f} s" if b else "n/a | n/a"
        lines.append(f"| {name} | {f[0]:.2f} s | {f[1]:.2f} s | {bf} |")
    lines += ["", END]
    table = "\n".join(lines)
    print(table)
    path = pathlib.Path(args.write)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + table + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Inference against PyTorch (scripts/bench_compare.py)\n\n" + table + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
