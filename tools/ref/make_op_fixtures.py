#!/usr/bin/python3
"""Make per-operator reference fixtures: tests/fixtures/ops/<case>/.

Each case is a tiny ONNX model built with onnx.helper.  Data tensors are
float32 graph inputs (np.random with a fixed seed per case); parameters and
shape tensors are initializers or Constant nodes.  Expected outputs come from
ONNX Runtime with ORT_DISABLE_ALL (see common.py for why).

Files per case:
    model.onnx            the model (graph outputs carry the shapes ORT produced)
    in0.npy, in1.npy ...  graph inputs, in graph-input order, little-endian float32
    out0.npy ...          graph outputs, in graph-output order, little-endian float32
and tests/fixtures/ops/cases.txt lists the case names, one per line.

Usage:  /usr/bin/python3 tools/ref/make_op_fixtures.py [--out tests/fixtures/ops]
"""

import argparse
import os
import shutil
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.dont_write_bytecode = True  # keep tools/ref/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES, run_ort, save_npy  # noqa: E402

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min

CASES = []  # (name, builder)


def case(fn):
    CASES.append((fn.__name__[2:] if fn.__name__.startswith("c_") else fn.__name__, fn))
    return fn


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()) & 0x7FFFFFFF)


class G:
    """Little graph builder."""

    def __init__(self, name, opset=12):
        self.name = name
        self.opset = opset
        self.rng = rng_for(name)
        self.nodes = []
        self.inputs = []  # (name, array)
        self.inits = []
        self.outputs = []
        self._n = 0

    # data ------------------------------------------------------------------
    def randn(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def uniform(self, lo, hi, *shape):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def input(self, name, arr):
        self.inputs.append((name, np.asarray(arr, dtype=np.float32)))
        return name

    def init(self, name, arr, dtype=None):
        arr = np.asarray(arr) if dtype is None else np.asarray(arr, dtype=dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def const(self, name, arr, dtype=None):
        """A Constant node with a tensor value."""
        arr = np.asarray(arr) if dtype is None else np.asarray(arr, dtype=dtype)
        self.nodes.append(helper.make_node("Constant", [], [name], name=name + "_node",
                                           value=numpy_helper.from_array(arr, name + "_value")))
        return name

    def node(self, op, inputs, outputs=None, name=None, **attrs):
        self._n += 1
        if outputs is None:
            outputs = ["%s_%d_out" % (op.lower(), self._n)]
        elif isinstance(outputs, str):
            outputs = [outputs]
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs),
                                           name=name or "%s_%d" % (op, self._n), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def output(self, *names):
        self.outputs.extend(names)

    # model -----------------------------------------------------------------
    def model(self, out_shapes=None, out_types=None):
        ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in self.inputs]
        outs = []
        for k, n in enumerate(self.outputs):
            t = TensorProto.FLOAT if out_types is None else out_types[k]
            outs.append(helper.make_tensor_value_info(n, t, None if out_shapes is None else list(out_shapes[k])))
        graph = helper.make_graph(self.nodes, self.name, ins, outs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="onnx-train tools/ref/make_op_fixtures.py")
        m.ir_version = 7 if self.opset <= 12 else 8
        return m


# --------------------------------------------------------------------------- Conv
def conv_case(name, xshape, wshape, bias=True, opset=12, bias_identity=False, **attrs):
    g = G(name, opset)
    x = g.input("x", g.randn(*xshape))
    fan_in = int(np.prod(wshape[1:]))
    w = g.init("w", g.randn(*wshape, scale=1.0 / np.sqrt(fan_in)))
    ins = [x, w]
    if bias:
        b = g.init("b", g.randn(wshape[0], scale=0.1))
        if bias_identity:  # like the YOLOv5 inference exports
            b = g.node("Identity", [b], "b_identity")
        ins.append(b)
    g.output(g.node("Conv", ins, "y", **attrs))
    return g


@case
def c_conv3x3_bias():
    return conv_case("conv3x3_bias", (1, 3, 7, 9), (4, 3, 3, 3), kernel_shape=[3, 3], pads=[1, 1, 1, 1])


@case
def c_conv3x3_nobias_nopad():
    return conv_case("conv3x3_nobias_nopad", (2, 3, 7, 9), (5, 3, 3, 3), bias=False)


@case
def c_conv1x1():
    return conv_case("conv1x1", (1, 5, 7, 9), (6, 5, 1, 1), kernel_shape=[1, 1], strides=[1, 1],
                     pads=[0, 0, 0, 0], dilations=[1, 1], group=1)


@case
def c_conv1x1_nobias():
    return conv_case("conv1x1_nobias", (2, 8, 5, 3), (3, 8, 1, 1), bias=False)


@case
def c_conv_group2():
    return conv_case("conv_group2", (1, 4, 7, 9), (6, 2, 3, 3), group=2, pads=[1, 1, 1, 1])


@case
def c_conv_depthwise():
    return conv_case("conv_depthwise", (1, 5, 7, 9), (5, 1, 3, 3), group=5, pads=[1, 1, 1, 1])


@case
def c_conv_depthwise_mult2_s2():
    return conv_case("conv_depthwise_mult2_s2", (1, 3, 9, 7), (6, 1, 3, 3), group=3, strides=[2, 2],
                     pads=[1, 1, 1, 1])


@case
def c_conv_stride2():
    return conv_case("conv_stride2", (1, 3, 7, 9), (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])


