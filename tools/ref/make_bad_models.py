#!/usr/bin/python3
"""Make malformed-model fixtures (tests/fixtures/bad/) and awkward-but-valid
model fixtures (tests/fixtures/good/).

bad/<case>.onnx (+ side files) and bad/cases.txt, one line per case:
    <file> <expected substring of the error message>
The substring is something a clear error would naturally contain (op type,
value / initializer name, external-data location).  Names inside each model
are chosen so that the substring also appears in the node / value names where
that is natural (e.g. the int64 input is called x_int64), so the check works
whichever of them the error quotes.  Each bad model is otherwise well formed,
so that its one defect is the first thing a loader trips over.

good/<case>/{model.onnx, side files, in0.npy..., out0.npy...} and
good/cases.txt (one case name per line), outputs from ORT (ORT_DISABLE_ALL), as
for tests/fixtures/ops.

Usage:  /usr/bin/python3 tools/ref/make_bad_models.py [--out tests/fixtures]
"""

import argparse
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.dont_write_bytecode = True  # keep tools/ref/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, run_ort, save_npy  # noqa: E402

RNG = np.random.default_rng(1234)


def randn(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def fvi(name, shape):
    return vi(name, TensorProto.FLOAT, shape)


def model(nodes, inputs, outputs, inits=(), opset=12, name="g"):
    g = helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="onnx-train tools/ref/make_bad_models.py")
    m.ir_version = 7
    return m


def conv_model(w=None, wname="w", xname="x", xtype=TensorProto.FLOAT, node_name="conv0", extra_inits=()):
    """x [1,3,8,8] -> Conv(w [4,3,3,3], b [4], pad 1) -> y [1,4,8,8]."""
    if w is None:
        w = numpy_helper.from_array(randn(4, 3, 3, 3, scale=0.2), wname)
    b = numpy_helper.from_array(randn(4, scale=0.1), "b")
    n = helper.make_node("Conv", [xname, w.name, "b"], ["y"], name=node_name, pads=[1, 1, 1, 1])
    return model([n], [vi(xname, xtype, [1, 3, 8, 8])], [fvi("y", [1, 4, 8, 8])], [w, b] + list(extra_inits))


def raw_tensor(name, dims, data_type, raw):
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def external_tensor(name, dims, location, offset=None, length=None, data_type=TensorProto.FLOAT):
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in [("location", location), ("offset", offset), ("length", length)]:
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return t


