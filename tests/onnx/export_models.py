#!/usr/bin/python3
"""Exports torchvision networks to ONNX for the import tests and the bench, each with a count of
its MACs and parameters made independently of npusim, from the PyTorch modules.

    tests/onnx/export_models.py OUT_DIR [NAME ...]     (default: every network below)

Writes OUT_DIR/NAME.onnx and OUT_DIR/NAME.json ({"macs", "params", "input"}) per network. Files
newer than this script are kept: OUT_DIR (in the build tree) is a cache. Weights are random
(seeded): the counts do not depend on them. Exit status 77 when torch or torchvision is missing.

The counts:
- MACs: forward hooks on Conv2d (output elements x input channels per group x kernel area) and
  Linear (output elements x input features), and, for nn.MultiheadAttention, whose projections
  run as functions and so fire no hooks, the analytic count of a self-attention over T tokens
  of width D: T.D.3D (in projection) + 2.T.T.D (Q.K^T and A.V) + T.D.D (out projection).
- Parameters: every parameter of the module, with batch norm folded as an ONNX export folds it:
  a BatchNorm2d right after a convolution has its scale and bias (2 C) folded away, and the
  convolution gains a bias (C) if it had none; any other BatchNorm2d (DenseNet's, before its
  convolutions) keeps its scale and bias (docs/models.md, "Parameters").
"""
import json
import os
import sys

try:
    import torch
    import torchvision
    from torchvision.models.vision_transformer import VisionTransformer
except ImportError as e:
    print(f"export_models: torch or torchvision is missing ({e}); scripts/setup.sh installs python3-torch "
          "and python3-torchvision", file=sys.stderr)
    sys.exit(77)


def small_vit():
    return VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=4, hidden_dim=128, mlp_dim=256,
                             num_classes=10)


# name: (constructor, input height/width, opset, dynamic batch)
NETWORKS = {
    "resnet18": (lambda: torchvision.models.resnet18(), 224, 17, False),
    "resnet50": (lambda: torchvision.models.resnet50(), 224, 13, False),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(), 224, 17, False),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(), 224, 17, False),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(), 224, 17, False),
    "densenet121": (lambda: torchvision.models.densenet121(), 224, 17, False),
    "vit_small": (small_vit, 64, 17, True),
}


def count(model, size):
    macs = 0
    folded_bias = 0
    conv_outputs = {}

    def conv_hook(module, inputs, output):
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        conv_outputs[id(output)] = (module, output)  # the tensor kept alive, so its id is not reused

    def linear_hook(module, inputs, output):
        nonlocal macs
        macs += output.numel() * module.in_features

    def attention_hook(module, inputs, output):
        nonlocal macs
        attended = output[0]  # torchvision passes the query by keyword, which hooks do not see
        tokens = attended.shape[1] if module.batch_first else attended.shape[0]
        d = module.embed_dim
        macs += tokens * d * 3 * d + 2 * tokens * tokens * d + tokens * d * d

    folded = []

    def norm_hook(module, inputs):
        nonlocal folded_bias
        conv, _ = conv_outputs.get(id(inputs[0]), (None, None))
        if conv is not None:
            folded.append(module)
            if conv.bias is None:
                folded_bias += module.num_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear_hook)
        elif isinstance(m, torch.nn.MultiheadAttention):
            m.register_forward_hook(attention_hook)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_pre_hook(norm_hook)
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    params = sum(p.numel() for p in model.parameters())
    params -= sum(m.weight.numel() + m.bias.numel() for m in folded)
    return macs, params + folded_bias


def export(name, out_dir):
    onnx_file, json_file = os.path.join(out_dir, name + ".onnx"), os.path.join(out_dir, name + ".json")
    script_time = os.path.getmtime(os.path.abspath(__file__))
    if all(os.path.exists(f) and os.path.getmtime(f) > script_time for f in (onnx_file, json_file)):
        return False
    make, size, opset, dynamic = NETWORKS[name]
    torch.manual_seed(0)
    model = make().eval()
    macs, params = count(model, size)
    example = torch.randn(1, 3, size, size)
    partial = onnx_file + ".partial"
    # Not under no_grad: there nn.MultiheadAttention takes a fused fast path that has no ONNX form.
    torch.onnx.export(model, example, partial, opset_version=opset, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None)
    os.replace(partial, onnx_file)
    with open(json_file + ".partial", "w") as f:
        json.dump({"macs": macs, "params": params, "input": [1, 3, size, size]}, f)
    os.replace(json_file + ".partial", json_file)
    return True


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    names = sys.argv[2:] or list(NETWORKS)
    for name in names:
        if name not in NETWORKS:
            sys.exit(f"export_models: {name}: allowed {', '.join(NETWORKS)}")
    os.makedirs(out_dir, exist_ok=True)
    import warnings
    warnings.filterwarnings("ignore")
    for name in names:
        print(f"{name}: {'exported' if export(name, out_dir) else 'cached'}", flush=True)


if __name__ == "__main__":
    main()
