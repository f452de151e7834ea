"""Shared helpers for the reference-fixture generators in tools/ref/.

Python is used only here, to make committed test fixtures; nothing at run time
depends on it.  Run these scripts with /usr/bin/python3 (numpy, onnx 1.12,
onnxruntime, torch 1.13, the `yolov5` pip package).

ONNX Runtime finding (important): always create sessions with
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
With graph optimisations on, ORT has been seen to compute BatchNormalization in
its training form (5 outputs, opset 12) wrongly.  With ORT_DISABLE_ALL a
5-output BN uses the batch mean and the biased batch variance (training mode),
which is what the ONNX specification says, and no optimiser rewrites (Conv/BN
fusion, NCHWc layout, op fusion) touch the graph, so the reference is plain
per-operator arithmetic.  (With onnxruntime 1.32 under /usr/bin/python3,
ORT_ENABLE_ALL gave training-mode results as well on yolov5s-bn.onnx, but
differing from ORT_DISABLE_ALL by up to ~6e-5 absolute from its layout
rewrites; BASIC and EXTENDED were bit-identical to DISABLE_ALL.  Either way
DISABLE_ALL is the reference.)  ort_session()/run_ort() below always do this.
"""

import os
import sys

import numpy as np

# Project root (tools/ref/common.py -> ../..) and the default shared folder.
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_SHARED = os.path.join(ROOT, "..", "shared")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def _lowbias32(x):
    """lowbias32 hash on a numpy uint32 array (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        x = x ^ (x >> np.uint32(16))
    return x.astype(np.uint32)


def pattern(n, seed=1):
    """Exact numpy twin of the C test-input generator:

        static inline uint32_t lowbias32(uint32_t x) { x ^= x >> 16; x *= 0x7feb352du;
            x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16; return x; }
        void ot_fill_pattern(float *x, int64_t n, uint32_t seed) {
            uint32_t s = lowbias32(seed ^ 0x9e3779b9u);
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(lowbias32((uint32_t)i ^ s) & 0xff) / 255.0f; }

    Returns a flat float32 array of n values in [0, 1].
    """
    n = int(n)
    s = _lowbias32(np.uint32((int(seed) & 0xFFFFFFFF) ^ 0x9E3779B9))
    i = np.arange(n, dtype=np.uint64).astype(np.uint32)  # (uint32_t)i wraps
    h = _lowbias32(i ^ s) & np.uint32(0xFF)
    return h.astype(np.float32) / np.float32(255.0)


def pattern_input(shape, seed=1):
    """pattern() reshaped to `shape` (row-major, like the C side)."""
    shape = tuple(int(d) for d in shape)
    return pattern(int(np.prod(shape)), seed).reshape(shape)


def save_npy(path, arr):
    """Save a little-endian array (float32 stays float32) as .npy."""
    arr = np.asarray(arr)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.save(path, np.ascontiguousarray(arr), allow_pickle=False)


def ort_session(model, threads=1):
    """An ORT InferenceSession with ALL graph optimisations disabled (see the
    module docstring: optimised ORT gets training-form BatchNormalization wrong).
    `model` is a path or serialized bytes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    # Keep ORT_DISABLE_ALL: with optimisations on, ORT has been seen to compute
    # 5-output (training-form) BatchNormalization at opset 12 wrongly; with them
    # off, it uses batch mean and biased batch variance, as the ONNX spec says.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def run_ort(model, feeds, threads=1):
    """Run `model` (path or bytes) on `feeds` (dict name->array, or a list in
    graph-input order).  Returns (output_names, list_of_arrays)."""
    sess = ort_session(model, threads)
    if not isinstance(feeds, dict):
        feeds = {i.name: v for i, v in zip(sess.get_inputs(), feeds)}
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    return names, outs


def input_shapes(model_path_or_proto):
    """Declared graph-input (name, shape) list of an ONNX model, initializer
    inputs excluded.  Symbolic dims come back as their dim_param string."""
    import onnx

    m = model_path_or_proto
    if isinstance(m, (str, bytes, os.PathLike)):
        m = onnx.load(m, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    res = []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else d.dim_param)
        res.append((vi.name, dims))
    return res


if __name__ == "__main__":
    p = pattern(16, 1)
    print("pattern(16, seed=1):")
    print(" ".join("%.9g" % v for v in p))
    print("as byte values:", " ".join(str(int(round(v * 255))) for v in p))