@case
def c_conv_stride2_nopad():
    return conv_case("conv_stride2_nopad", (2, 4, 8, 10), (3, 4, 3, 3), strides=[2, 2])


@case
def c_conv_stride_2x1():
    return conv_case("conv_stride_2x1", (1, 2, 7, 9), (3, 2, 3, 2), strides=[2, 1], pads=[1, 0, 1, 1])


@case
def c_conv_asym_pads():
    # pads = [top, left, bottom, right]
    return conv_case("conv_asym_pads", (1, 3, 7, 9), (4, 3, 3, 3), pads=[0, 1, 2, 0])


@case
def c_conv_dilation2():
    return conv_case("conv_dilation2", (1, 3, 7, 9), (4, 3, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])


@case
def c_conv_dilation2_stride2():
    return conv_case("conv_dilation2_stride2", (1, 2, 9, 11), (3, 2, 3, 3), dilations=[2, 2], strides=[2, 2],
                     pads=[1, 1, 1, 1])


@case
def c_conv6x6_s2_p2():
    # YOLOv5 (v6+) first layer: k6 s2 p2.
    return conv_case("conv6x6_s2_p2", (1, 3, 14, 10), (4, 3, 6, 6), kernel_shape=[6, 6], strides=[2, 2],
                     pads=[2, 2, 2, 2], bias_identity=True)


@case
def c_conv6x6_s2_p2_odd():
    return conv_case("conv6x6_s2_p2_odd", (1, 3, 13, 11), (4, 3, 6, 6), kernel_shape=[6, 6], strides=[2, 2],
                     pads=[2, 2, 2, 2])


@case
def c_conv_same_upper():
    return conv_case("conv_same_upper", (1, 3, 7, 9), (4, 3, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2])


@case
def c_conv_same_upper_k4():
    return conv_case("conv_same_upper_k4", (1, 2, 7, 9), (3, 2, 4, 4), auto_pad="SAME_UPPER")


@case
def c_conv_same_lower_k4():
    return conv_case("conv_same_lower_k4", (1, 2, 7, 9), (3, 2, 4, 4), auto_pad="SAME_LOWER")


@case
def c_conv_valid():
    return conv_case("conv_valid", (1, 2, 7, 9), (3, 2, 3, 3), auto_pad="VALID", strides=[2, 2])


@case
def c_conv_wide():
    return conv_case("conv_wide", (1, 16, 9, 7), (24, 16, 3, 3), pads=[1, 1, 1, 1])


@case
def c_conv_op11():
    return conv_case("conv_op11", (1, 3, 7, 9), (4, 3, 3, 3), opset=11, pads=[1, 1, 1, 1])


@case
def c_conv_op17():
    return conv_case("conv_op17", (1, 4, 7, 9), (4, 2, 3, 3), opset=17, group=2, strides=[2, 2],
                     pads=[1, 1, 1, 1])


# --------------------------------------------------------------------------- BatchNormalization
def bn_params(g, c):
    scale = g.init("scale", g.uniform(0.5, 1.5, c))
    bias = g.init("bias", g.randn(c, scale=0.2))
    mean = g.init("mean", g.randn(c, scale=0.5))
    var = g.init("var", g.uniform(0.5, 2.0, c))
    return [scale, bias, mean, var]


@case
def c_bn_infer():
    g = G("bn_infer")
    x = g.input("x", g.randn(2, 5, 7, 9))
    g.output(g.node("BatchNormalization", [x] + bn_params(g, 5), "y"))  # default epsilon 1e-5
    return g


@case
def c_bn_infer_eps1e3():
    g = G("bn_infer_eps1e3")
    x = g.input("x", g.randn(1, 3, 7, 9))
    g.output(g.node("BatchNormalization", [x] + bn_params(g, 3), "y", epsilon=1e-3, momentum=0.97))
    return g


@case
def c_bn_infer_op17():
    g = G("bn_infer_op17", 17)
    x = g.input("x", g.randn(2, 4, 5, 7))
    g.output(g.node("BatchNormalization", [x] + bn_params(g, 4), "y", epsilon=1e-3, training_mode=0))
    return g


@case
def c_bn_train():
    # Training form at opset 12: 5 outputs (Y, running_mean, running_var,
    # saved_mean, saved_var); only Y is a graph output.  Y uses the batch mean
    # and the biased batch variance.
    g = G("bn_train")
    x = g.input("x", g.randn(2, 4, 7, 9, scale=2.0) + 0.5)
    g.output(g.node("BatchNormalization", [x] + bn_params(g, 4),
                    ["y", "running_mean", "running_var", "saved_mean", "saved_var"],
                    epsilon=1e-3, momentum=0.97)[0])
    return g


@case
def c_bn_train_conv():
    # Conv (no bias) -> BN training form -> SiLU, the YOLOv5 training block.
    g = G("bn_train_conv")
    x = g.input("x", g.randn(2, 3, 7, 9))
    w = g.init("w", g.randn(4, 3, 3, 3, scale=0.3))
    c = g.node("Conv", [x, w], "conv", pads=[1, 1, 1, 1], strides=[2, 2])
    y = g.node("BatchNormalization", [c] + bn_params(g, 4),
               ["bn", "bn_rm", "bn_rv", "bn_sm", "bn_sv"], epsilon=1e-3, momentum=0.97)
    s = g.node("Sigmoid", [y[0]], "sig")
    g.output(g.node("Mul", [y[0], s], "y"))
    return g


