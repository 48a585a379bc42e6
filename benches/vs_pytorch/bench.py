"""PyTorch side of `run.sh`: the same measurement `resnetc bench` makes, on the reference
model of a shipped spec (benches/reference/models.py, the models that fixed the parameter
counts).

A training step is forward, cross-entropy, backward and SGD with the spec family's recipe
(momentum 0.9, dampening 0, Nesterov and weight decay as in recipes/*.yaml), on random normal
images and fixed labels; an inference step is a forward pass in eval mode under
`torch.inference_mode()`. Warm-up steps first, then the median of the timed steps. Prints one
JSON object with the keys `resnetc bench --format json` prints.

    python bench.py resnet-20 --mode train --batch-size 128 --steps 20 --warmup 3 --threads 2

On a GPU (`--device cuda`) each step ends with `torch.cuda.synchronize()`, the peak of
`torch.cuda.max_memory_allocated()` is reported, and `--compile` runs the model through
`torch.compile` (its compilation happens in the warm-up steps).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from models import SPECS  # noqa: E402

# recipes/*.yaml, by family: (weight decay, nesterov, batch size).
RECIPES = {
    "resnet-cifar": (1e-4, False, 128),
    "wrn-cifar": (5e-4, True, 128),
    "resnext-cifar": (5e-4, False, 128),
    "densenet-cifar": (1e-4, True, 64),
}


def family(spec):
    # The same rule as resnetc_runtime::recipe::default_for.
    for prefix, recipe in (("wrn", "wrn-cifar"), ("resnext", "resnext-cifar"), ("densenet", "densenet-cifar")):
        if spec.startswith(prefix):
            return recipe
    return "resnet-cifar"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("spec", help="a shipped spec's name, e.g. resnet-20 (or its path)")
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (not the default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = p.parse_args()

    spec = os.path.basename(a.spec).removesuffix(".net")
    if spec not in SPECS:
        sys.exit(f"error: no PyTorch reference for {spec!r} (have: {', '.join(SPECS)})")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    weight_decay, nesterov, recipe_batch = RECIPES[family(spec)]
    n = a.batch_size or (recipe_batch if a.mode == "train" else 256)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format

    device = torch.device(a.device)
    gpu = device.type == "cuda"

    def sync():
        if gpu:
            torch.cuda.synchronize(device)

    model = SPECS[spec](a.classes).to(device=device, memory_format=fmt)
    images = torch.randn(n, 3, 32, 32).to(device=device, memory_format=fmt)
    labels = torch.tensor([(i * 7919 + a.seed) % a.classes for i in range(n)], device=device)
    run = torch.compile(model) if a.compile else model
    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    if a.mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.0,
                              nesterov=nesterov, weight_decay=weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        for i in range(a.warmup + a.steps):
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(run(images), labels)
            loss.backward()
            opt.step()
            sync()
            if i >= a.warmup:
                times.append(time.perf_counter() - start)
    else:
        model.eval()
        with torch.inference_mode():
            for i in range(a.warmup + a.steps):
                start = time.perf_counter()
                run(images)
                sync()
                if i >= a.warmup:
                    times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({
        "spec": spec,
        "mode": a.mode,
        "batch_size": n,
        "steps": a.steps,
        "images_per_sec": n / median,
        "median_step_seconds": median,
        "min_step_seconds": min(times),
        "max_step_seconds": max(times),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device_memory_peak_bytes": torch.cuda.max_memory_allocated(device) if gpu else None,
        "device": torch.cuda.get_device_name(device) if gpu else "cpu",
        "compiled": a.compile,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
