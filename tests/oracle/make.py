"""Cross-framework oracle fixtures: PyTorch's numbers for one network of every family.

Run by hand (torch is not in CI); `cargo test -p resnetc-runtime --test oracle` checks resnetc
against what this writes:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch safetensors numpy timm
    /tmp/torchenv/bin/python tests/oracle/make.py          # rewrites tests/oracle/*.safetensors

For each case of `cases.tsv` it builds the PyTorch reference of `benches/reference/models.py` at a reduced
size (the same `--set` overrides the Rust test gives the spec), randomises the batch-norm
affine parameters and running statistics (so eval mode is not the identity on fresh
statistics), and saves, in one safetensors file:

- `param.<name>`: every tensor of the state dict (PyTorch names; `num_batches_tracked` left
  out), the metadata key `order` listing them in forward order, which is the order resnetc
  records its tensors in (`resnetc import --by-order` maps them the same way);
- `input` (8 images 3x32x32) and `target` (their classes);
- `eval_logits`: the logits in eval mode;
- `loss`: the mean cross-entropy of one forward pass in training mode (batch statistics),
- `grad.<name>`: the gradient of that loss for every parameter,
- `running.<name>`: the running statistics after that pass (momentum 0.1, unbiased variance),
- `step.<name>` (resnet-20 and wrn-16-4 only): every parameter after one step of the recipe's
  SGD (lr 0.1, momentum 0.9, weight decay 1e-4, 5e-4 for WRN, dampening 0) on those gradients.

It also writes `tiny.pth`, a checkpoint in the layout of bearpaw's training scripts, and
`tiny-expected.safetensors` (a batch and its eval-mode logits), for `resnetc import`'s tests.
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "benches", "reference"))
import models as m  # noqa: E402

# The PyTorch reference of each case of cases.tsv (which gives its spec and `--set`), and the
# weight decay of its recipe.
REFERENCES = {
    "resnet-20": (lambda: m.CifarResNet(8, 10), 1e-4),
    "resnet-20-a": (lambda: m.CifarResNet(8, 10, option="A"), 1e-4),
    "resnet-164": (lambda: m.CifarResNet(11, 10, block="bottleneck"), 1e-4),
    "preresnet-164": (lambda: m.PreResNet(11, 10, bottleneck=True), 1e-4),
    "wrn-16-4": (lambda: m.WideResNet(10, 1, 10), 5e-4),
    "resnext-29-8x16d": (lambda: m.CifarResNeXt(11, 4, 4, 10, widen_factor=1), 5e-4),
    "densenet-bc-100-12": (lambda: m.DenseNet(10, 12, 10, bottleneck=True, compression=0.5), 1e-4),
    "se-resnet-20": (lambda: m.CifarResNet(8, 10, block="se"), 1e-4),
    "exclusive-gating": (lambda: m.AblationResNet("exclusive_gate", 10, depth=8), 1e-4),
    "norms": (lambda: Norms(10), 1e-4),
    "res2net": (lambda: Res2Net(10), 1e-4),
    "factorised": (lambda: Factorised(10), 1e-4),
    "pyramidnet-110-48": (lambda: m.PyramidNet(8, 48, 10), 1e-4),
    "shortcuts": (lambda: Shortcuts(10), 1e-4),
}


class LayerNorm2d(torch.nn.LayerNorm):
    """Layer norm over the channels of each position (timm's `LayerNorm2d`, ConvNeXt's)."""

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerScale(torch.nn.Module):
    """A learned per-channel scale (CaiT's and ConvNeXt's layer scale)."""

    def __init__(self, dim, init):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.full((dim,), init))

    def forward(self, x):
        return x * self.gamma.view(1, -1, 1, 1)


class GnBasic(torch.nn.Module):
    """`gn_basic` of tests/cases/norms.net: a basic block with group norms, the second
    convolution dilated."""

    def __init__(self, cin, planes, stride=1, groups=4):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.gn1 = torch.nn.GroupNorm(groups, planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, padding=2, dilation=2, bias=False)
        self.gn2 = torch.nn.GroupNorm(groups, planes, eps=1e-3)
        self.shortcut = torch.nn.Identity()
        if stride != 1 or cin != planes:
            self.shortcut = torch.nn.Sequential(
                torch.nn.Conv2d(cin, planes, 1, stride, bias=False), torch.nn.GroupNorm(groups, planes)
            )

    def forward(self, x):
        out = self.gn2(self.conv2(F.relu(self.gn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ConvNextLike(torch.nn.Module):
    """`convnext_like`: ConvNeXt's block (7x7 depthwise, layer norm, 4x MLP with GELU, layer scale)."""

    def __init__(self, dim, ls=0.5):
        super().__init__()
        self.dw = torch.nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.fc1 = torch.nn.Conv2d(dim, 4 * dim, 1)
        self.fc2 = torch.nn.Conv2d(4 * dim, dim, 1)
        self.ls = LayerScale(dim, ls)

    def forward(self, x):
        return x + self.ls(self.fc2(F.gelu(self.fc1(self.norm(self.dw(x))))))


