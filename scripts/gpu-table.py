"""The Markdown table of a gpu-check.sh run, from its results.jsonl (one JSON object per step).

    python3 scripts/gpu-table.py gpu-check-out/results.jsonl > results.md
"""
import glob
import json
import os
import sys


def mib(b):
    return f"{b / 2**20:.0f}" if isinstance(b, (int, float)) else "-"


def main():
    path = sys.argv[1]
    out = os.path.dirname(os.path.abspath(path))
    rows = [json.loads(l) for l in open(path) if l.strip()]
    bench = {}
    other = []
    for r in rows:
        name = r["step"]
        if name.startswith(("resnetc-", "torch-")):
            parts = name.split("-")
            # resnetc-<device>-<spec>[-bf16] / torch-<eager|compile>-<spec>
            who = f"{parts[0]} {parts[1]}" + (" bf16" if name.endswith("-bf16") else "")
            spec = "-".join(parts[2:]).removesuffix("-bf16")
            bench.setdefault(spec, []).append((who, r))
        else:
            other.append(r)
    print("| network | run | train img/s | vs PyTorch eager | device memory MiB | logits vs CPU | status |")
    print("|---|---|---:|---:|---:|---:|---|")
    for spec, runs in bench.items():
        eager = next((r["result"]["images_per_sec"] for who, r in runs
                      if who == "torch eager" and r.get("ok") and r.get("result")), None)
        for who, r in runs:
            res = r.get("result") or {}
            ips = res.get("images_per_sec")
            mem = res.get("device_memory_reserved_bytes", res.get("device_memory_peak_bytes"))
            logits = res.get("logits_vs_cpu")
            ratio = f"{ips / eager:.2f}x" if ips and eager else "-"
            status = "ok" if r.get("ok") else r.get("error", "failed")
            print(f"| {spec} | {who} | {ips:.1f} | {ratio} | {mib(mem)} | "
                  f"{'-' if logits is None else f'{logits:.1e}'} | {status} |" if ips else
                  f"| {spec} | {who} | - | - | - | - | {status} |")
    for r in other:
        status = "ok" if r.get("ok") else r.get("error", "failed")
        line = f"\n{r['step']}: {status}, {r.get('seconds', '-')} s"
        for summary in glob.glob(os.path.join(out, "train-*", "summary.json")):
            s = json.load(open(summary))
            acc = s.get("test_accuracy")
            line += (f"; {s['network']} on {s.get('adapter') or s['device']}: {s['epochs']} epochs, "
                     f"test accuracy {'-' if acc is None else f'{100 * acc:.2f}%'}, "
                     f"{s.get('images_per_sec') or 0:.0f} img/s over the epochs, {s['seconds']:.0f} s")
        print(line)


if __name__ == "__main__":
    main()
