"""A/B of ONNX Runtime session options on the digits graph (CPU provider, 2 threads, static batch),
interleaved rounds, minimum of 8 runs:

    $(scripts/setup-env.sh)/bin/python scripts/ort_options_ab.py $DDPM_RS_CACHE/bench/digits-fp32.onnx
"""
import time, numpy as np, onnxruntime as ort, onnx, sys
src = sys.argv[1]
def static(b):
    m = onnx.load(src)
    for io in list(m.graph.input) + list(m.graph.output):
        d = io.type.tensor_type.shape.dim
        if len(d) and d[0].dim_param: d[0].dim_value = b
    p = f"/tmp/s{b}.onnx"; onnx.save(m, p); return p
cfgs = {
 "default": {},
 "no-nchwc": {"session.disable_specified_optimizers": "NchwcTransformer"},
 "no-spin": {"session.intra_op.allow_spinning": "0"},
}
for b in [1, 16]:
    p = static(b)
    sess = {}
    for k, c in cfgs.items():
        so = ort.SessionOptions(); so.intra_op_num_threads = 2
        for kk, vv in c.items(): so.add_session_config_entry(kk, vv)
        sess[k] = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
    x = np.random.randn(b,1,28,28).astype(np.float32)
    feed = {"sample": x, "timestep": np.full(b, 500, np.int64), "class_labels": np.arange(b)%10}
    res = {}
    for r in range(4):
        for k, s in sess.items():
            s.run(None, feed)
            best = min((lambda t0: (s.run(None, feed), time.perf_counter()-t0)[1])(time.perf_counter()) for _ in range(8))
            res[k] = min(res.get(k, 1e9), best*1e3)
    print(b, {k: round(v, 2) for k, v in res.items()})