# --------------------------------------------------------------------------- Sigmoid / elementwise
@case
def c_sigmoid():
    g = G("sigmoid")
    x = g.input("x", g.randn(2, 3, 5, 7, scale=4.0))
    g.output(g.node("Sigmoid", [x], "y"))
    return g


@case
def c_sigmoid_extreme():
    g = G("sigmoid_extreme")
    v = np.array([-100, -88.8, -30, -16, -5, -1, -1e-6, 0, 1e-6, 1, 5, 16, 30, 88.8, 100], np.float32)
    x = g.input("x", v.reshape(1, 15))
    g.output(g.node("Sigmoid", [x], "y"))
    return g


@case
def c_silu():
    g = G("silu")
    x = g.input("x", g.randn(1, 4, 7, 9, scale=3.0))
    s = g.node("Sigmoid", [x], "s")
    g.output(g.node("Mul", [x, s], "y"))
    return g


def binop_case(name, op, xa, b, b_is_input=False, b_first=False, opset=12, b_const_node=False):
    g = G(name, opset)
    x = g.input("x", xa(g))
    bv = b(g)
    if b_is_input:
        bn = g.input("b", bv)
    elif b_const_node:
        bn = g.const("b", bv, np.float32)
    else:
        bn = g.init("b", bv, np.float32)
    ins = [bn, x] if b_first else [x, bn]
    g.output(g.node(op, ins, "y"))
    return g


@case
def c_add_scalar():
    return binop_case("add_scalar", "Add", lambda g: g.randn(2, 3, 5, 7), lambda g: np.float32(0.75))


@case
def c_add_per_channel():
    return binop_case("add_per_channel", "Add", lambda g: g.randn(2, 3, 5, 7), lambda g: g.randn(3, 1, 1))


@case
def c_add_inputs_bcast():
    # both graph inputs; b [3,1,7] broadcasts mid-axis and extends rank
    return binop_case("add_inputs_bcast", "Add", lambda g: g.randn(2, 3, 5, 7), lambda g: g.randn(3, 1, 7),
                      b_is_input=True)


@case
def c_add_same_shape():
    return binop_case("add_same_shape", "Add", lambda g: g.randn(1, 4, 7, 9), lambda g: g.randn(1, 4, 7, 9),
                      b_is_input=True)


@case
def c_add_bcast_both():
    # x [2,1,5,1] + b [3,1,7] -> [2,3,5,7] (both operands broadcast)
    return binop_case("add_bcast_both", "Add", lambda g: g.randn(2, 1, 5, 1), lambda g: g.randn(3, 1, 7),
                      b_is_input=True)


@case
def c_sub_per_channel():
    return binop_case("sub_per_channel", "Sub", lambda g: g.randn(1, 4, 7, 9), lambda g: g.randn(4, 1, 1))


@case
def c_sub_scalar_first():
    return binop_case("sub_scalar_first", "Sub", lambda g: g.randn(2, 3, 5), lambda g: np.float32(1.5),
                      b_first=True)


@case
def c_sub_rank_extend():
    return binop_case("sub_rank_extend", "Sub", lambda g: g.randn(2, 3, 4, 5), lambda g: g.randn(5),
                      b_is_input=True)


@case
def c_mul_scalar_const():
    return binop_case("mul_scalar_const", "Mul", lambda g: g.randn(1, 3, 7, 9), lambda g: np.float32(2.0),
                      b_const_node=True)


@case
def c_mul_per_channel():
    return binop_case("mul_per_channel", "Mul", lambda g: g.randn(2, 5, 3, 7), lambda g: g.randn(5, 1, 1))


@case
def c_mul_rank_extend():
    return binop_case("mul_rank_extend", "Mul", lambda g: g.randn(2, 3, 4, 5), lambda g: g.randn(4, 5),
                      b_is_input=True)


@case
def c_div_scalar():
    return binop_case("div_scalar", "Div", lambda g: g.randn(2, 3, 5, 7), lambda g: np.float32(3.0))


@case
def c_div_inputs_bcast():
    return binop_case("div_inputs_bcast", "Div", lambda g: g.randn(2, 3, 5, 7),
                      lambda g: g.uniform(0.5, 2.0, 1, 3, 1, 1) * np.sign(g.randn(1, 3, 1, 1)), b_is_input=True)


@case
def c_div_scalar_first():
    return binop_case("div_scalar_first", "Div", lambda g: g.uniform(0.5, 3.0, 3, 4, 5), lambda g: np.float32(1.0),
                      b_first=True)


@case
def c_pow_square_const():
    # YOLOv5 decode: (wh * 2) ** 2 with a scalar Constant exponent
    return binop_case("pow_square_const", "Pow", lambda g: g.randn(1, 3, 5, 7), lambda g: np.float32(2.0),
                      b_const_node=True)


@case
def c_pow_fractional():
    return binop_case("pow_fractional", "Pow", lambda g: g.uniform(0.1, 4.0, 2, 3, 5), lambda g: np.float32(0.5))


@case
def c_pow_per_channel():
    return binop_case("pow_per_channel", "Pow", lambda g: g.uniform(0.2, 2.0, 1, 3, 4, 5),
                      lambda g: np.array([0.5, 1.0, 3.0], np.float32).reshape(3, 1, 1))


