"""Triton Python-backend model written by `exporter triton --backend python`.

Serves the model.onnx beside this file through onnxruntime's CPU execution provider, for
Triton builds without the onnxruntime backend (the CPU-only tritonserver of PyPI's
nvidia-pytriton). The requests the dynamic batcher hands over together are run as one
onnxruntime call on their concatenated batch, and the output is split back per request.
As in the ddpm-rs runtime, each batch size gets its own session with the graph's batch
dimension fixed to it (so a request is computed as a local run of that batch is). The
model config's parameter `intra_op_threads` sets onnxruntime's threads (0: its default).

numpy and onnxruntime come from the folders of PYTHONPATH (the backend's stub embeds the
system's libpython, which does not read that variable itself, so they are added here), and
from the site-packages that holds the tritonserver of PyPI's nvidia-pytriton, when the
Python backend runs from there.
"""

import json
import os
import sys


def _extra_paths():
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for p in sys.path:
        parts = os.path.normpath(p).split(os.sep)
        if parts[-4:] == ["pytriton", "tritonserver", "backends", "python"]:
            paths.append(os.sep.join(parts[:-4]))
    return [p for p in dict.fromkeys(paths) if p not in sys.path]


sys.path[:0] = _extra_paths()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.threads = int(params.get("intra_op_threads", "0") or 0)
        self.path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        probe = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in probe.get_inputs()]
        self.outputs = [o.name for o in probe.get_outputs()]
        first = probe.get_inputs()[0].shape
        self.batch_dim = first[0] if first and isinstance(first[0], str) else None
        self.sessions = {}

    def session(self, batch):
        if batch not in self.sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            # Sessions of several batch sizes live side by side: their idle threads must not
            # spin on the cores the running one needs.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self.batch_dim:
                options.add_free_dimension_override_by_name(self.batch_dim, batch)
            self.sessions[batch] = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        return self.sessions[batch]

    def execute(self, requests):
        feeds, sizes, responses = {}, [], [None] * len(requests)
        good = []
        for k, request in enumerate(requests):
            arrays = {}
            for name in self.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is None:
                    responses[k] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"input {name} is missing"))
                    break
                arrays[name] = tensor.as_numpy()
            else:
                batch = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
                if len(batch) != 1:
                    message = f"inputs of different batch sizes: {sorted(batch)}"
                    responses[k] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
                    continue
                good.append(k)
                sizes.append(batch.pop())
                for name, a in arrays.items():
                    feeds.setdefault(name, []).append(a)
        if good:
            try:
                outputs = self.session(sum(sizes)).run(self.outputs, {n: np.concatenate(v) for n, v in feeds.items()})
            except Exception as e:  # onnxruntime's own message, per request
                for k in good:
                    responses[k] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime: {e}"))
                return responses
            offsets = np.cumsum([0] + sizes)
            for j, k in enumerate(good):
                a, b = offsets[j], offsets[j + 1]
                tensors = [pb_utils.Tensor(n, o[a:b]) for n, o in zip(self.outputs, outputs)]
                responses[k] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
