"""PyTorch reference implementations of every shipped spec, written from the papers.

They follow the widely used CIFAR reproductions (bearpaw/pytorch-classification for
ResNet, pre-activation ResNet, ResNeXt and DenseNet; xternalz/WideResNet-pytorch for
WRN). `counts.py` runs them to record the trainable-parameter and MAC counts that the
compiler's counts are tested against; `benches/vs_pytorch` reuses the models.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(cin, cout, stride=1, groups=1, bias=False):
    return nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=bias)


def conv1x1(cin, cout, stride=1, bias=False):
    return nn.Conv2d(cin, cout, 1, stride, 0, bias=bias)


# --- ResNet v1 (He et al. 2015) -------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1, option="B"):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.option = option
        self.shortcut = None
        self.pad = None
        if stride != 1 or cin != planes:
            if option == "A":
                lo = (planes - cin) // 2
                self.pad = (stride, lo, planes - cin - lo)
            else:
                self.shortcut = nn.Sequential(conv1x1(cin, planes, stride), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            x = self.shortcut(x)
        elif self.pad is not None:
            s, lo, hi = self.pad
            x = F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, lo, hi))
        return F.relu(out + x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        out = planes * 4
        self.conv1, self.bn1 = conv1x1(cin, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, out), nn.BatchNorm2d(out)
        self.shortcut = None
        if stride != 1 or cin != out:
            self.shortcut = nn.Sequential(conv1x1(cin, out, stride), nn.BatchNorm2d(out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class SEBasicBlock(BasicBlock):
    def __init__(self, cin, planes, stride=1, reduction=16):
        super().__init__(cin, planes, stride)
        hidden = max(planes // reduction, 1)
        self.fc1 = nn.Conv2d(planes, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, planes, 1, bias=True)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(out, 1)))))
        out = out * gate
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class CifarResNet(nn.Module):
    def __init__(self, depth, classes, block="basic", option="B"):
        super().__init__()
        if block == "bottleneck":
            n, make, exp = (depth - 2) // 9, Bottleneck, 4
        else:
            n, exp = (depth - 2) // 6, 1
            make = {"basic": lambda c, p, s: BasicBlock(c, p, s, option), "se": SEBasicBlock}[block]
        self.conv1, self.bn1 = conv3x3(3, 16), nn.BatchNorm2d(16)
        layers, cin = [], 16
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(n):
                layers.append(make(cin, planes, stride if i == 0 else 1))
                cin = planes * exp
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- Pre-activation ResNet (He et al. 2016) ---------------------------------------

class PreactBasic(nn.Module):
    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv3x3(cin, planes, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), conv3x3(planes, planes)
        self.shortcut = conv1x1(cin, planes, stride) if stride != 1 or cin != planes else None

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (self.shortcut(x) if self.shortcut is not None else x)


class PreactBottleneck(nn.Module):
    def __init__(self, cin, planes, stride=1):
        super().__init__()
        out = planes * 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv1x1(cin, planes)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), conv3x3(planes, planes, stride)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), conv1x1(planes, out)
        self.shortcut = conv1x1(cin, out, stride) if stride != 1 or cin != out else None

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (self.shortcut(x) if self.shortcut is not None else x)


class PreResNet(nn.Module):
    def __init__(self, depth, classes, bottleneck):
        super().__init__()
        n = (depth - 2) // (9 if bottleneck else 6)
        make, exp = (PreactBottleneck, 4) if bottleneck else (PreactBasic, 1)
        self.conv1 = conv3x3(3, 16)
        layers, cin = [], 16
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(n):
                layers.append(make(cin, planes, stride if i == 0 else 1))
                cin = planes * exp
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- Wide ResNet (Zagoruyko & Komodakis 2016), as xternalz/WideResNet-pytorch ------

class WideBasic(nn.Module):
    def __init__(self, cin, cout, stride, drop):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv3x3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), conv3x3(cout, cout)
        self.drop = drop
        self.shortcut = conv1x1(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = F.dropout(F.relu(self.bn2(out)), self.drop, self.training)
        return self.conv2(out) + (self.shortcut(x) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    def __init__(self, depth, k, classes, drop=0.0):
        super().__init__()
        n = (depth - 4) // 6
        self.conv1 = conv3x3(3, 16)
        layers, cin = [], 16
        for width, stride in [(16 * k, 1), (32 * k, 2), (64 * k, 2)]:
            for i in range(n):
                layers.append(WideBasic(cin, width, stride if i == 0 else 1, drop))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- ResNeXt (Xie et al. 2017), CIFAR form ------------------------------------------

class ResNeXtBottleneck(nn.Module):
    def __init__(self, cin, cout, stride, cardinality, base_width, widen_factor):
        super().__init__()
        d = cardinality * (base_width * cout // (widen_factor * 64))
        self.conv_reduce, self.bn_reduce = conv1x1(cin, d), nn.BatchNorm2d(d)
        self.conv_conv, self.bn = conv3x3(d, d, stride, groups=cardinality), nn.BatchNorm2d(d)
        self.conv_expand, self.bn_expand = conv1x1(d, cout), nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn(self.conv_conv(out)))
        out = self.bn_expand(self.conv_expand(out))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class CifarResNeXt(nn.Module):
    def __init__(self, depth, cardinality, base_width, classes, widen_factor=4):
        super().__init__()
        n = (depth - 2) // 9
        self.conv1, self.bn1 = conv3x3(3, 64), nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in [(64 * widen_factor, 1), (128 * widen_factor, 2), (256 * widen_factor, 2)]:
            for i in range(n):
                layers.append(ResNeXtBottleneck(cin, cout, stride if i == 0 else 1, cardinality, base_width, widen_factor))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- DenseNet (Huang et al. 2017), as bearpaw's densenet.py ---------------------------

class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bottleneck):
        super().__init__()
        if bottleneck:
            self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), conv1x1(cin, 4 * growth))
            cin = 4 * growth
        else:
            self.pre = nn.Identity()
        self.bn, self.conv = nn.BatchNorm2d(cin), conv3x3(cin, growth)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(self.pre(x))))], 1)


class DenseNet(nn.Module):
    def __init__(self, depth, growth, classes, bottleneck, compression):
        super().__init__()
        n = (depth - 4) // (6 if bottleneck else 3)
        c = 2 * growth
        layers = [conv3x3(3, c)]
        for stage in range(3):
            for _ in range(n):
                layers.append(DenseLayer(c, growth, bottleneck))
                c += growth
            if stage < 2:
                out = int(math.floor(c * compression))
                layers += [nn.BatchNorm2d(c), nn.ReLU(), conv1x1(c, out), nn.AvgPool2d(2)]
                c = out
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- Identity-mapping ablations (He et al. 2016, Tables 1 and 2) -----------------------

class PyramidBasic(nn.Module):
    """PyramidNet's basic unit (Han et al. 2017, after dyhan0920/PyramidNet-PyTorch): BN-conv-BN-
    ReLU-conv-BN, no ReLU after the sum; the shortcut averages 2x2 where the unit downsamples and
    is zero-padded up to the unit's (wider) output."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn3 = nn.BatchNorm2d(planes)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride != 1 else None

    def forward(self, x):
        out = self.bn3(self.conv2(F.relu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = self.pool(x) if self.pool is not None else x
        pad = out.shape[1] - shortcut.shape[1]
        if pad > 0:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, pad))
        return out + shortcut


