"""Small .onnx models for the runtime's tests, written with the `onnx` package only.

    $(scripts/setup-env.sh)/bin/python python/make_onnx_fixtures.py

gaussian.onnx: the exact noise predictor for data x0 ~ N(MEAN, STD^2), per element
    eps(x_t, t) = sqrt(1 - ab_t) (x_t - sqrt(ab_t) MEAN) / (ab_t STD^2 + 1 - ab_t),
    as two per-timestep tables gathered by `timestep` (the paper's linear schedule,
    computed here in float64). Metadata: unet_config, scheduler_config (clip_sample off).
gaussian_classes.onnx: the same with a `class_labels` input; class k has mean MEANS[k].
gaussian_float_t.onnx: `timestep` declared float32 and scalar; no metadata at all.
"""

import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"
OUT.mkdir(parents=True, exist_ok=True)
T, MEAN, STD, SIZE = 1000, 0.5, 0.2, 8
MEANS = [-0.5, 0.0, 0.5]
betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
ab = np.cumprod(1 - betas)
SCHED = {"_class_name": "DDPMScheduler", "num_train_timesteps": T, "beta_start": 1e-4, "beta_end": 0.02,
         "beta_schedule": "linear", "variance_type": "fixed_small", "clip_sample": False,
         "prediction_type": "epsilon"}


def tables(mean):
    var = ab * STD**2 + 1 - ab
    scale = np.sqrt(1 - ab) / var
    shift = scale * np.sqrt(ab) * mean
    return scale.astype(np.float32), shift.astype(np.float32)


def save(model, name, metadata):
    for k, v in metadata.items():
        p = model.metadata_props.add()
        p.key, p.value = k, json.dumps(v)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, OUT / name)
    print("wrote", OUT / name)


def gaussian(name, classes=False, float_t=False, metadata=True):
    nodes, inits = [], []
    t_in = helper.make_tensor_value_info("timestep", TensorProto.FLOAT if float_t else TensorProto.INT64,
                                         [] if float_t else ["batch"])
    x_in = helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])
    inputs = [x_in, t_in]
    t_idx = "timestep"
    if float_t:
        nodes.append(helper.make_node("Cast", ["timestep"], ["t_int"], to=TensorProto.INT64))
        t_idx = "t_int"
    inits.append(numpy_helper.from_array(np.array([-1, 1, 1, 1], dtype=np.int64), "bshape"))
    if classes:
        scale, _ = tables(0.0)
        shifts = np.stack([tables(m)[1] for m in MEANS])  # [K, T]
        inits += [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shifts.reshape(-1), "shift")]
        inputs.append(helper.make_tensor_value_info("class_labels", TensorProto.INT64, ["batch"]))
        inits.append(numpy_helper.from_array(np.array(T, dtype=np.int64), "T"))
        nodes += [helper.make_node("Mul", ["class_labels", "T"], ["row"]),
                  helper.make_node("Add", ["row", t_idx], ["flat"]),
                  helper.make_node("Gather", ["shift", "flat"], ["sh"], axis=0)]
    else:
        scale, shift = tables(MEAN)
        inits += [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift")]
        nodes.append(helper.make_node("Gather", ["shift", t_idx], ["sh"], axis=0))
    nodes += [helper.make_node("Gather", ["scale", t_idx], ["sc"], axis=0),
              helper.make_node("Reshape", ["sc", "bshape"], ["sc4"]),
              helper.make_node("Reshape", ["sh", "bshape"], ["sh4"]),
              helper.make_node("Mul", ["sample", "sc4"], ["xs"]),
              helper.make_node("Sub", ["xs", "sh4"], ["noise_pred"])]
    out = helper.make_tensor_value_info("noise_pred", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])
    graph = helper.make_graph(nodes, "gaussian", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ddpm-rs fixtures")
    model.ir_version = 8
    unet = {"sample_size": SIZE, "in_channels": 1, "out_channels": 1}
    if classes:
        unet["num_class_embeds"] = len(MEANS)
    save(model, name, {"unet_config": unet, "scheduler_config": SCHED} if metadata else {})


if __name__ == "__main__":
    gaussian("gaussian.onnx")
    gaussian("gaussian_classes.onnx", classes=True)
    gaussian("gaussian_float_t.onnx", float_t=True, metadata=False)
