"""Record trainable parameters and MACs of timm 1.0's ImageNet models that `specs/imagenet/`
writes, at 224×224 and 1000 classes.

Run by hand (not in CI), from the repository root:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch timm
    /tmp/torchenv/bin/python benches/reference/timm_counts.py > benches/reference/imagenet_counts.tsv

MACs count convolutions (2-D, and ECA's 1-D) and linear layers only, per image, as counts.py does.
"""
import timm
import torch
import torch.nn as nn

# spec file (specs/imagenet/<spec>.net) -> timm model name
MODELS = {
    "resnet-50": "resnet50",
    "resnet-50-gn": "resnet50_gn",
    "convnext-atto": "convnext_atto",
    "resnet-50-d": "resnet50d",
    "se-resnext-50": "seresnext50_32x4d",
    "eca-resnet-50-d": "ecaresnet50d",
}


def macs(model, size):
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Conv1d):  # ECA's gate
            total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


print(f"spec\ttimm\tparams\tmacs\t# timm {timm.__version__}, torch {torch.__version__}")
for spec, name in MODELS.items():
    model = timm.create_model(name, pretrained=False, num_classes=1000)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{spec}\t{name}\t{params}\t{macs(model, 224)}")