class PyramidNet(nn.Module):
    """Additive PyramidNet for CIFAR: the width grows by alpha / (3n) per unit, rounded."""

    def __init__(self, depth, alpha, classes):
        super().__init__()
        n = (depth - 2) // 6
        addrate = alpha / (3 * n)
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        dim, cin, layers = 16.0, 16, []
        for stage in range(3):
            for i in range(n):
                dim += addrate
                planes = int(round(dim))
                layers.append(PyramidBasic(cin, planes, 2 if stage > 0 and i == 0 else 1))
                cin = planes
        self.layers = nn.Sequential(*layers)
        self.bn_final = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(self.bn1(self.conv1(x)))
        x = F.relu(self.bn_final(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ShakeBranch(nn.Sequential):
    def __init__(self, cin, width, stride):
        super().__init__(
            nn.ReLU(), conv3x3(cin, width, stride), nn.BatchNorm2d(width),
            nn.ReLU(), conv3x3(width, width), nn.BatchNorm2d(width),
        )


class ShakeBlock(nn.Module):
    """Shake-Shake's unit (Gastaldi 2017, after xgastaldi/shake-shake): two residual branches
    mixed by a per-sample random coefficient, a shortcut of two half-width 1x1 convolutions on
    the subsampled input (the reference shifts the second path by one pixel), concatenated, BN."""

    def __init__(self, cin, width, stride):
        super().__init__()
        self.a, self.b = ShakeBranch(cin, width, stride), ShakeBranch(cin, width, stride)
        self.shortcut = None
        if stride != 1 or cin != width:
            self.p1, self.p2 = conv1x1(cin, width // 2, stride), conv1x1(cin, width // 2, stride)
            self.bn = nn.BatchNorm2d(width)
            self.shortcut = True
        self.stride = stride

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        mix = 0.5 * (a + b)  # eval mode; training draws the coefficient per sample
        if self.shortcut is None:
            return mix + x
        h = F.relu(x)
        shifted = F.pad(h, (0, 1, 0, 1))[:, :, 1:, 1:]
        return mix + self.bn(torch.cat([self.p1(h), self.p2(shifted)], 1))


class ShakeShake(nn.Module):
    def __init__(self, depth, width, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1, self.bn1 = conv3x3(3, 16), nn.BatchNorm2d(16)
        layers, cin = [], 16
        for stage, w in enumerate([width, 2 * width, 4 * width]):
            for i in range(n):
                layers.append(ShakeBlock(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.layers(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class AblationUnit(nn.Module):
    """A ResNet-110 unit of the "Identity Mappings" ablations, by variant.

    Shortcut variants (Table 1): original, scaling, exclusive_gate, shortcut_gate, conv, dropout.
    Activation placements (Table 2): bn_after_add, relu_before_add, relu_preact.
    Where the shape changes the shortcut is a 1x1 convolution + BN (option B).
    """

    def __init__(self, cin, planes, stride, variant, gate_bias=-6.0, p=0.5, scales=(0.5, 0.5)):
        super().__init__()
        self.variant, self.scales = variant, scales
        self.conv1, self.bn1 = conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        # BN after the addition replaces the residual branch's last BN.
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = None
        if stride != 1 or cin != planes or variant == "conv":
            self.shortcut = nn.Sequential(conv1x1(cin, planes, stride), nn.BatchNorm2d(planes))
        self.gate = None
        if variant in ("exclusive_gate", "shortcut_gate"):
            self.gate = conv1x1(cin, planes, stride, bias=True)
            nn.init.constant_(self.gate.bias, gate_bias)
        self.drop = nn.Dropout(p) if variant == "dropout" else None

    def shortcut_of(self, x):
        h = self.shortcut(x) if self.shortcut is not None else x
        return self.drop(h) if self.drop is not None else h

    def forward(self, x):
        # The residual branch runs before the shortcut and the gate, as in the specs, so that
        # the tensors of both sides line up in forward order (tests/oracle).
        v = self.variant
        if v == "relu_preact":
            f = self.bn1(self.conv1(F.relu(x)))
            return self.bn2(self.conv2(F.relu(f))) + self.shortcut_of(x)
        f = F.relu(self.bn1(self.conv1(x)))
        if v == "bn_after_add":
            return F.relu(self.bn2(self.conv2(f) + self.shortcut_of(x)))
        f = self.bn2(self.conv2(f))
        h = self.shortcut_of(x)
        if v == "relu_before_add":
            return F.relu(f) + h
        if v == "scaling":
            return F.relu(self.scales[0] * f + self.scales[1] * h)
        if v == "exclusive_gate":
            g = torch.sigmoid(self.gate(x))
            return F.relu(g * f + (1 - g) * h)
        if v == "shortcut_gate":
            g = torch.sigmoid(self.gate(x))
            return F.relu(f + (1 - g) * h)
        return F.relu(f + h)


class AblationResNet(nn.Module):
    """ResNet-110 of ablation units; the ReLU-only pre-activation variant (Fig. 4(d)) keeps the
    stem's BN, leaves its ReLU to the first unit and puts one after the last unit."""

    def __init__(self, variant, classes, depth=110, **unit):
        super().__init__()
        n = (depth - 2) // 6
        self.variant = variant
        self.conv1, self.bn1 = conv3x3(3, 16), nn.BatchNorm2d(16)
        layers, cin = [], 16
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(n):
                layers.append(AblationUnit(cin, planes, stride if i == 0 else 1, variant, **unit))
                cin = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        if self.variant == "relu_preact":
            x = F.relu(self.layers(x))
        else:
            x = self.layers(F.relu(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- The shipped specs ----------------------------------------------------------------

SPECS = {
    "resnet-20": lambda k: CifarResNet(20, k),
    "resnet-32": lambda k: CifarResNet(32, k),
    "resnet-44": lambda k: CifarResNet(44, k),
    "resnet-56": lambda k: CifarResNet(56, k),
    "resnet-110": lambda k: CifarResNet(110, k),
    "resnet-1202": lambda k: CifarResNet(1202, k),
    "resnet-20-a": lambda k: CifarResNet(20, k, option="A"),
    # Stochastic depth drops branches at random in training and adds no parameters: counted as
    # the option-A ResNet-110 it trains.
    "sd-resnet-110": lambda k: CifarResNet(110, k, option="A"),
    "resnet-164": lambda k: CifarResNet(164, k, block="bottleneck"),
    "preresnet-110": lambda k: PreResNet(110, k, bottleneck=False),
    "preresnet-164": lambda k: PreResNet(164, k, bottleneck=True),
    "preresnet-1001": lambda k: PreResNet(1001, k, bottleneck=True),
    "wrn-16-4": lambda k: WideResNet(16, 4, k),
    "wrn-16-8": lambda k: WideResNet(16, 8, k),
    "wrn-28-10": lambda k: WideResNet(28, 10, k, drop=0.3),
    "wrn-40-4": lambda k: WideResNet(40, 4, k),
    "resnext-29-8x16d": lambda k: CifarResNeXt(29, 8, 16, k),
    "resnext-29-8x64d": lambda k: CifarResNeXt(29, 8, 64, k),
    "resnext-29-16x64d": lambda k: CifarResNeXt(29, 16, 64, k),
    "densenet-40-12": lambda k: DenseNet(40, 12, k, bottleneck=False, compression=1.0),
    "densenet-bc-100-12": lambda k: DenseNet(100, 12, k, bottleneck=True, compression=0.5),
    "densenet-bc-190-40": lambda k: DenseNet(190, 40, k, bottleneck=True, compression=0.5),
    "se-resnet-20": lambda k: CifarResNet(20, k, block="se"),
    "pyramidnet-110-48": lambda k: PyramidNet(110, 48, k),
    "pyramidnet-110-270": lambda k: PyramidNet(110, 270, k),
    "shake-shake-26-2x96d": lambda k: ShakeShake(26, 96, k),
    "ablations/original": lambda k: AblationResNet("original", k),
    "ablations/constant-scaling": lambda k: AblationResNet("scaling", k),
    "ablations/exclusive-gating": lambda k: AblationResNet("exclusive_gate", k),
    "ablations/shortcut-only-gating": lambda k: AblationResNet("shortcut_gate", k),
    "ablations/conv-shortcut": lambda k: AblationResNet("conv", k),
    "ablations/dropout-shortcut": lambda k: AblationResNet("dropout", k),
    "ablations/bn-after-addition": lambda k: AblationResNet("bn_after_add", k),
    "ablations/relu-before-addition": lambda k: AblationResNet("relu_before_add", k),
    "ablations/relu-only-preactivation": lambda k: AblationResNet("relu_preact", k),
    "ablations/full-preactivation": lambda k: PreResNet(110, k, bottleneck=False),
}
