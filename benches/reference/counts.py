"""Record trainable parameters and MACs of every reference model, for 10 and 100 classes.

Run by hand (not in CI), from the repository root:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python benches/reference/counts.py > benches/reference/counts.tsv

MACs count convolutions and linear layers only, per image, as PyTorch's counters do.
"""
import math
import sys

import torch
import torch.nn as nn

sys.path.insert(0, __import__("os").path.dirname(__file__))
from models import SPECS  # noqa: E402


def macs(model, size=32):
    """Multiply-accumulates of one `size`×`size` image: 2-D convolutions, 1-D ones (ECA's gate)
    and linear layers."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            k = math.prod(module.kernel_size)
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    layers = (nn.Conv1d, nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def main():
    print("spec\tclasses\tparams\tmacs")
    for name, make in SPECS.items():
        for classes in (10, 100):
            model = make(classes)
            params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(f"{name}\t{classes}\t{params}\t{macs(model)}", flush=True)


if __name__ == "__main__":
    main()
