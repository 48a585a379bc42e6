#!/usr/bin/env bash
# resnetc vs PyTorch eager, side by side on this machine's CPU.
#
#   benches/vs_pytorch/run.sh [--rounds N] [--steps N] [--warmup N] [--threads N]
#                             [--modes train,infer] [--baseline OLD_RESNETC] SPEC...
#
# SPEC is a shipped spec's name or path (resnet-20, specs/wrn-16-4.net). Installs torch into
# benches/vs_pytorch/.venv if no torch is found there (or in $TORCH_VENV), builds the release
# `resnetc`, then for every spec and mode alternates `resnetc bench` and bench.py (the same
# measurement on the PyTorch reference model) for several rounds on the same batch size,
# thread count and random data. Prints per spec and mode the median img/s of each side over
# the rounds, the ratio resnetc/PyTorch and the peak RSS of each process, as a Markdown table;
# the raw JSON lines are kept in $OUT (default target/vs_pytorch). With --baseline, another
# `resnetc` binary (an earlier build) runs in every round too, and the table adds its img/s and
# the ratio new/baseline: a before/after comparison in one run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

rounds=3 steps=20 warmup=3 threads=$(nproc) modes=train,infer specs=() baseline=
while (($#)); do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --modes) modes=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) specs+=("$1"); shift ;;
    esac
done
((${#specs[@]})) || { echo "error: name at least one spec, e.g. resnet-20 (see --help)" >&2; exit 2; }

venv=${TORCH_VENV:-$here/.venv}
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    echo "installing torch into $venv ..." >&2
    python3 -m venv "$venv"
    # The CPU-only wheel is ~200 MB; PyPI's default wheel carries CUDA (several GB).
    "$venv/bin/pip" install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
        || "$venv/bin/pip" install --quiet torch
fi
(cd "$root" && cargo build --release --locked --bin resnetc)
resnetc=$root/target/release/resnetc

out=${OUT:-$root/target/vs_pytorch}
mkdir -p "$out"
log=$out/results-$(date +%Y%m%d-%H%M%S).jsonl
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads PYTHONWARNINGS=ignore
torch_version=$("$venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null)
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $threads threads; torch $torch_version; $rounds rounds × $steps timed steps (after $warmup warm-up)" >&2

for spec in "${specs[@]}"; do
    name=$(basename "$spec" .net)
    path=$root/specs/$name.net
    [[ -f $path ]] || { echo "error: no spec $path" >&2; exit 1; }
    for mode in ${modes//,/ }; do
        for ((r = 1; r <= rounds; r++)); do
            # resnetc first picks the batch size (the recipe's for train, 256 for infer);
            # PyTorch then runs the very same one.
            ours=$("$resnetc" bench "$path" --mode "$mode" --steps "$steps" --warmup "$warmup" --format json)
            batch=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["batch_size"])' "$ours")
            theirs=$("$venv/bin/python" "$here/bench.py" "$name" --mode "$mode" --batch-size "$batch" \
                --steps "$steps" --warmup "$warmup" --threads "$threads" 2>/dev/null)
            echo "{\"impl\": \"resnetc\", \"round\": $r, \"result\": $ours}" >>"$log"
            if [[ -n $baseline ]]; then
                old=$("$baseline" bench "$path" --mode "$mode" --batch-size "$batch" --steps "$steps" \
                    --warmup "$warmup" --format json)
                echo "{\"impl\": \"baseline\", \"round\": $r, \"result\": $old}" >>"$log"
            fi
            echo "{\"impl\": \"pytorch\", \"round\": $r, \"result\": $theirs}" >>"$log"
            echo "  $name $mode round $r/$rounds done" >&2
        done
    done
done
python3 "$here/table.py" "$log"
echo "(raw results: $log)" >&2