class Norms(torch.nn.Module):
    """tests/cases/norms.net: group norm, layer norm over channels, layer scale, dilation, ECA."""

    def __init__(self, classes):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.gn1 = torch.nn.GroupNorm(2, 8)
        self.block1 = GnBasic(8, 8)
        self.block2 = GnBasic(8, 16, stride=2)
        self.ln1 = LayerNorm2d(16)
        self.conv2 = torch.nn.Conv2d(16, 16, 2, 2)
        self.block3 = ConvNextLike(16)
        self.eca = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.ln2 = LayerNorm2d(16)
        self.fc = torch.nn.Linear(16, classes)
        # Affine parameters away from their 1/0 start, so that they are tested.
        with torch.no_grad():
            for mod in self.modules():
                if isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0.0, 0.1)

    def forward(self, x):
        x = F.relu(self.gn1(self.conv1(x)))
        x = self.block3(self.conv2(self.ln1(self.block2(self.block1(x)))))
        n, c = x.shape[:2]
        gate = self.eca(F.adaptive_avg_pool2d(x, 1).reshape(n, 1, c)).reshape(n, c, 1, 1)
        x = x * torch.sigmoid(gate)
        x = self.ln2(F.adaptive_avg_pool2d(x, 1))
        return self.fc(torch.flatten(x, 1))