@case
def c_pow_inputs():
    return binop_case("pow_inputs", "Pow", lambda g: g.uniform(0.2, 3.0, 2, 3, 4), lambda g: g.uniform(-2, 2, 3, 1),
                      b_is_input=True)


@case
def c_pow_int_exp_negative_base():
    return binop_case("pow_int_exp_negative_base", "Pow", lambda g: g.randn(2, 3, 5),
                      lambda g: np.array([1.0, 2.0, 3.0, -1.0, 0.0], np.float32), b_is_input=True)


@case
def c_mul_op13():
    return binop_case("mul_op13", "Mul", lambda g: g.randn(2, 3, 5), lambda g: g.randn(3, 1), opset=13,
                      b_is_input=True)


# --------------------------------------------------------------------------- Concat
@case
def c_concat_axis1_3in():
    g = G("concat_axis1_3in")
    a = g.input("a", g.randn(1, 2, 7, 9))
    b = g.input("b", g.randn(1, 3, 7, 9))
    c = g.input("c", g.randn(1, 1, 7, 9))
    g.output(g.node("Concat", [a, b, c], "y", axis=1))
    return g


@case
def c_concat_neg_axis():
    g = G("concat_neg_axis")
    a = g.input("a", g.randn(2, 3, 4, 2))
    b = g.input("b", g.randn(2, 3, 4, 5))
    g.output(g.node("Concat", [a, b], "y", axis=-1))
    return g


@case
def c_concat_axis0_init():
    g = G("concat_axis0_init")
    a = g.input("a", g.randn(2, 3, 5))
    b = g.init("b", g.randn(1, 3, 5))
    g.output(g.node("Concat", [a, b, a], "y", axis=0))
    return g


@case
def c_concat_axis1_5d():
    # like the YOLOv5 decode concat of (xy, wh, conf) on the last axis of a 5-d map
    g = G("concat_axis1_5d")
    a = g.input("a", g.randn(1, 3, 4, 5, 2))
    b = g.input("b", g.randn(1, 3, 4, 5, 2))
    c = g.input("c", g.randn(1, 3, 4, 5, 6))
    g.output(g.node("Concat", [a, b, c], "y", axis=4))
    return g


# --------------------------------------------------------------------------- MaxPool
def pool_case(name, xshape, opset=12, **attrs):
    g = G(name, opset)
    x = g.input("x", g.randn(*xshape))
    g.output(g.node("MaxPool", [x], "y", **attrs))
    return g


@case
def c_maxpool_k5s1p2():
    return pool_case("maxpool_k5s1p2", (1, 4, 7, 9), kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2],
                     ceil_mode=0)


