#!/usr/bin/python3
"""darknet cfg + weights -> ONNX, for bench/inference's ONNX Runtime peer.

Usage: darknet2onnx.py NET.cfg NET.weights OUT.onnx

Covers the layers of the networks framegate benchmarks (yolov3-tiny, the face model):
[convolutional] (groups, batch_normalize folded into the weights, leaky / linear),
[maxpool] (darknet's padding = size - 1, split size//2 before and the rest after, so size 2
stride 1 keeps the size), [route], [upsample], and [yolo] / [region] heads, whose ONNX outputs
are the raw convolution outputs feeding them (what darknet's head layers read; the head's own
logistic/softmax is box decoding, left to the caller). One input "input", NCHW float 1x3xHxW
(darknet's planar CHW); outputs named "head<i>" (i = the head layer's index), in layer order.
Anything else in the cfg is an error, never silently skipped.

Needs Debian's python3-onnx (scripts/setup.sh --bench); run with /usr/bin/python3.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def parse_cfg(path):
    sections = []
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                sections.append((line.strip("[]").strip(), {}))
            elif "=" in line and sections:
                k, v = line.split("=", 1)
                sections[-1][1][k.strip()] = v.strip()
    return sections


def ints(opts, key, default):
    return int(opts.get(key, default))


class Weights:
    """darknet's .weights: a header (major, minor, revision; `seen` as 8 bytes from 0.2 on),
    then per convolution: biases, [scales, rolling mean, rolling variance], weights."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        major, minor, _rev = np.frombuffer(data, np.int32, 3)
        off = 12 + (8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4)
        self.data = np.frombuffer(data[off:], np.float32)
        self.pos = 0

    def take(self, n):
        if self.pos + n > self.data.size:
            raise SystemExit("darknet2onnx: the weights file is shorter than the cfg needs")
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v.astype(np.float32)


def convert(cfg_path, weights_path, out_path):
    sections = parse_cfg(cfg_path)
    if not sections or sections[0][0] not in ("net", "network"):
        raise SystemExit("darknet2onnx: %s does not start with [net]" % cfg_path)
    netopts = sections[0][1]
    c, h, w = ints(netopts, "channels", 3), ints(netopts, "height", 0), ints(netopts, "width", 0)
    wts = Weights(weights_path)
    nodes, inits, outputs = [], [], []
    shapes = []  # per layer: (name, c, h, w)
    cur = ("input", c, h, w)

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    for i, (kind, o) in enumerate(sections[1:]):
        name = "l%d" % i
        src, c, h, w = cur
        if kind in ("convolutional", "conv"):
            n, size, stride = ints(o, "filters", 1), ints(o, "size", 1), ints(o, "stride", 1)
            groups = ints(o, "groups", 1)
            pad = size // 2 if ints(o, "pad", 0) else ints(o, "padding", 0)
            bn = ints(o, "batch_normalize", 0)
            act = o.get("activation", "logistic")
            if c % groups or n % groups:
                raise SystemExit("darknet2onnx: layer %d: groups %d do not divide %d/%d"
                                 % (i, groups, c, n))
            bias = wts.take(n)
            if bn:
                scale, mean, var = wts.take(n), wts.take(n), wts.take(n)
            weight = wts.take(n * (c // groups) * size * size).reshape(n, c // groups, size, size)
            if bn:  # darknet's normalize_cpu: (x - mean) / (sqrt(var) + .000001) * scale + bias
                k = scale / (np.sqrt(var, dtype=np.float32) + np.float32(0.000001))
                weight = weight * k[:, None, None, None]
                bias = bias - mean * k
            conv_out = name + "_conv" if act != "linear" else name
            nodes.append(helper.make_node(
                "Conv", [src, const(name + "_w", weight), const(name + "_b", bias)], [conv_out],
                kernel_shape=[size, size], strides=[stride, stride], pads=[pad] * 4,
                group=groups, name=name + "_conv"))
            if act == "leaky":
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [name], alpha=0.1,
                                              name=name + "_leaky"))
            elif act == "relu":
                nodes.append(helper.make_node("Relu", [conv_out], [name], name=name + "_relu"))
            elif act == "logistic":
                nodes.append(helper.make_node("Sigmoid", [conv_out], [name],
                                              name=name + "_logistic"))
            elif act != "linear":
                raise SystemExit("darknet2onnx: layer %d: activation %s" % (i, act))
            cur = (name, n, (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1)
        elif kind in ("maxpool", "max"):
            size, stride = ints(o, "size", 1), ints(o, "stride", 1)
            padding = ints(o, "padding", size - 1)
            # darknet reads from -padding/2 and treats the outside as -inf; ONNX's max-pool pads
            # are ignored values too, so the same window set.
            before, after = padding // 2, padding - padding // 2
            nodes.append(helper.make_node(
                "MaxPool", [src], [name], kernel_shape=[size, size], strides=[stride, stride],
                pads=[before, before, after, after], name=name + "_maxpool"))
            cur = (name, c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)
        elif kind == "route":
            idx = [int(v) for v in o["layers"].split(",")]
            idx = [v if v >= 0 else i + v for v in idx]
            ins = [shapes[v] for v in idx]
            if len({(s[2], s[3]) for s in ins}) != 1:
                raise SystemExit("darknet2onnx: layer %d: route of different sizes" % i)
            if len(ins) == 1:
                nodes.append(helper.make_node("Identity", [ins[0][0]], [name], name=name))
            else:
                nodes.append(helper.make_node("Concat", [s[0] for s in ins], [name], axis=1,
                                              name=name + "_route"))
            cur = (name, sum(s[1] for s in ins), ins[0][2], ins[0][3])
        elif kind == "upsample":
            stride = ints(o, "stride", 2)
            if float(o.get("scale", 1)) != 1 or stride < 1:
                raise SystemExit("darknet2onnx: layer %d: upsample scale/stride" % i)
            scales = const(name + "_scales", np.array([1, 1, stride, stride], np.float32))
            # darknet copies pixel (x / stride, y / stride): nearest, asymmetric, floor
            nodes.append(helper.make_node(
                "Resize", [src, "", scales], [name], mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                name=name + "_upsample"))
            cur = (name, c, h * stride, w * stride)
        elif kind in ("yolo", "region"):
            out = "head%d" % i
            nodes.append(helper.make_node("Identity", [src], [out], name=out))
            outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, c, h, w]))
            cur = (src, c, h, w)
        else:
            raise SystemExit("darknet2onnx: layer %d: [%s] is not supported" % (i, kind))
        shapes.append(cur)
    if not outputs:  # a network without a head: its last layer's output
        out = "output"
        nodes.append(helper.make_node("Identity", [cur[0]], [out], name=out))
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, list(cur[1:])))
    if wts.pos != wts.data.size:
        print("darknet2onnx: %d floats of the weights file unused" % (wts.data.size - wts.pos),
              file=sys.stderr)
    graph = helper.make_graph(
        nodes, "darknet", [helper.make_tensor_value_info(
            "input", TensorProto.FLOAT, [1, ints(netopts, "channels", 3),
                                         ints(netopts, "height", 0), ints(netopts, "width", 0)])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="framegate darknet2onnx")
    model.ir_version = 7  # opset 13's IR: any ONNX Runtime since 1.6 reads it
    onnx.checker.check_model(model)
    onnx.save(model, out_path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    convert(sys.argv[1], sys.argv[2], sys.argv[3])