class ShiftedShortcutUnit(torch.nn.Module):
    """One residual branch (`m.ShakeBranch`) plus Shake-Shake's shortcut as `m.ShakeBlock` writes it."""

    def __init__(self, cin, width, stride):
        super().__init__()
        self.a = m.ShakeBranch(cin, width, stride)
        self.p1, self.p2 = m.conv1x1(cin, width // 2, stride), m.conv1x1(cin, width // 2, stride)
        self.bn = torch.nn.BatchNorm2d(width)

    def forward(self, x):
        h = F.relu(x)
        shifted = F.pad(h, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.a(x) + self.bn(torch.cat([self.p1(h), self.p2(shifted)], 1))


class Shortcuts(torch.nn.Module):
    """tests/cases/shortcuts.net."""

    def __init__(self, classes):
        super().__init__()
        self.conv1, self.bn1 = m.conv3x3(3, 16), torch.nn.BatchNorm2d(16)
        self.u1, self.u2 = ShiftedShortcutUnit(16, 32, 2), ShiftedShortcutUnit(32, 48, 1)
        self.fc = torch.nn.Linear(48, classes)

    def forward(self, x):
        x = self.u2(self.u1(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1))


class Factorised(torch.nn.Module):
    """tests/cases/factorised.net: rectangular kernels, strides and padding."""

    def __init__(self, classes):
        super().__init__()
        bn = torch.nn.BatchNorm2d
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False), bn(16)
        self.f1, self.fbn1 = torch.nn.Conv2d(16, 16, (1, 7), padding=(0, 3), bias=False), bn(16)
        self.f2, self.fbn2 = torch.nn.Conv2d(16, 16, (7, 1), padding=(3, 0), bias=False), bn(16)
        self.conv2, self.bn2 = torch.nn.Conv2d(16, 24, (3, 1), stride=(2, 1), padding=(1, 0), bias=False), bn(24)
        self.conv3 = torch.nn.Conv2d(24, 24, (1, 3), padding=(0, 2), dilation=2)
        self.conv4, self.bn4 = torch.nn.Conv2d(24, 32, 3, stride=(1, 2), padding=1, bias=False), bn(32)
        self.fc = torch.nn.Linear(32, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.fbn2(self.f2(F.relu(self.fbn1(self.f1(x))))))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.conv3(x))
        x = F.relu(self.bn4(self.conv4(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Res2Net(torch.nn.Module):
    """tests/cases/res2net.net, from timm's own `Bottle2neck` (timm 1.0, `res2net50_26w_4s`'s
    block; `pip install timm`): a stride-1 projection block and a hierarchical one, then a
    strided pair; width 16 per 64 planes, four groups."""

    def __init__(self, classes):
        super().__init__()
        from timm.models.res2net import Bottle2neck

        def down(cin, cout, stride):
            return torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout)
            )

        def block(cin, planes, stride=1, downsample=None):
            return Bottle2neck(
                cin, planes, stride, downsample, base_width=16, scale=4, norm_layer=torch.nn.BatchNorm2d
            )

        self.conv1, self.bn1 = m.conv3x3(3, 16), torch.nn.BatchNorm2d(16)
        self.layer1 = torch.nn.Sequential(block(16, 8, 1, down(16, 32, 1)), block(32, 8))
        self.layer2 = torch.nn.Sequential(block(32, 16, 2, down(32, 64, 2)), block(64, 16))
        self.fc = torch.nn.Linear(64, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cases():
    with open(os.path.join(here, "cases.tsv")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, spec, overrides = line.rstrip("\n").split("\t")
                yield name, spec, overrides


# The optimizer step is the same code for every network: two cases check it (keeps the files small).
WITH_STEP = {"resnet-20", "wrn-16-4"}


def forward_order(model, x):
    """State-dict names in the order their modules first run."""
    seen = []
    hooks = [
        mod.register_forward_pre_hook(lambda mod, _inp: seen.append(mod) if mod not in seen else None)
        for mod in model.modules()
        if list(mod.parameters(recurse=False)) or list(mod.buffers(recurse=False))
    ]
    with torch.no_grad():
        model.eval()
        model(x)
    for h in hooks:
        h.remove()
    names = {id(mod): prefix for prefix, mod in model.named_modules()}
    order = []
    for mod in seen:
        prefix = names[id(mod)]
        for name, _ in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            if name != "num_batches_tracked":
                order.append(f"{prefix}.{name}" if prefix else name)
    return order


def randomise_batch_norms(model):
    """Affine parameters and running statistics away from their 1/0 start, so that eval mode
    and the running-statistics update are tested on values that matter."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.1)
                mod.running_mean.normal_(0.0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)


def f32_deviation(build, seed):
    """How far PyTorch's own f32 gradients are from its f64 ones for this draw (largest
    difference over largest magnitude, worst tensor): what f32 arithmetic can determine."""
    grads = {}
    for dtype in (torch.float64, torch.float32):
        torch.manual_seed(seed)
        model = build()
        randomise_batch_norms(model)
        model = model.to(dtype)
        x = torch.randn(8, 3, 32, 32).to(dtype)
        target = torch.randint(0, 10, (8,))
        model.train()
        F.cross_entropy(model(x), target).backward()
        grads[dtype] = {k: p.grad.double() for k, p in model.named_parameters()}
    ref, f32 = grads[torch.float64], grads[torch.float32]
    # A gradient that is zero in exact arithmetic (a batch norm's bias that another batch norm
    # normalises away, PyramidNet's) is rounding noise in f32: such a tensor (below 1e-9 of the
    # network's largest gradient) is measured against that largest gradient, as
    # runtime/tests/oracle.rs compares it.
    largest = max(r.abs().max().item() for r in ref.values())

    def scale(r):
        own = r.abs().max().item()
        return largest if own < 1e-9 * largest else max(own, 1e-12)

    return max(((f32[k] - ref[k]).abs().max() / scale(ref[k])).item() for k in ref)


# A draw is used only where PyTorch's f32 gradients are within this of its f64 ones: some draws
# put a batch norm's input so close to a ReLU's threshold that f32 rounding flips its mask
# (resnet-164's first draw: PyTorch f32 vs f64 1.8e-2), and no f32 implementation can then be
# held to the oracle's limits.
CONDITIONED = 1e-5


def make(name, spec, overrides, build, weight_decay):
    seed = sum(map(ord, name))
    for attempt in range(20):
        deviation = f32_deviation(build, seed + attempt)
        if deviation < CONDITIONED:
            seed += attempt
            break
    else:
        sys.exit(f"{name}: no well-conditioned draw in 20 seeds")
    torch.manual_seed(seed)
    model = build()
    randomise_batch_norms(model)
    # Drawn in f32 and computed in f64: the reference is exact for the f32 values stored.
    model = model.double()
    x = torch.randn(8, 3, 32, 32).double()
    target = torch.randint(0, 10, (8,))
    order = forward_order(model, x)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sorted(order) == sorted(state), f"{name}: modules that never ran: {set(state) - set(order)}"

    out = {f"param.{k}": v.clone() for k, v in state.items()}
    out["input"], out["target"] = x, target
    model.eval()
    with torch.no_grad():
        out["eval_logits"] = model(x)
    model.train()
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    out["loss"] = loss.detach().reshape(1)
    for k, p in model.named_parameters():
        out[f"grad.{k}"] = p.grad.clone()
    for k, b in model.named_buffers():
        if not k.endswith("num_batches_tracked"):
            out[f"running.{k}"] = b.clone()
    if name in WITH_STEP:
        sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay, dampening=0)
        sgd.step()
        for k, p in model.named_parameters():
            out[f"step.{k}"] = p.detach().clone()

    # Stored in f32 (resnetc's precision); the integer targets as i64.
    out = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in out.items()}
    meta = {
        "spec": spec,
        "set": overrides,
        "order": ",".join(order),
        "weight_decay": repr(weight_decay),
        "seed": str(seed),
        "pytorch_f32_deviation": f"{deviation:.2e}",
    }
    path = os.path.join(here, f"{name}.safetensors")
    save_file(out, path, metadata=meta)
    params = sum(p.numel() for p in model.parameters())
    print(f"{name:>20}: {params:>7} parameters, loss {loss.item():.6f}, seed {seed}, PyTorch f32 gradients within {deviation:.1e}, {os.path.getsize(path) / 1e6:.2f} MB")


class Tiny(torch.nn.Module):
    """The `tiny` network of tests/train_cli.rs (conv3x3(8) bn relu, one basic block, linear)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = m.conv3x3(3, 8), torch.nn.BatchNorm2d(8)
        self.block = m.BasicBlock(8, 8)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = self.block(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make_checkpoint():
    """`tiny.pth`: a training checkpoint as bearpaw's scripts write it (the state dict of a
    DataParallel model, `module.` names, under `state_dict`, beside other entries), for
    `resnetc import`'s tests; `tiny-expected.safetensors`: a batch and its eval-mode logits."""
    torch.manual_seed(3)
    model = Tiny()
    randomise_batch_norms(model)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "best_acc": 0.5, "state_dict": state}, os.path.join(here, "tiny.pth"))
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        logits = model.double()(x.double()).float()
    save_file({"input": x, "eval_logits": logits}, os.path.join(here, "tiny-expected.safetensors"))
    print(f"{'tiny':>20}: {os.path.getsize(os.path.join(here, 'tiny.pth'))} bytes")


if __name__ == "__main__":
    for name, spec, overrides in cases():
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            make(name, spec, overrides, *REFERENCES[name])
    if len(sys.argv) == 1 or "tiny" in sys.argv[1:]:
        make_checkpoint()