# --------------------------------------------------------------------------- bad
def bad_cases(outdir):
    cases = []  # (file, substring, model, side files {name: bytes})

    # unsupported op
    X = fvi("x", [5, 1, 4])
    W = numpy_helper.from_array(randn(1, 12, 4, scale=0.3), "lstm_w")
    R = numpy_helper.from_array(randn(1, 12, 3, scale=0.3), "lstm_r")
    n = helper.make_node("LSTM", ["x", "lstm_w", "lstm_r"], ["y"], name="lstm_0", hidden_size=3)
    cases.append(("unsupported_op_lstm.onnx", "LSTM", model([n], [X], [fvi("y", [5, 1, 1, 3])], [W, R]), {}))

    # a cycle between two nodes: a = x + b, b = Sigmoid(a)
    n1 = helper.make_node("Add", ["x", "cycle_b"], ["cycle_a"], name="cycle_add")
    n2 = helper.make_node("Sigmoid", ["cycle_a"], ["cycle_b"], name="cycle_sigmoid")
    n3 = helper.make_node("Identity", ["cycle_a"], ["y"], name="out_identity")
    cases.append(("cycle.onnx", "cycle", model([n1, n2, n3], [fvi("x", [2, 3])], [fvi("y", [2, 3])]), {}))

    # a node input nothing produces
    n1 = helper.make_node("Add", ["x", "ghost_tensor"], ["y"], name="add_ghost")
    cases.append(("dangling_input.onnx", "ghost_tensor", model([n1], [fvi("x", [2, 3])], [fvi("y", [2, 3])]), {}))

    # initializer raw_data shorter than its dims say (4*3*3*3*4 = 432 bytes expected, 100 given)
    w = raw_tensor("w_short", [4, 3, 3, 3], TensorProto.FLOAT, randn(25).tobytes())
    cases.append(("init_short_raw.onnx", "w_short", conv_model(w), {}))

    # initializer with a negative dim
    w = raw_tensor("w_negdim", [4, -3, 3, 3], TensorProto.FLOAT, randn(108).tobytes())
    cases.append(("init_negative_dim.onnx", "w_negdim", conv_model(w), {}))

    # absurd dims (1e6 x 1e6 x 1e6 floats = 4e18 bytes) with 16 bytes of data
    t = raw_tensor("w_huge", [1000000, 1000000, 1000000], TensorProto.FLOAT, randn(4).tobytes())
    n = helper.make_node("Add", ["x", "w_huge"], ["y"], name="add_huge")
    cases.append(("init_absurd_dims.onnx", "w_huge",
                  model([n], [fvi("x", [1, 1, 1])], [fvi("y", [1000000, 1000000, 1000000])], [t]), {}))

    # wrong dtype: Conv fed by a graph input declared int64
    cases.append(("conv_int64_input.onnx", "int64",
                  conv_model(xname="x_int64", xtype=TensorProto.INT64, node_name="conv_int64"), {}))

    # wrong dtype: a complex64 initializer
    t = raw_tensor("w_complex64", [2, 3], TensorProto.COMPLEX64, np.zeros(12, np.float32).tobytes())
    n = helper.make_node("Add", ["x", "w_complex64"], ["y"], name="add_complex64")
    cases.append(("init_complex64.onnx", "complex64", model([n], [fvi("x", [2, 3])], [fvi("y", [2, 3])], [t]), {}))

    # Conv whose weight channels do not fit its input: x has 3 channels, w wants 5
    w = numpy_helper.from_array(randn(4, 5, 3, 3, scale=0.2), "w_mismatch")
    cases.append(("conv_channel_mismatch.onnx", "conv_mismatch", conv_model(w, node_name="conv_mismatch"), {}))

    # external data: missing file
    w = external_tensor("w_ext", [4, 3, 3, 3], "missing.bin", 0, 432)
    cases.append(("ext_missing.onnx", "missing.bin", conv_model(w), {}))

    # external data escaping the model's folder
    w = external_tensor("w_ext", [4, 3, 3, 3], "../escape.bin", 0, 432)
    cases.append(("ext_escape_parent.onnx", "escape.bin", conv_model(w), {}))
    w = external_tensor("w_ext", [4, 3, 3, 3], "/etc/passwd", 0, 432)
    cases.append(("ext_escape_absolute.onnx", "/etc/passwd", conv_model(w), {}))

    # external data: offset + length beyond the end of the file (file has 256 bytes)
    w = external_tensor("w_short_ext", [4, 3, 3, 3], "short_ext.bin", 64, 432)
    cases.append(("ext_out_of_range.onnx", "short_ext", conv_model(w),
                  {"short_ext.bin": randn(64).tobytes()}))

    # a graph output that no node produces
    n = helper.make_node("Sigmoid", ["x"], ["y"], name="sig")
    cases.append(("output_not_produced.onnx", "orphan_out",
                  model([n], [fvi("x", [2, 3])], [fvi("y", [2, 3]), fvi("orphan_out", [2, 3])]), {}))

    # unsupported Resize mode (linear)
    roi = numpy_helper.from_array(np.zeros((0,), np.float32), "roi")
    sc = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    n = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="resize_linear", mode="linear",
                         coordinate_transformation_mode="asymmetric")
    cases.append(("resize_linear.onnx", "linear",
                  model([n], [fvi("x", [1, 2, 4, 4])], [fvi("y", [1, 2, 8, 8])], [roi, sc]), {}))

    d = os.path.join(outdir, "bad")
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    with open(os.path.join(d, "cases.txt"), "w") as f:
        for fname, sub, m, side in cases:
            assert " " not in fname and "\n" not in sub
            with open(os.path.join(d, fname), "wb") as mf:  # raw write: no checker, no external-data handling
                mf.write(m.SerializeToString())
            for sname, data in side.items():
                with open(os.path.join(d, sname), "wb") as sf:
                    sf.write(data)
            f.write("%s %s\n" % (fname, sub))
            # What does ORT say?  Informational only: LSTM and linear Resize are
            # valid ONNX that ORT runs; onnx-train must still reject them.
            feeds = {}
            for i in m.graph.input:
                et = i.type.tensor_type
                dt = {TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64}[et.elem_type]
                feeds[i.name] = np.zeros([dd.dim_value for dd in et.shape.dim], dt)
            try:
                run_ort(os.path.join(d, fname), feeds)
                verdict = "ORT runs it"
            except Exception as e:
                verdict = "ORT: " + str(e).replace("\n", " ")[:150]
            print("bad/%-28s expect %-14r %s" % (fname, sub, verdict))


# --------------------------------------------------------------------------- good
def good_external_data():
    x = randn(1, 3, 7, 9)
    w = randn(4, 3, 3, 3, scale=0.3)
    b = randn(4, scale=0.1)
    s = randn(4, 1, 1)
    n1 = helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])
    n2 = helper.make_node("Mul", ["c", "s"], ["y"], name="mul")
    inits = [numpy_helper.from_array(a, k) for k, a in [("w", w), ("b", b), ("s", s)]]
    m = model([n1, n2], [fvi("x", [1, 3, 7, 9])], [fvi("y", [1, 4, 7, 9])], inits)
    return m, [x], "external"


def good_float16():
    x = randn(1, 3, 7, 9)
    w16 = randn(4, 3, 3, 3, scale=0.3).astype(np.float16)
    b16 = randn(4, 1, 1, scale=0.5).astype(np.float16)
    nodes = [
        helper.make_node("Cast", ["w16"], ["w"], name="cast_w", to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["b16"], ["b"], name="cast_b", to=TensorProto.FLOAT),
        helper.make_node("Add", ["c", "b"], ["y"], name="add"),
    ]
    inits = [numpy_helper.from_array(w16, "w16"), numpy_helper.from_array(b16, "b16")]
    m = model(nodes, [fvi("x", [1, 3, 7, 9])], [fvi("y", [1, 4, 7, 9])], inits)
    return m, [x], None


