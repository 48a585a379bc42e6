#!/usr/bin/env bash
# resnetc vs PyTorch: test accuracy after training the same spec with the same recipe.
#
#   benches/vs_pytorch/accuracy.sh SPEC --epochs N [--seeds K] [--data PATH] [--threads N]
#
# SPEC is a shipped spec's name (resnet-20). Trains it K times (seeds 1..K, default 2) with
# `resnetc train` and K times with train.py (the PyTorch reference of benches/reference), both
# on PATH (default ../shared/data/cifar10-jpg.tar.gz, unpacked once into target/), with the
# family's recipe and a cosine schedule over N epochs, and prints the test accuracy (eval mode)
# of every epoch side by side, then the mean and spread of the last epoch per framework, as
# Markdown. Run folders and CSVs are kept in $OUT (default target/accuracy). Installs torch
# into benches/vs_pytorch/.venv if no torch is found there (or in $TORCH_VENV).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

epochs="" seeds=2 threads=$(nproc) data="$root/../shared/data/cifar10-jpg.tar.gz" spec=""
while (($#)); do
    case $1 in
        --epochs) epochs=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) spec=$1; shift ;;
    esac
done
[[ -n $spec && -n $epochs ]] || { echo "error: give a spec and --epochs N (see --help)" >&2; exit 2; }
spec=${spec%.net}; spec=${spec#specs/}
[[ -f $root/specs/$spec.net ]] || { echo "error: no spec $root/specs/$spec.net" >&2; exit 2; }

venv=${TORCH_VENV:-$here/.venv}
if ! "$venv/bin/python" -c 'import torch, PIL' 2>/dev/null; then
    echo "installing torch into $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch pillow numpy --index-url https://download.pytorch.org/whl/cpu \
        || "$venv/bin/pip" install --quiet torch pillow numpy
fi

out=${OUT:-$root/target/accuracy}
mkdir -p "$out"
# One unpacked copy of the images for both sides (resnetc reads archives too; PyTorch does not).
if [[ -f $data ]]; then
    unpacked="$out/data/$(basename "$data" .tar.gz)"
    if [[ ! -d $unpacked ]]; then
        mkdir -p "$unpacked.partial" && tar xzf "$data" -C "$unpacked.partial" && mv "$unpacked.partial" "$unpacked"
    fi
    data=$(find "$unpacked" -maxdepth 3 -type d -name train -printf '%h\n' | head -n 1)
fi
[[ -d $data/train && -d $data/test ]] || { echo "error: $data has no train/ and test/ folders" >&2; exit 1; }

(cd "$root" && cargo build --release --quiet)
resnetc=$root/target/release/resnetc
for seed in $(seq 1 "$seeds"); do
    run="$out/$spec-resnetc-$seed"
    if [[ ! -f $run/summary.json ]]; then
        rm -rf "$run"
        echo "resnetc, seed $seed ..." >&2
        RAYON_NUM_THREADS=$threads "$resnetc" train "$root/specs/$spec.net" --data "$data" --epochs "$epochs" \
            --set-recipe 'schedule={kind: cosine}' --seed "$seed" --out "$run" --progress plain >&2
    fi
    csv="$out/$spec-pytorch-$seed.csv"
    if [[ ! -s $csv ]] || (( $(wc -l < "$csv") <= epochs )); then
        echo "PyTorch, seed $seed ..." >&2
        "$venv/bin/python" "$here/train.py" "$spec" --data "$data" --epochs "$epochs" --seed "$seed" \
            --schedule cosine --threads "$threads" > "$csv.partial"
        mv "$csv.partial" "$csv"
    fi
done
"$venv/bin/python" - "$out" "$spec" "$seeds" <<'EOF'
import csv, statistics, sys
out, spec, seeds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def column(path):
    with open(path) as f:
        return [float(r["test_acc"]) * 100 for r in csv.DictReader(f)]
ours = [column(f"{out}/{spec}-resnetc-{s}/metrics.csv") for s in range(1, seeds + 1)]
theirs = [column(f"{out}/{spec}-pytorch-{s}.csv") for s in range(1, seeds + 1)]
head = [f"resnetc seed {s}" for s in range(1, seeds + 1)] + [f"PyTorch seed {s}" for s in range(1, seeds + 1)]
print(f"| epoch | {' | '.join(head)} |")
print("|---:|" + "---:|" * len(head))
for e in range(len(ours[0])):
    print(f"| {e + 1} | " + " | ".join(f"{c[e]:.2f}" for c in ours + theirs) + " |")
def summary(runs):
    last = [r[-1] for r in runs]
    spread = statistics.stdev(last) if len(last) > 1 else 0.0
    return f"{statistics.mean(last):.2f} % (± {spread:.2f}, {', '.join(f'{v:.2f}' for v in last)})"
print()
print(f"final test accuracy, {spec}: resnetc {summary(ours)}; PyTorch {summary(theirs)}; "
      f"difference {statistics.mean(r[-1] for r in ours) - statistics.mean(r[-1] for r in theirs):+.2f} points")
EOF
