"""Record trainable parameters and MACs of timm 1.0's ImageNet models that `specs/imagenet/`
writes, at 224×224 and 1000 classes.

Run by hand (not in CI), from the repository root:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch timm
    /tmp/torchenv/bin/python benches/reference/timm_counts.py > benches/reference/imagenet_counts.tsv

MACs count convolutions (2-D, and ECA's 1-D) and linear layers only, per image (counts.py's `macs`).
"""
import os
import sys

import timm
import torch

sys.path.insert(0, os.path.dirname(__file__))
from counts import macs  # noqa: E402

# spec file (specs/imagenet/<spec>.net) -> timm model name
MODELS = {
    "resnet-50": "resnet50",
    "resnet-50-gn": "resnet50_gn",
    "convnext-atto": "convnext_atto",
    "resnet-50-d": "resnet50d",
    "se-resnext-50": "seresnext50_32x4d",
    "eca-resnet-50-d": "ecaresnet50d",
    "regnety-200mf": "regnety_002",
    "res2net-50-26w-4s": "res2net50_26w_4s",
}


print(f"spec\ttimm\tparams\tmacs\t# timm {timm.__version__}, torch {torch.__version__}")
for spec, name in MODELS.items():
    model = timm.create_model(name, pretrained=False, num_classes=1000)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{spec}\t{name}\t{params}\t{macs(model, 224)}")