@case
def c_maxpool_sppf_chain():
    # SPPF: three chained k5 s1 p2 pools concatenated with the input
    g = G("maxpool_sppf_chain")
    x = g.input("x", g.randn(1, 3, 7, 9))
    p1 = g.node("MaxPool", [x], "p1", kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    p2 = g.node("MaxPool", [p1], "p2", kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    p3 = g.node("MaxPool", [p2], "p3", kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    g.output(g.node("Concat", [x, p1, p2, p3], "y", axis=1))
    return g


@case
def c_maxpool_k2s2():
    return pool_case("maxpool_k2s2", (2, 3, 7, 9), kernel_shape=[2, 2], strides=[2, 2])


@case
def c_maxpool_k3s2_ceil():
    return pool_case("maxpool_k3s2_ceil", (1, 3, 8, 10), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)


@case
def c_maxpool_k3s2p1_ceil():
    return pool_case("maxpool_k3s2p1_ceil", (1, 2, 8, 10), kernel_shape=[3, 3], strides=[2, 2],
                     pads=[1, 1, 1, 1], ceil_mode=1)


@case
def c_maxpool_k2s2p1_ceil():
    # ceil_mode edge: the last window would start in the padding only
    return pool_case("maxpool_k2s2p1_ceil", (1, 2, 7, 9), kernel_shape=[2, 2], strides=[2, 2],
                     pads=[1, 1, 1, 1], ceil_mode=1)


@case
def c_maxpool_k3s1_nostride():
    return pool_case("maxpool_k3s1_nostride", (1, 2, 7, 9), kernel_shape=[3, 3])


@case
def c_maxpool_asym_pads():
    return pool_case("maxpool_asym_pads", (1, 2, 7, 9), kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 0, 1])


# --------------------------------------------------------------------------- Resize / Upsample
@case
def c_resize_nearest2x_op11():
    # torch's opset 11/12 export of nn.Upsample(scale_factor=2): empty roi + scales
    g = G("resize_nearest2x_op11", 11)
    x = g.input("x", g.randn(1, 3, 7, 9))
    roi = g.const("roi", np.zeros((0,), np.float32))
    sc = g.const("scales", np.array([1, 1, 2, 2], np.float32))
    g.output(g.node("Resize", [x, roi, sc], "y", mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor", cubic_coeff_a=-0.75))
    return g


@case
def c_resize_nearest2x_op12():
    # as in yolov5s.onnx (opset 12): empty roi and scales from Constant nodes
    g = G("resize_nearest2x_op12", 12)
    x = g.input("x", g.randn(1, 4, 5, 7))
    roi = g.const("roi", np.zeros((0,), np.float32))
    sc = g.const("scales", np.array([1, 1, 2, 2], np.float32))
    g.output(g.node("Resize", [x, roi, sc], "y", mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor", cubic_coeff_a=-0.75))
    return g


@case
def c_resize_scales_concat():
    # as in yolov5s-train.onnx / yolov5s-bn.onnx: scales = Concat(Constant[1,1], Constant[2,2])
    g = G("resize_scales_concat", 12)
    x = g.input("x", g.randn(1, 2, 7, 9))
    roi = g.const("roi", np.zeros((0,), np.float32))
    a = g.const("s_nc", np.array([1, 1], np.float32))
    b = g.const("s_hw", np.array([2, 2], np.float32))
    sc = g.node("Concat", [a, b], "scales", axis=0)
    g.output(g.node("Resize", [x, roi, sc], "y", mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor"))
    return g


@case
def c_resize_sizes_op13():
    g = G("resize_sizes_op13", 13)
    x = g.input("x", g.randn(1, 3, 7, 9))
    sz = g.init("sizes", np.array([1, 3, 14, 18], np.int64))
    g.output(g.node("Resize", [x, "", "", sz], "y", mode="nearest"))  # defaults: half_pixel, round_prefer_floor
    return g


@case
def c_resize_sizes_nonint_op13():
    g = G("resize_sizes_nonint_op13", 13)
    x = g.input("x", g.randn(1, 2, 7, 9))
    sz = g.init("sizes", np.array([1, 2, 10, 13], np.int64))
    g.output(g.node("Resize", [x, "", "", sz], "y", mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor"))
    return g


@case
def c_resize_halfpixel_1p5():
    g = G("resize_halfpixel_1p5", 13)
    x = g.input("x", g.randn(1, 2, 7, 9))
    sc = g.init("scales", np.array([1, 1, 1.5, 1.5], np.float32))
    g.output(g.node("Resize", [x, "", sc], "y", mode="nearest", coordinate_transformation_mode="half_pixel",
                    nearest_mode="round_prefer_floor"))
    return g


@case
def c_resize_asym_floor_1p5():
    g = G("resize_asym_floor_1p5", 12)
    x = g.input("x", g.randn(1, 2, 7, 9))
    roi = g.init("roi", np.zeros((0,), np.float32))
    sc = g.init("scales", np.array([1, 1, 1.5, 1.5], np.float32))
    g.output(g.node("Resize", [x, roi, sc], "y", mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor"))
    return g


@case
def c_resize_asym_floor_3x2():
    g = G("resize_asym_floor_3x2", 12)
    x = g.input("x", g.randn(2, 2, 5, 7))
    roi = g.init("roi", np.zeros((0,), np.float32))
    sc = g.init("scales", np.array([1, 1, 3, 2], np.float32))
    g.output(g.node("Resize", [x, roi, sc], "y", mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor"))
    return g


@case
def c_upsample_op9():
    g = G("upsample_op9", 9)
    x = g.input("x", g.randn(1, 3, 7, 9))
    sc = g.init("scales", np.array([1, 1, 2, 2], np.float32))
    g.output(g.node("Upsample", [x, sc], "y", mode="nearest"))
    return g


# --------------------------------------------------------------------------- shape ops
@case
def c_reshape_zero_minus1():
    g = G("reshape_zero_minus1")
    x = g.input("x", g.randn(2, 3, 4, 5))
    s = g.init("shape", np.array([0, -1, 5], np.int64))
    g.output(g.node("Reshape", [x, s], "y"))
    return g


@case
def c_reshape_5d_const():
    # YOLOv5 head: [1, 3*no, ny, nx] -> [1, 3, no, ny, nx] via a Constant shape
    g = G("reshape_5d_const")
    x = g.input("x", g.randn(1, 12, 5, 7))
    s = g.const("shape", np.array([1, 3, 4, 5, 7], np.int64))
    g.output(g.node("Reshape", [x, s], "y"))
    return g


@case
def c_reshape_minus1_first():
    g = G("reshape_minus1_first", 13)
    x = g.input("x", g.randn(2, 3, 4, 5))
    s = g.init("shape", np.array([-1, 0, 2], np.int64))
    g.output(g.node("Reshape", [x, s], "y"))
    return g


@case
def c_transpose_perm():
    g = G("transpose_perm")
    x = g.input("x", g.randn(1, 3, 4, 5, 6))
    g.output(g.node("Transpose", [x], "y", perm=[0, 1, 3, 4, 2]))
    return g


@case
def c_transpose_nhwc():
    g = G("transpose_nhwc")
    x = g.input("x", g.randn(2, 3, 5, 7))
    g.output(g.node("Transpose", [x], "y", perm=[0, 2, 3, 1]))
    return g


@case
def c_transpose_default():
    g = G("transpose_default")
    x = g.input("x", g.randn(2, 3, 4))
    g.output(g.node("Transpose", [x], "y"))  # no perm: reverse axes
    return g


@case
def c_split_attr_op12():
    # like the YOLOv5 decode split (2, 2, nc+1) on axis 4
    g = G("split_attr_op12")
    x = g.input("x", g.randn(1, 3, 4, 5, 9))
    g.output(*g.node("Split", [x], ["xy", "wh", "conf"], axis=4, split=[2, 2, 5]))
    return g


@case
def c_split_equal_op12():
    g = G("split_equal_op12")
    x = g.input("x", g.randn(2, 6, 3, 5))
    g.output(*g.node("Split", [x], ["y0", "y1", "y2"], axis=1))
    return g


@case
def c_split_input_op13():
    g = G("split_input_op13", 13)
    x = g.input("x", g.randn(2, 3, 4, 7))
    sp = g.init("split", np.array([2, 5], np.int64))
    g.output(*g.node("Split", [x, sp], ["y0", "y1"], axis=-1))
    return g


@case
def c_split_equal_op13():
    g = G("split_equal_op13", 13)
    x = g.input("x", g.randn(4, 3, 5))
    g.output(*g.node("Split", [x], ["y0", "y1"]))  # default axis 0, equal halves
    return g


@case
def c_slice_attrs_op9():
    g = G("slice_attrs_op9", 9)
    x = g.input("x", g.randn(3, 7, 9))
    g.output(g.node("Slice", [x], "y", starts=[1, -7], ends=[3, 1000], axes=[1, 2]))
    return g


@case
def c_slice_attrs_noaxes_op9():
    g = G("slice_attrs_noaxes_op9", 9)
    x = g.input("x", g.randn(4, 5, 6))
    g.output(g.node("Slice", [x], "y", starts=[1, 0, -4], ends=[-1, 100, -1]))
    return g


@case
def c_slice_neg_steps_op13():
    g = G("slice_neg_steps_op13", 13)
    x = g.input("x", g.randn(2, 3, 7, 9))
    st = g.init("starts", np.array([-1, 8], np.int64))
    en = g.init("ends", np.array([INT64_MIN, 0], np.int64))
    ax = g.init("axes", np.array([-2, -1], np.int64))
    sp = g.init("steps", np.array([-2, -3], np.int64))
    g.output(g.node("Slice", [x, st, en, ax, sp], "y"))
    return g


@case
def c_slice_steps_op13():
    # torch-style: ends = INT64_MAX, positive step 2 (YOLOv5 v5 Focus used this)
    g = G("slice_steps_op13", 13)
    x = g.input("x", g.randn(1, 3, 7, 9))
    st = g.const("starts", np.array([1, 0], np.int64))
    en = g.const("ends", np.array([INT64_MAX, INT64_MAX], np.int64))
    ax = g.const("axes", np.array([2, 3], np.int64))
    sp = g.const("steps", np.array([2, 2], np.int64))
    g.output(g.node("Slice", [x, st, en, ax, sp], "y"))
    return g


@case
def c_slice_noaxes_op13():
    g = G("slice_noaxes_op13", 13)
    x = g.input("x", g.randn(5, 6))
    st = g.init("starts", np.array([-3, 1], np.int64))
    en = g.init("ends", np.array([-1, -1], np.int64))
    g.output(g.node("Slice", [x, st, en], "y"))
    return g


@case
def c_slice_op17():
    g = G("slice_op17", 17)
    x = g.input("x", g.randn(2, 5, 7, 9))
    st = g.init("starts", np.array([1, 7], np.int64))
    en = g.init("ends", np.array([4, -100], np.int64))
    ax = g.init("axes", np.array([1, 3], np.int64))
    sp = g.init("steps", np.array([1, -2], np.int64))
    g.output(g.node("Slice", [x, st, en, ax, sp], "y"))
    return g


@case
def c_unsqueeze_squeeze_op11():
    g = G("unsqueeze_squeeze_op11", 11)
    x = g.input("x", g.randn(3, 4))
    u = g.node("Unsqueeze", [x], "u", axes=[0, -1])  # -> [1,3,4,1]
    s = g.node("Squeeze", [u], "s", axes=[-1])  # -> [1,3,4]
    u2 = g.node("Unsqueeze", [s], "u2", axes=[2])  # -> [1,3,1,4]
    g.output(u, g.node("Squeeze", [u2], "y", axes=[0, 2]))  # -> [3,4]
    return g


@case
def c_squeeze_noaxes_op11():
    g = G("squeeze_noaxes_op11", 11)
    x = g.input("x", g.randn(1, 3, 1, 5, 1))
    g.output(g.node("Squeeze", [x], "y"))
    return g


@case
def c_unsqueeze_squeeze_op13():
    g = G("unsqueeze_squeeze_op13", 13)
    x = g.input("x", g.randn(3, 4))
    ax = g.const("axes_u", np.array([1, -1], np.int64))
    u = g.node("Unsqueeze", [x, ax], "u")  # -> [3,1,4,1]
    ax2 = g.init("axes_s", np.array([-3], np.int64))
    g.output(u, g.node("Squeeze", [u, ax2], "y"))  # -> [3,4,1]
    return g


@case
def c_squeeze_noaxes_op13():
    g = G("squeeze_noaxes_op13", 13)
    x = g.input("x", g.randn(1, 3, 1, 5))
    g.output(g.node("Squeeze", [x], "y"))
    return g


@case
def c_identity():
    g = G("identity")
    x = g.input("x", g.randn(2, 3, 5))
    i = g.node("Identity", [x], "i")
    c = g.init("c", g.randn(3, 5))
    ci = g.node("Identity", [c], "ci")
    g.output(g.node("Add", [i, ci], "y"), i)
    return g


@case
def c_flatten():
    g = G("flatten")
    x = g.input("x", g.randn(2, 3, 4, 5))
    g.output(g.node("Flatten", [x], "y1"),  # axis 1 (default)
             g.node("Flatten", [x], "y0", axis=0),
             g.node("Flatten", [x], "y3", axis=3),
             g.node("Flatten", [x], "yneg", axis=-2))
    return g


# --------------------------------------------------------------------------- constant folding chains
@case
def c_fold_shape_chain_op11():
    # x -> Shape -> Gather(0) -> Unsqueeze -> Concat(with Constant [-1]) -> Cast -> Reshape(x, .)
    # plus Shape(y) -> ConstantOfShape(0.25) -> Add(y, .)
    g = G("fold_shape_chain_op11", 11)
    x = g.input("x", g.randn(2, 3, 4, 5))
    sh = g.node("Shape", [x], "shape")
    i0 = g.const("idx0", np.array(0, np.int64))
    d0 = g.node("Gather", [sh, i0], "dim0", axis=0)
    u0 = g.node("Unsqueeze", [d0], "dim0_1d", axes=[0])
    m1 = g.const("minus1", np.array([-1], np.int64))
    cat = g.node("Concat", [u0, m1], "newshape", axis=0)
    cst = g.node("Cast", [cat], "newshape_i64", to=TensorProto.INT64)
    y = g.node("Reshape", [x, cst], "reshaped")
    sh2 = g.node("Shape", [y], "shape2")
    cos = g.node("ConstantOfShape", [sh2], "filled", value=numpy_helper.from_array(np.array([0.25], np.float32)))
    g.output(g.node("Add", [y, cos], "y"))
    return g


@case
def c_fold_shape_chain_op13():
    # opset 13: Unsqueeze takes axes as input; Constant(value_ints); Gather with a
    # negative index; the Gather result Cast to float also scales the data.
    g = G("fold_shape_chain_op13", 13)
    x = g.input("x", g.randn(1, 6, 5, 7))
    sh = g.node("Shape", [x], "shape")
    i1 = g.const("idx1", np.array(1, np.int64))
    c = g.node("Gather", [sh, i1], "c", axis=0)
    im1 = g.const("idxm1", np.array(-1, np.int64))
    w = g.node("Gather", [sh, im1], "w", axis=0)
    ax0 = g.const("ax0", np.array([0], np.int64))
    c1 = g.node("Unsqueeze", [c, ax0], "c_1d")
    w1 = g.node("Unsqueeze", [w, ax0], "w_1d")
    g.nodes.append(helper.make_node("Constant", [], ["one_neg1"], name="one_neg1_node", value_ints=[1, -1]))
    cat = g.node("Concat", [c1, "one_neg1", w1], "newshape", axis=0)  # [6, 1, -1, 7]
    cst = g.node("Cast", [cat], "newshape_i64", to=TensorProto.INT64)
    r = g.node("Reshape", [x, cst], "reshaped")
    wf = g.node("Cast", [w], "w_float", to=TensorProto.FLOAT)
    inv = g.node("Div", [g.const("one", np.array(1.0, np.float32)), wf], "inv_w")
    scaled = g.node("Mul", [r, inv], "scaled")
    sh2 = g.node("Shape", [scaled], "shape2")
    cos = g.node("ConstantOfShape", [sh2], "filled", value=numpy_helper.from_array(np.array([-0.5], np.float32)))
    g.output(g.node("Add", [scaled, cos], "y"))
    return g


@case
def c_fold_constantofshape_default():
    # ConstantOfShape without a value attribute -> float32 zeros; shape from a Constant
    g = G("fold_constantofshape_default")
    x = g.input("x", g.randn(3, 4))
    s = g.const("shape", np.array([3, 4], np.int64))
    z = g.node("ConstantOfShape", [s], "zeros")
    g.output(g.node("Add", [x, z], "y"))
    return g


# --------------------------------------------------------------------------- small blocks
@case
def c_yolo_block_op17():
    # Conv + SiLU, SPPF-ish pool, Concat, Resize 2x, at opset 17
    g = G("yolo_block_op17", 17)
    x = g.input("x", g.randn(1, 3, 7, 9))
    w = g.init("w", g.randn(4, 3, 3, 3, scale=0.3))
    b = g.init("b", g.randn(4, scale=0.1))
    c = g.node("Conv", [x, w, b], "c", pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    s = g.node("Sigmoid", [c], "s")
    a = g.node("Mul", [c, s], "a")
    p = g.node("MaxPool", [a], "p", kernel_shape=[5, 5], pads=[2, 2, 2, 2], strides=[1, 1])
    cat = g.node("Concat", [a, p], "cat", axis=1)
    sc = g.const("scales", np.array([1, 1, 2, 2], np.float32))
    r = g.node("Resize", [cat, "", sc], "y", mode="nearest", coordinate_transformation_mode="asymmetric",
               nearest_mode="floor")
    g.output(r)
    return g


@case
def c_yolo_decode_op12():
    # A miniature YOLOv5 Detect decode, exactly the export's op pattern.
    g = G("yolo_decode_op12")
    na, no, ny, nx, stride = 3, 7, 4, 5, 8.0
    x = g.input("x", g.randn(1, 8, ny, nx))
    w = g.init("w", g.randn(na * no, 8, 1, 1, scale=0.3))
    b = g.init("b", g.randn(na * no, scale=0.5))
    c = g.node("Conv", [x, w, b], "conv", kernel_shape=[1, 1])
    r = g.node("Reshape", [c, g.const("shape5", np.array([1, na, no, ny, nx], np.int64))], "r")
    t = g.node("Transpose", [r], "t", perm=[0, 1, 3, 4, 2])
    s = g.node("Sigmoid", [t], "s")
    xy, wh, conf = g.node("Split", [s], ["xy", "wh", "conf"], axis=4, split=[2, 2, no - 4])
    yv, xv = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32), indexing="ij")
    grid = (np.broadcast_to(np.stack((xv, yv), 2), (1, na, ny, nx, 2)) - 0.5).astype(np.float32)
    anchors = np.array([[10, 13], [16, 30], [33, 23]], np.float32)
    agrid = np.broadcast_to(anchors.reshape(1, na, 1, 1, 2), (1, na, ny, nx, 2)).astype(np.float32)
    xy2 = g.node("Mul", [xy, g.const("two_a", np.array(2.0, np.float32))], "xy2")
    xyg = g.node("Add", [xy2, g.const("grid", grid)], "xyg")
    xys = g.node("Mul", [xyg, g.const("stride", np.array(stride, np.float32))], "xys")
    wh2 = g.node("Mul", [wh, g.const("two_b", np.array(2.0, np.float32))], "wh2")
    whp = g.node("Pow", [wh2, g.const("two_c", np.array(2.0, np.float32))], "whp")
    wha = g.node("Mul", [whp, g.const("anchor_grid", agrid)], "wha")
    cat = g.node("Concat", [xys, wha, conf], "cat", axis=4)
    g.output(g.node("Reshape", [cat, g.const("shape3", np.array([1, na * ny * nx, no], np.int64))], "y"))
    return g


# --------------------------------------------------------------------------- driver
def check_bn_train(g, outs):
    """Independent numpy check of the training-form BN (batch statistics)."""
    x = dict(g.inputs)["x"].astype(np.float64)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.inits}
    if g.name == "bn_train":
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True)  # biased
        y = (x - mean) / np.sqrt(var + 1e-3) * inits["scale"].reshape(1, -1, 1, 1) + inits["bias"].reshape(1, -1, 1, 1)
        err = np.abs(y - outs[0]).max()
        print("    numpy check (batch mean, biased batch var): max err %.3g" % err)
        assert err < 1e-4, err
        # Show the ORT optimisation problem (for the README); not fatal.
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.log_severity_level = 3
            sess = ort.InferenceSession(g.model().SerializeToString(), so, providers=["CPUExecutionProvider"])
            yo = sess.run(None, {"x": dict(g.inputs)["x"]})[0]
            yr = (x - inits["mean"].reshape(1, -1, 1, 1)) / np.sqrt(inits["var"].reshape(1, -1, 1, 1) + 1e-3) \
                * inits["scale"].reshape(1, -1, 1, 1) + inits["bias"].reshape(1, -1, 1, 1)
            print("    ORT_ENABLE_ALL: max |Y - DISABLE_ALL Y| = %.3g, max |Y - running-stats Y| = %.3g"
                  % (np.abs(yo - outs[0]).max(), np.abs(yo - yr).max()))
        except Exception as e:  # pragma: no cover
            print("    ORT_ENABLE_ALL session failed:", e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(FIXTURES, "ops"))
    ap.add_argument("--only", nargs="*", help="case names to (re)make")
    args = ap.parse_args()

    names = [n for n, _ in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    if not args.only and os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out, exist_ok=True)
    opsets = {}
    total = 0
    notes = []
    for name, fn in CASES:
        if args.only and name not in args.only:
            continue
        g = fn()
        assert g.name == name, (g.name, name)
        m = g.model()  # outputs without shapes (the checker wants shapes; ORT does not)
        feeds = {n: a for n, a in g.inputs}
        onames, outs = run_ort(m.SerializeToString(), feeds)
        assert onames == g.outputs
        for o in outs:
            assert o.dtype == np.float32, (name, o.dtype)
            assert np.all(np.isfinite(o)), name
        if name == "bn_train":
            check_bn_train(g, outs)
        # Final model: graph outputs declare the shapes ORT produced.
        m = g.model(out_shapes=[o.shape for o in outs])
        onnx.checker.check_model(m)
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception as e:  # onnx's own shape inference disagrees with ORT
            msg = str(e).splitlines()[-1]
            notes.append("%s: onnx %s shape inference disagrees with ORT: %s" % (name, onnx.__version__, msg))
        onames2, outs2 = run_ort(m.SerializeToString(), feeds)
        for a, b in zip(outs, outs2):
            assert np.array_equal(a, b)
        d = os.path.join(args.out, name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        onnx.save(m, os.path.join(d, "model.onnx"))
        for k, (_, a) in enumerate(g.inputs):
            save_npy(os.path.join(d, "in%d.npy" % k), a)
        for k, o in enumerate(outs):
            save_npy(os.path.join(d, "out%d.npy" % k), o)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += size
        opsets[g.opset] = opsets.get(g.opset, 0) + 1
        print("%-30s opset %2d  in %s  out %s  %d bytes" % (
            name, g.opset, [list(a.shape) for _, a in g.inputs], [list(o.shape) for o in outs], size))
    if not args.only:
        with open(os.path.join(args.out, "cases.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
    print("%d cases, opsets %s, %d bytes" % (len(names), dict(sorted(opsets.items())), total))
    for n in notes:
        print("NOTE:", n)


if __name__ == "__main__":
    main()
