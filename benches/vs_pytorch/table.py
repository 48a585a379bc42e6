"""Summarise run.sh's JSON lines: median img/s per side over the rounds, ratio, peak RSS."""
import collections
import json
import statistics
import sys

runs = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for line in open(sys.argv[1]):
    row = json.loads(line)
    r = row["result"]
    key = (r["spec"].rsplit("/", 1)[-1].removesuffix(".net"), r["mode"], r["batch_size"])
    if key not in order:
        order.append(key)
    runs[key][row["impl"]].append(r)

mib = lambda b: f"{b / 2**20:.0f}" if b else "-"
baseline = any("baseline" in sides for sides in runs.values())
extra_head = " baseline img/s | resnetc/baseline |" if baseline else ""
extra_rule = "---:|---:|" if baseline else ""
print(f"| spec | mode | batch | resnetc img/s | PyTorch img/s | ratio |{extra_head} resnetc peak RSS MiB | PyTorch peak RSS MiB |")
print(f"|---|---|---:|---:|---:|---:|{extra_rule}---:|---:|")
for spec, mode, batch in order:
    sides = runs[(spec, mode, batch)]
    ours = statistics.median(r["images_per_sec"] for r in sides["resnetc"])
    theirs = statistics.median(r["images_per_sec"] for r in sides["pytorch"])
    rss_ours = max(r["peak_rss_bytes"] or 0 for r in sides["resnetc"])
    rss_theirs = max(r["peak_rss_bytes"] or 0 for r in sides["pytorch"])
    extra = ""
    if baseline:
        old = statistics.median(r["images_per_sec"] for r in sides["baseline"])
        extra = f" {old:.1f} | {ours / old:.2f}× |"
    print(f"| {spec} | {mode} | {batch} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}× |{extra} {mib(rss_ours)} | {mib(rss_theirs)} |")
