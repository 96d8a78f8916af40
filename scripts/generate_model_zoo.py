#!/usr/bin/env python3
"""Writes the model zoo, configs/models/*.yaml, from the published architectures.

Run it after changing an architecture or the exit rules; the YAML files are committed and are
what npusim reads. Layer shapes follow the reference implementations named in each network's
description. Exits: six early exits at the block boundaries nearest to 15, 30, 45, 60, 75 and
90 % of the backbone's MACs (the placement of SDN, Kaya et al. 2019, and SPINN, Laskaridis et
al. 2020), each a global average pool and a fully connected classifier, plus the final exit.
Exit probabilities are assumptions (see docs/models.md).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "configs", "models")


def out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


class Net:
    def __init__(self, name, description, input_hwc, classes):
        self.name, self.description, self.input, self.classes = name, description, input_hwc, classes
        self.layers = []  # dicts in YAML order
        self.shape = {}  # name -> (h, w, c)
        self.macs = {}
        self.cuts = []  # layers after which every path has converged, in order
        self.last = None

    def _add(self, layer, shape, macs):
        self.layers.append(layer)
        self.shape[layer["name"]] = shape
        self.macs[layer["name"]] = macs
        self.last = layer["name"]
        return layer["name"]

    def _in(self, inputs):
        if inputs is None:
            return [self.last] if self.last else ["input"]
        return inputs

    def _shape_of(self, name):
        return self.input if name == "input" else self.shape[name]

    def conv(self, name, out, kernel, stride=1, padding=None, inputs=None, groups=1, bias=False):
        kh, kw = kernel if isinstance(kernel, tuple) else (kernel, kernel)
        if padding is None:
            padding = (kh // 2, kw // 2)
        ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
        src = self._in(inputs)
        h, w, c = self._shape_of(src[0])
        oh, ow = out_size(h, kh, stride, ph), out_size(w, kw, stride, pw)
        layer = {"name": name, "type": "conv", "out_channels": out}
        if inputs is not None:
            layer["inputs"] = src
        layer["kernel"] = kh if kh == kw else [kh, kw]
        if stride != 1:
            layer["stride"] = stride
        if (ph, pw) != (0, 0):
            layer["padding"] = ph if ph == pw else [ph, pw]
        if groups != 1:
            layer["groups"] = groups
        if bias:
            layer["bias"] = True
        return self._add(layer, (oh, ow, out), oh * ow * kh * kw * (c // groups) * out)

    def pool(self, name, kind, kernel, stride, padding=0, inputs=None):
        src = self._in(inputs)
        h, w, c = self._shape_of(src[0])
        layer = {"name": name, "type": kind}
        if inputs is not None:
            layer["inputs"] = src
        layer["kernel"] = kernel
        if stride != 1:
            layer["stride"] = stride
        if padding:
            layer["padding"] = padding
        return self._add(layer, (out_size(h, kernel, stride, padding), out_size(w, kernel, stride, padding), c), 0)

    def gap(self, name, inputs=None):
        src = self._in(inputs)
        layer = {"name": name, "type": "global_avgpool"}
        if inputs is not None:
            layer["inputs"] = src
        return self._add(layer, (1, 1, self._shape_of(src[0])[2]), 0)

    def fc(self, name, out, inputs=None, bias=True):
        src = self._in(inputs)
        h, w, c = self._shape_of(src[0])
        layer = {"name": name, "type": "fc", "out_channels": out}
        if inputs is not None:
            layer["inputs"] = src
        if bias:
            layer["bias"] = True
        return self._add(layer, (1, 1, out), h * w * c * out)

    def add(self, name, inputs):
        return self._add({"name": name, "type": "add", "inputs": inputs}, self._shape_of(inputs[0]), 0)

    def concat(self, name, inputs):
        h, w, _ = self._shape_of(inputs[0])
        c = sum(self._shape_of(i)[2] for i in inputs)
        return self._add({"name": name, "type": "concat", "inputs": inputs}, (h, w, c), 0)

    def cut(self):
        self.cuts.append(self.last)

    def write(self, probabilities, sources):
        total = sum(self.macs.values())
        running, cumulative = 0, {}
        for layer in self.layers:
            running += self.macs[layer["name"]]
            cumulative[layer["name"]] = running
        exits = []
        for fraction in (0.15, 0.30, 0.45, 0.60, 0.75, 0.90):
            best = min(self.cuts, key=lambda n: abs(cumulative[n] / total - fraction))
            if best not in [e[0] for e in exits]:
                exits.append((best, fraction))
        assert len(exits) + 1 == len(probabilities), (self.name, len(exits))
        path = os.path.join(OUT, self.name + ".yaml")
        with open(path, "w") as f:
            f.write("# Generated by scripts/generate_model_zoo.py; edit the script, not this file.\n")
            for line in sources:
                f.write("# " + line + "\n")
            f.write("network:\n")
            f.write("  name: %s\n" % self.name)
            f.write("  description: \"%s\"\n" % self.description)
            h, w, c = self.input
            f.write("  input: {height: %d, width: %d, channels: %d}\n" % (h, w, c))
            f.write("  layers:\n")
            for layer in self.layers:
                f.write("    - " + flow(layer) + "\n")
            f.write("  exits:\n")
            for i, (after, fraction) in enumerate(exits):
                share = cumulative[after] / total
                f.write("    # exit %d: %.0f%% of the backbone's MACs (target %.0f%%)\n" % (i + 1, 100 * share, 100 * fraction))
                f.write("    - name: exit%d\n" % (i + 1))
                f.write("      after: %s\n" % after)
                f.write("      probability: %s\n" % probabilities[i])
                f.write("      classifier:\n")
                f.write("        - {name: exit%d.pool, type: global_avgpool}\n" % (i + 1))
                f.write("        - {name: exit%d.fc, type: fc, out_channels: %d, bias: true}\n" % (i + 1, self.classes))
            f.write("    - name: final\n")
            f.write("      after: %s\n" % self.last)
            f.write("      probability: %s\n" % probabilities[-1])
        print("%-14s %5d layers  %8.1f MMAC backbone" % (self.name, len(self.layers), total / 1e6))


def flow(layer):
    parts = []
    for key, value in layer.items():
        if isinstance(value, list):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        elif value is True:
            value = "true"
        parts.append("%s: %s" % (key, value))
    return "{" + ", ".join(parts) + "}"


def resnet56():
    net = Net("resnet56", "ResNet-56 for CIFAR-100 (He et al. 2016), 32x32 input; 1x1 projection shortcuts as in SDN's code",
              (32, 32, 3), 100)
    net.conv("conv1", 16, 3)
    net.cut()
    channels = 16
    for stage, width in enumerate((16, 32, 64), start=1):
        for block in range(1, 10):
            stride = 2 if stage > 1 and block == 1 else 1
            p = "stage%d.block%d" % (stage, block)
            entry = net.last
            net.conv(p + ".conv1", width, 3, stride)
            net.conv(p + ".conv2", width, 3)
            shortcut = entry
            if stride != 1 or channels != width:
                shortcut = net.conv(p + ".shortcut", width, 1, stride, 0, inputs=[entry])
            net.add(p + ".add", [p + ".conv2", shortcut])
            net.cut()
            channels = width
    net.gap("avgpool")
    net.fc("fc", 100)
    net.write([0.06, 0.10, 0.14, 0.16, 0.14, 0.12, 0.28],
              ["Shapes: He et al., Deep Residual Learning, CVPR 2016, section 4.2 (6n+2, n=9).",
               "Exits: SDN (Kaya et al., ICML 2019) placement; probabilities are assumptions."])


def resnet50():
    net = Net("resnet50", "ResNet-50 for ImageNet (He et al. 2016; torchvision v1.5: stride on the 3x3), 224x224 input",
              (224, 224, 3), 1000)
    net.conv("conv1", 64, 7, 2, 3)
    net.pool("maxpool", "maxpool", 3, 2, 1)
    net.cut()
    channels = 64
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        for block in range(1, blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            p = "layer%d.block%d" % (stage, block)
            entry = net.last
            net.conv(p + ".conv1", width, 1, 1, 0)
            net.conv(p + ".conv2", width, 3, stride)
            net.conv(p + ".conv3", width * 4, 1, 1, 0)
            shortcut = entry
            if block == 1:
                shortcut = net.conv(p + ".downsample", width * 4, 1, stride, 0, inputs=[entry])
            net.add(p + ".add", [p + ".conv3", shortcut])
            net.cut()
            channels = width * 4
    net.gap("avgpool")
    net.fc("fc", 1000)
    net.write([0.04, 0.08, 0.12, 0.16, 0.16, 0.12, 0.32],
              ["Shapes: He et al. 2016, table 1; torchvision resnet50. 4.1 GMAC, 25.6 M parameters.",
               "Exits: SPINN/SDN placement by MACs; probabilities are assumptions."])


def mobilenetv2():
    net = Net("mobilenetv2", "MobileNetV2 1.0 for ImageNet (Sandler et al. 2018), 224x224 input, depthwise 3x3 blocks",
              (224, 224, 3), 1000)
    net.conv("conv1", 32, 3, 2, 1)
    channels = 32
    index = 0
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            index += 1
            stride = s if i == 0 else 1
            p = "block%d" % index
            entry = net.last
            hidden = channels * t
            if t != 1:
                net.conv(p + ".expand", hidden, 1, 1, 0)
            net.conv(p + ".depthwise", hidden, 3, stride, 1, groups=hidden)
            net.conv(p + ".project", c, 1, 1, 0)
            if stride == 1 and channels == c:
                net.add(p + ".add", [p + ".project", entry])
            net.cut()
            channels = c
    net.conv("conv_last", 1280, 1, 1, 0)
    net.gap("avgpool")
    net.fc("fc", 1000)
    net.write([0.04, 0.08, 0.12, 0.16, 0.16, 0.12, 0.32],
              ["Shapes: Sandler et al., MobileNetV2, CVPR 2018, table 2. About 300 MMAC, 3.4 M parameters.",
               "Exits: SPINN/SDN placement by MACs; probabilities are assumptions."])


def vgg16():
    net = Net("vgg16", "VGG-16 (configuration D) for ImageNet (Simonyan and Zisserman 2015), 224x224 input",
              (224, 224, 3), 1000)
    index = 0
    for stage, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, convs + 1):
            index += 1
            net.conv("conv%d_%d" % (stage, i), width, 3, bias=True)
            net.cut()
        net.pool("pool%d" % stage, "maxpool", 2, 2)
        net.cut()
    net.fc("fc6", 4096)
    net.fc("fc7", 4096)
    net.fc("fc8", 1000)
    net.write([0.03, 0.07, 0.12, 0.16, 0.17, 0.13, 0.32],
              ["Shapes: Simonyan and Zisserman, ICLR 2015, configuration D. 15.5 GMAC, 138 M parameters.",
               "Exits: SDN placement by MACs; probabilities are assumptions."])


def inception_v3():
    net = Net("inception_v3", "Inception-v3 for ImageNet (Szegedy et al. 2016; torchvision, no auxiliary head), 299x299 input",
              (299, 299, 3), 1000)
    net.conv("Conv2d_1a", 32, 3, 2, 0)
    net.conv("Conv2d_2a", 32, 3, 1, 0)
    net.conv("Conv2d_2b", 64, 3, 1, 1)
    net.pool("maxpool1", "maxpool", 3, 2)
    net.conv("Conv2d_3b", 80, 1, 1, 0)
    net.conv("Conv2d_4a", 192, 3, 1, 0)
    net.pool("maxpool2", "maxpool", 3, 2)
    net.cut()

    def inception_a(p, pool_features):
        x = net.last
        b1 = net.conv(p + ".b1x1", 64, 1, 1, 0, inputs=[x])
        net.conv(p + ".b5x5_1", 48, 1, 1, 0, inputs=[x])
        b5 = net.conv(p + ".b5x5_2", 64, 5, 1, 2)
        net.conv(p + ".b3x3dbl_1", 64, 1, 1, 0, inputs=[x])
        net.conv(p + ".b3x3dbl_2", 96, 3, 1, 1)
        b3 = net.conv(p + ".b3x3dbl_3", 96, 3, 1, 1)
        net.pool(p + ".pool", "avgpool", 3, 1, 1, inputs=[x])
        bp = net.conv(p + ".pool_proj", pool_features, 1, 1, 0)
        net.concat(p + ".concat", [b1, b5, b3, bp])
        net.cut()

    def inception_b(p):
        x = net.last
        b3 = net.conv(p + ".b3x3", 384, 3, 2, 0, inputs=[x])
        net.conv(p + ".b3x3dbl_1", 64, 1, 1, 0, inputs=[x])
        net.conv(p + ".b3x3dbl_2", 96, 3, 1, 1)
        bd = net.conv(p + ".b3x3dbl_3", 96, 3, 2, 0)
        bp = net.pool(p + ".pool", "maxpool", 3, 2, inputs=[x])
        net.concat(p + ".concat", [b3, bd, bp])
        net.cut()

    def inception_c(p, c7):
        x = net.last
        b1 = net.conv(p + ".b1x1", 192, 1, 1, 0, inputs=[x])
        net.conv(p + ".b7x7_1", c7, 1, 1, 0, inputs=[x])
        net.conv(p + ".b7x7_2", c7, (1, 7), 1, (0, 3))
        b7 = net.conv(p + ".b7x7_3", 192, (7, 1), 1, (3, 0))
        net.conv(p + ".b7x7dbl_1", c7, 1, 1, 0, inputs=[x])
        net.conv(p + ".b7x7dbl_2", c7, (7, 1), 1, (3, 0))
        net.conv(p + ".b7x7dbl_3", c7, (1, 7), 1, (0, 3))
        net.conv(p + ".b7x7dbl_4", c7, (7, 1), 1, (3, 0))
        bd = net.conv(p + ".b7x7dbl_5", 192, (1, 7), 1, (0, 3))
        net.pool(p + ".pool", "avgpool", 3, 1, 1, inputs=[x])
        bp = net.conv(p + ".pool_proj", 192, 1, 1, 0)
        net.concat(p + ".concat", [b1, b7, bd, bp])
        net.cut()

    def inception_d(p):
        x = net.last
        net.conv(p + ".b3x3_1", 192, 1, 1, 0, inputs=[x])
        b3 = net.conv(p + ".b3x3_2", 320, 3, 2, 0)
        net.conv(p + ".b7x7x3_1", 192, 1, 1, 0, inputs=[x])
        net.conv(p + ".b7x7x3_2", 192, (1, 7), 1, (0, 3))
        net.conv(p + ".b7x7x3_3", 192, (7, 1), 1, (3, 0))
        b7 = net.conv(p + ".b7x7x3_4", 192, 3, 2, 0)
        bp = net.pool(p + ".pool", "maxpool", 3, 2, inputs=[x])
        net.concat(p + ".concat", [b3, b7, bp])
        net.cut()

    def inception_e(p):
        x = net.last
        b1 = net.conv(p + ".b1x1", 320, 1, 1, 0, inputs=[x])
        s = net.conv(p + ".b3x3_1", 384, 1, 1, 0, inputs=[x])
        a = net.conv(p + ".b3x3_2a", 384, (1, 3), 1, (0, 1), inputs=[s])
        b = net.conv(p + ".b3x3_2b", 384, (3, 1), 1, (1, 0), inputs=[s])
        b3 = net.concat(p + ".b3x3", [a, b])
        net.conv(p + ".b3x3dbl_1", 448, 1, 1, 0, inputs=[x])
        d = net.conv(p + ".b3x3dbl_2", 384, 3, 1, 1)
        a = net.conv(p + ".b3x3dbl_3a", 384, (1, 3), 1, (0, 1), inputs=[d])
        b = net.conv(p + ".b3x3dbl_3b", 384, (3, 1), 1, (1, 0), inputs=[d])
        bd = net.concat(p + ".b3x3dbl", [a, b])
        net.pool(p + ".pool", "avgpool", 3, 1, 1, inputs=[x])
        bp = net.conv(p + ".pool_proj", 192, 1, 1, 0)
        net.concat(p + ".concat", [b1, b3, bd, bp])
        net.cut()

    inception_a("Mixed_5b", 32)
    inception_a("Mixed_5c", 64)
    inception_a("Mixed_5d", 64)
    inception_b("Mixed_6a")
    inception_c("Mixed_6b", 128)
    inception_c("Mixed_6c", 160)
    inception_c("Mixed_6d", 160)
    inception_c("Mixed_6e", 192)
    inception_d("Mixed_7a")
    inception_e("Mixed_7b")
    inception_e("Mixed_7c")
    net.gap("avgpool")
    net.fc("fc", 1000)
    net.write([0.04, 0.08, 0.12, 0.16, 0.16, 0.12, 0.32],
              ["Shapes: Szegedy et al., Rethinking the Inception Architecture, CVPR 2016; torchvision inception_v3.",
               "5.7 GMAC, 23.8 M parameters without the auxiliary head.",
               "Exits: SPINN/SDN placement by MACs at module boundaries; probabilities are assumptions."])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    resnet56()
    resnet50()
    mobilenetv2()
    vgg16()
    inception_v3()
    sys.exit(0)
