"""PyTorch side of `accuracy.sh`: trains the reference model of a shipped spec
(benches/reference/models.py) on CIFAR-10 image folders the way `resnetc train` does, and
prints one CSV row per epoch (`epoch,lr,train_loss,train_acc,test_loss,test_acc,seconds`).

The same recipe as resnetc's (recipes/*.yaml by family): SGD with momentum 0.9, dampening 0,
the family's weight decay and Nesterov flag, batch size, base lr 0.1, and the schedule stepped
per iteration (cosine over all iterations, or multistep at epoch boundaries); the papers'
augmentation (4-pixel zero pad + random 32x32 crop, horizontal flip) and per-channel
normalisation measured on the training images; He-normal (fan-out) convolutions, BatchNorm
weight 1 and bias 0, as the emitted code initialises them. Test accuracy in eval mode (running
statistics) after every epoch.

    python train.py resnet-20 --data DIR --epochs 15 --seed 1 --schedule cosine --threads 2
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
sys.path.insert(0, here)
from bench import RECIPES, family  # noqa: E402
from models import SPECS  # noqa: E402


def load_folder(root):
    """Every image of an ImageFolder tree as one uint8 tensor [N, 3, 32, 32] and its labels."""
    from PIL import Image
    import numpy as np

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    images, labels = [], []
    for label, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(root, c))):
            with Image.open(os.path.join(root, c, name)) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels)


def augment(x, generator):
    """Pad 4 with zeros (before normalisation), random 32x32 crop, random horizontal flip."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        img = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        out[i] = img.flip(-1) if flip[i] else img
    return out


def init(model):
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            bias = None if mod.bias is None else mod.bias.detach().clone()
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            if bias is not None:
                # Biases keep the reference's own initialisation (the gates' -6).
                mod.bias.data.copy_(bias)
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("--data", required=True, help="a folder with train/<class>/ and test/<class>/ images")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--schedule", choices=["cosine", "multistep", "constant"], default="cosine")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--bn-check",
        action="store_true",
        help="after training, print (on stderr) the test accuracy with batch statistics and after re-estimating the running statistics",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    spec = os.path.splitext(os.path.basename(args.spec))[0]
    weight_decay, nesterov, batch_size = RECIPES[family(spec)]
    train_x, train_y = load_folder(os.path.join(args.data, "train"))
    test_x, test_y = load_folder(os.path.join(args.data, "test"))
    scaled = train_x.float() / 255
    mean = scaled.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = scaled.std(dim=(0, 2, 3), unbiased=False).view(1, 3, 1, 1)
    del scaled

    def normalise(x):
        return (x.float() / 255 - mean) / std

    model = SPECS[spec](10)
    init(model)
    sgd = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, dampening=0, weight_decay=weight_decay, nesterov=nesterov
    )
    per_epoch = math.ceil(len(train_y) / batch_size)
    total = per_epoch * args.epochs

    def lr_at(iteration):
        epoch = iteration // per_epoch
        if args.schedule == "cosine":
            return 0.5 * args.lr * (1 + math.cos(math.pi * min(iteration / total, 1.0)))
        if args.schedule == "multistep":
            return args.lr * 0.1 ** sum(epoch >= m for m in (args.epochs // 2, args.epochs * 3 // 4))
        return args.lr

    print("epoch,lr,train_loss,train_acc,test_loss,test_acc,seconds", flush=True)
    iteration = 0
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        loss_sum, correct = 0.0, 0
        for b in range(per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = normalise(augment(train_x[idx], generator))
            lr = lr_at(iteration)
            for group in sgd.param_groups:
                group["lr"] = lr
            logits = model(x)
            loss = F.cross_entropy(logits, train_y[idx])
            sgd.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            iteration += 1
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == train_y[idx]).sum().item()
        model.eval()
        test_loss, test_correct = 0.0, 0
        with torch.inference_mode():
            for b in range(0, len(test_y), 256):
                logits = model(normalise(test_x[b : b + 256]))
                test_loss += F.cross_entropy(logits, test_y[b : b + 256], reduction="sum").item()
                test_correct += (logits.argmax(1) == test_y[b : b + 256]).sum().item()
        n, m = len(train_y), len(test_y)
        print(
            f"{epoch},{lr:.6f},{loss_sum / n:.4f},{correct / n:.4f},{test_loss / m:.4f},{test_correct / m:.4f},"
            f"{time.time() - start:.1f}",
            flush=True,
        )
    if args.bn_check:
        bn_check(model, normalise, train_x, test_x, test_y, generator)


def bn_check(model, normalise, train_x, test_x, test_y, generator):
    """What `runtime/examples/bn_check.rs` measures for resnetc, on the PyTorch model."""
    import copy

    def accuracy(net, train_mode):
        net.train(train_mode)
        order = torch.randperm(len(test_y), generator=generator)
        correct = 0
        with torch.no_grad():
            for b in range(0, len(order), 200):
                idx = order[b : b + 200]
                correct += (net(normalise(test_x[idx])).argmax(1) == test_y[idx]).sum().item()
        return 100 * correct / len(test_y)

    print(f"eval mode, stored statistics:      {accuracy(model, False):.2f}%", file=sys.stderr)
    print(f"batch statistics (batches of 200): {accuracy(copy.deepcopy(model), True):.2f}%", file=sys.stderr)
    net = copy.deepcopy(model).train()
    order = torch.randperm(len(train_x), generator=generator)
    with torch.no_grad():
        for i in range(40):
            idx = order[(i * 200) % len(order) :][:200]
            net(normalise(train_x[idx]))
    print(f"eval mode, re-estimated:           {accuracy(net, False):.2f}%", file=sys.stderr)


if __name__ == "__main__":
    main()
