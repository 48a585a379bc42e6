#!/usr/bin/env bash
# The first run on a GPU, in one call: resnetc's CUDA and wgpu backends against PyTorch on the
# same GPU. Needs the bundle scripts/gpu-bundle.sh makes (a prebuilt resnetc, CIFAR-10, the
# PyTorch bench), a CUDA driver, and Python with torch for the PyTorch side; no Rust.
#
# Usage: ./gpu-check.sh            (in the bundle's folder)
#        scripts/gpu-check.sh [BUNDLE_DIR]   (from the repository; default gpu-bundle)
# Environment:
#   OUT            where results go (default ./gpu-check-out): results.jsonl (one JSON object
#                  per step, written as each finishes), results.md (the table, rewritten after
#                  every step), logs/ (each step's output)
#   BUDGET         seconds for everything (default 450: under 8 minutes)
#   DEVICES        resnetc devices to measure (default "cuda wgpu")
#   TORCH_DEVICE   PyTorch's device (default cuda)
#   SPECS          networks (default "resnet-20 resnet-56 wrn-28-10")
#   BATCH, STEPS, WARMUP, EPOCHS   (defaults 128, 20, 5, 3)
# Every step has a time limit; a step that fails or times out is recorded as such and the
# next one runs. Steps run in order of importance, so a short budget loses the least.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [ -f "$here/resnetc.xz" ] || [ -x "$here/resnetc" ]; then
    bundle="$here"
else
    bundle="$(realpath -m "${1:-$here/../gpu-bundle}")"
fi
specs_dir="$bundle/specs"; [ -d "$specs_dir" ] || specs_dir="$here/../specs"
bench_py="$bundle/benches/vs_pytorch/bench.py"; [ -f "$bench_py" ] || bench_py="$here/../benches/vs_pytorch/bench.py"
table_py="$bundle/gpu-table.py"; [ -f "$table_py" ] || table_py="$here/gpu-table.py"
data="$bundle/cifar10.tar.gz"

OUT="${OUT:-$PWD/gpu-check-out}"
BUDGET="${BUDGET:-450}"
DEVICES="${DEVICES:-cuda wgpu}"
TORCH_DEVICE="${TORCH_DEVICE:-cuda}"
SPECS="${SPECS:-resnet-20 resnet-56 wrn-28-10}"
BATCH="${BATCH:-128}"; STEPS="${STEPS:-20}"; WARMUP="${WARMUP:-5}"; EPOCHS="${EPOCHS:-3}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT/logs"
: > "$OUT/results.jsonl"
start=$(date +%s)
# The Vulkan loader complains on every call without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

bin="$OUT/resnetc"
if [ -f "$bundle/resnetc.xz" ]; then
    xz -dc "$bundle/resnetc.xz" > "$bin" && chmod +x "$bin"
elif [ -x "$bundle/resnetc" ]; then
    cp "$bundle/resnetc" "$bin"
else
    echo "error: no resnetc in $bundle (run scripts/gpu-bundle.sh first)" >&2
    exit 1
fi

left() { echo $(( BUDGET - ($(date +%s) - start) )); }

# step NAME LIMIT CMD...: run CMD with at most LIMIT seconds (less if the budget is nearly
# spent), keep its output in logs/NAME.log, append a JSON line: its last stdout line when that
# is JSON, and whether it succeeded.
step() {
    local name="$1" limit="$2"; shift 2
    local t; t=$(left)
    [ "$t" -lt "$limit" ] && limit=$t
    if [ "$limit" -lt 10 ]; then
        printf '{"step":"%s","ok":false,"error":"skipped: the time budget is spent"}\n' "$name" >> "$OUT/results.jsonl"
        return
    fi
    local log="$OUT/logs/$name.log" s0; s0=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout -k 5 "$limit" "$@" > "$log" 2>&1
    local rc=$? secs=$(( $(date +%s) - s0 ))
    "$PYTHON" - "$name" "$rc" "$secs" "$log" >> "$OUT/results.jsonl" <<'PY'
import json, sys
name, rc, secs, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = open(log, errors="replace").read().splitlines()
result = None
for line in reversed(lines):
    try:
        result = json.loads(line)
        break
    except ValueError:
        continue
row = {"step": name, "ok": rc == 0, "seconds": secs, "result": result}
if rc != 0:
    row["error"] = "timed out" if rc in (124, 137) else f"exit {rc}: " + " | ".join(lines[-3:])[-400:]
print(json.dumps(row))
PY
    tail -n 2 "$log"
    "$PYTHON" "$table_py" "$OUT/results.jsonl" > "$OUT/results.md" 2>/dev/null || true
}

# What machine this is.
{
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
    "$bin" --version
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1
    cat "$bundle/COMMIT" 2>/dev/null
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

first="${SPECS%% *}"
# `timeout` runs commands, not shell functions: these print the command lines.
bench=(--mode train --batch-size "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --format json --compare-cpu)
torch=(--device "$TORCH_DEVICE" --mode train --batch-size "$BATCH" --steps "$STEPS" --warmup "$WARMUP")

# 1. The first network on each backend and in PyTorch eager: the headline ratio.
for d in $DEVICES; do step "resnetc-$d-$first" 90 "$bin" bench "$specs_dir/$first.net" --device "$d" "${bench[@]}"; done
step "torch-eager-$first" 60 "$PYTHON" "$bench_py" "$first" "${torch[@]}"
# 2. Accuracy after a short real run on the GPU (the running statistics included).
main_device="${DEVICES%% *}"
step "train-$main_device-$first-${EPOCHS}ep" 180 "$bin" train "$specs_dir/$first.net" --data "$data" \
    --device "$main_device" --epochs "$EPOCHS" --progress plain --workers 8 --out "$OUT/train-$first"
# 3. The other networks.
for s in ${SPECS#"$first"}; do
    for d in $DEVICES; do step "resnetc-$d-$s" 90 "$bin" bench "$specs_dir/$s.net" --device "$d" "${bench[@]}"; done
    step "torch-eager-$s" 60 "$PYTHON" "$bench_py" "$s" "${torch[@]}"
done
# 4. Half precision and torch.compile, if time is left.
step "resnetc-$main_device-$first-bf16" 60 "$bin" bench "$specs_dir/$first.net" --device "$main_device" "${bench[@]}" --precision bf16
for s in $SPECS; do step "torch-compile-$s" 120 "$PYTHON" "$bench_py" "$s" "${torch[@]}" --compile; done

"$PYTHON" "$table_py" "$OUT/results.jsonl" > "$OUT/results.md"
cat "$OUT/results.md"
echo "total: $(( $(date +%s) - start )) s; results in $OUT"
