"""Is int8 worth shipping? Static QDQ quantization of the digits model by ONNX Runtime's
quantizer, calibrated on real training digits noised to random timesteps, timed against the
float32 model in the same process (ONNX Runtime 1.31, CPU provider, 2 threads), with its
error per model evaluation. The answer goes into BENCHMARKS.md.

    $(scripts/setup-env.sh)/bin/python scripts/int8_experiment.py [MODEL.onnx]
    (default model: $DDPM_RS_CACHE/bench/digits-fp32.onnx, written by scripts/bench_compare.py)
"""

import gzip
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("DDPM_RS_CACHE") or pathlib.Path.home() / ".cache" / "ddpm-rs")


def digits(n, seed):
    with gzip.open(ROOT / "data/mnist/train-images-idx3-ubyte.gz") as f:
        img = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(ROOT / "data/mnist/train-labels-idx1-ubyte.gz") as f:
        lab = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(img), n, replace=False)
    x0 = img[idx].astype(np.float32) / 127.5 - 1.0
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1 - betas)
    t = rng.integers(0, 1000, n)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    xt = (np.sqrt(ab[t])[:, None, None, None] * x0 + np.sqrt(1 - ab[t])[:, None, None, None] * eps).astype(np.float32)
    return xt, t.astype(np.int64), lab[idx]


class Reader(CalibrationDataReader):
    def __init__(self, n):
        xt, t, y = digits(n, 0)
        self.items = [{"sample": xt[i:i + 1], "timestep": t[i:i + 1], "class_labels": y[i:i + 1]} for i in range(n)]

    def get_next(self):
        return self.items.pop() if self.items else None


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main():
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE / "bench" / "digits-fp32.onnx"
    with tempfile.TemporaryDirectory() as d:
        q = pathlib.Path(d) / "int8.onnx"
        t0 = time.time()
        quantize_static(str(src), str(q), Reader(256), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        print(f"quantized with 256 calibration samples in {time.time() - t0:.0f} s")
        f32, i8 = session(src), session(q)
        xt, _, y = digits(16, 1)
        for t in [999, 500, 50, 1]:
            feed = {"sample": xt, "timestep": np.full(16, t, np.int64), "class_labels": y}
            a, b = f32.run(None, feed)[0], i8.run(None, feed)[0]
            print(f"t={t}: relative L2 error of int8 {np.linalg.norm(a - b) / np.linalg.norm(a):.3f}")
        for batch in [1, 16]:
            feed = {"sample": xt[:batch], "timestep": np.full(batch, 500, np.int64), "class_labels": y[:batch]}
            res = {}
            for _ in range(3):  # interleaved rounds
                for name, s in [("fp32", f32), ("int8", i8)]:
                    s.run(None, feed)
                    best = min((lambda t0: (s.run(None, feed), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(10))
                    res[name] = min(res.get(name, 1e9), best * 1e3)
            print(f"batch {batch}: fp32 {res['fp32']:.2f} ms, int8 {res['int8']:.2f} ms")


if __name__ == "__main__":
    main()