def good_typed_fields():
    # initializers stored in the typed repeated fields instead of raw_data:
    # float_data (Conv weight), int64_data (Reshape shape), int32_data (an int32
    # tensor Cast to float), and float16 values in int32_data (the ONNX rule:
    # one fp16 bit pattern per int32 element).
    x = randn(1, 3, 5, 7)
    w = randn(4, 3, 3, 3, scale=0.3)
    k32 = np.array([[[1]], [[-2]], [[3]], [[4]]], np.int32)  # [4,1,1]
    h16 = randn(4, 1, 1).astype(np.float16)
    tw = helper.make_tensor("w_float_data", TensorProto.FLOAT, w.shape, w.ravel().tolist(), raw=False)
    ts = helper.make_tensor("shape_int64_data", TensorProto.INT64, [3], [1, 4, -1], raw=False)
    tk = helper.make_tensor("k_int32_data", TensorProto.INT32, k32.shape, k32.ravel().tolist(), raw=False)
    th = TensorProto()
    th.name, th.data_type = "h_fp16_int32_data", TensorProto.FLOAT16
    th.dims.extend(h16.shape)
    th.int32_data.extend(int(v) for v in h16.view(np.uint16).ravel())
    for t in (tw, ts, tk, th):
        assert not t.HasField("raw_data")
    nodes = [
        helper.make_node("Conv", ["x", "w_float_data"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["k_int32_data"], ["kf"], name="cast_k", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["c", "kf"], ["ck"], name="mul_k"),
        helper.make_node("Cast", ["h_fp16_int32_data"], ["hf"], name="cast_h", to=TensorProto.FLOAT),
        helper.make_node("Add", ["ck", "hf"], ["ckh"], name="add_h"),
        helper.make_node("Reshape", ["ckh", "shape_int64_data"], ["y"], name="reshape"),
    ]
    m = model(nodes, [fvi("x", [1, 3, 5, 7])], [fvi("y", [1, 4, 35])], [tw, ts, tk, th])
    return m, [x], None


def good_symbolic_batch():
    # input [batch,3,4,5] with dim_param "batch"; Reshape to [batch, -1] via
    # Shape -> Gather(0) -> Unsqueeze -> Concat(Constant [-1]).  Run at batch 2.
    x = randn(2, 3, 4, 5)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Constant", [], ["idx0"], name="idx0",
                         value=numpy_helper.from_array(np.array(0, np.int64), "idx0_v")),
        helper.make_node("Gather", ["shape", "idx0"], ["batch_dim"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch_dim"], ["batch_1d"], name="unsqueeze", axes=[0]),
        helper.make_node("Constant", [], ["minus1"], name="minus1",
                         value=numpy_helper.from_array(np.array([-1], np.int64), "minus1_v")),
        helper.make_node("Concat", ["batch_1d", "minus1"], ["newshape"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["flat"], name="reshape"),
        helper.make_node("Sigmoid", ["flat"], ["y"], name="sigmoid"),
    ]
    m = model(nodes, [fvi("x", ["batch", 3, 4, 5])], [fvi("y", ["batch", 60])])
    return m, [x], None


def good_cases(outdir):
    d0 = os.path.join(outdir, "good")
    if os.path.isdir(d0):
        shutil.rmtree(d0)
    os.makedirs(d0)
    cases = [("external_data", good_external_data), ("float16_init", good_float16),
             ("typed_fields", good_typed_fields), ("symbolic_batch", good_symbolic_batch)]
    for name, fn in cases:
        m, ins, ext = fn()
        onnx.checker.check_model(m)
        d = os.path.join(d0, name)
        os.makedirs(d)
        path = os.path.join(d, "model.onnx")
        if ext:
            onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location="weights.bin", size_threshold=0, convert_attribute=False)
            mm = onnx.load(path, load_external_data=False)
            for t in mm.graph.initializer:
                assert t.data_location == TensorProto.EXTERNAL, t.name
                print("    %s: %s" % (t.name, {e.key: e.value for e in t.external_data}))
        else:
            onnx.save(m, path)
        onnx.checker.check_model(path)
        feeds = {i.name: a for i, a in zip(m.graph.input, ins)}
        onames, outs = run_ort(path, feeds)
        for k, a in enumerate(ins):
            save_npy(os.path.join(d, "in%d.npy" % k), a)
        for k, o in enumerate(outs):
            assert o.dtype == np.float32 and np.all(np.isfinite(o))
            save_npy(os.path.join(d, "out%d.npy" % k), o)
        print("good/%-16s files %s  out %s" % (name, sorted(os.listdir(d)), [list(o.shape) for o in outs]))
    with open(os.path.join(d0, "cases.txt"), "w") as f:
        f.write("".join(n + "\n" for n, _ in cases))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=FIXTURES)
    args = ap.parse_args()
    bad_cases(args.out)
    good_cases(args.out)


if __name__ == "__main__":
    main()
