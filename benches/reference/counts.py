"""Record trainable parameters and MACs of every reference model, for 10 and 100 classes.

Run by hand (not in CI), from the repository root:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python benches/reference/counts.py > benches/reference/counts.tsv

MACs count convolutions and linear layers only, per image, as PyTorch's counters do.
"""
import sys

import torch
import torch.nn as nn

sys.path.insert(0, __import__("os").path.dirname(__file__))
from models import SPECS  # noqa: E402


def macs(model):
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 32, 32))
    for h in handles:
        h.remove()
    return total


print("spec\tclasses\tparams\tmacs")
for name, make in SPECS.items():
    for classes in (10, 100):
        model = make(classes)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{name}\t{classes}\t{params}\t{macs(model)}", flush=True)
