#!/usr/bin/python3
"""Turns the benchmark JSON into the figures of docs/performance.md (SVG) and a summary table.

usage: plot_bench.py OUT_DIR IMG_DIR   (reads OUT_DIR/fam_bench.json, OUT_DIR/scaling.jsonl)
Run with Debian's /usr/bin/python3 and python3-matplotlib.
"""
import json
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load_runs(path):
    with open(path) as f:
        doc = json.load(f)
    runs = defaultdict(list)
    for b in doc["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        runs[b["run_name"].replace("/real_time", "")].append(b)
    return doc["context"], runs


def stat(samples, key):
    values = [s[key] for s in samples if key in s]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def summary(context, runs):
    print(f"machine: {context.get('host_name')}, {context.get('num_cpus')} cpus, "
          f"isa {context.get('fam_isa')}, flags {context.get('fam_flags')}, "
          f"commit {context.get('fam_commit')}")
    print(f"same-run fp32 FMA peak {context.get('fam_fma_peak_gflops')} GFLOP/s, "
          f"triad {context.get('fam_triad_gbps')} GB/s")
    print("| benchmark | GFLOP/s median (min-max) | % of FMA peak | GB/s | % of triad | tokens/s |")
    print("|---|---|---|---|---|---|")
    for name in sorted(runs):
        s = runs[name]
        g, pk, gb, tr, tk = (stat(s, k) for k in ("GFLOP/s", "pct_fma_peak", "GB/s", "pct_triad", "tokens/s"))
        cell = lambda x, scale=1.0, fmt="{:.1f}": "" if x is None else fmt.format(x[0] * scale)
        rng = "" if g is None else f"{g[0]:.1f} ({g[1]:.1f}-{g[2]:.1f})"
        print(f"| {name} | {rng} | {cell(pk, 100)} | {cell(gb)} | {cell(tr, 100)} | {cell(tk, 1, '{:.0f}')} |")


def bar_chart(runs, prefix, key, ylabel, path, title):
    names = sorted(n for n in runs if n.startswith(prefix))
    if not names:
        return
    med = [stat(runs[n], key) for n in names]
    keep = [(n, m) for n, m in zip(names, med) if m is not None]
    if not keep:
        return
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(keep) + 1.5))
    labels = [n[len(prefix):] for n, _ in keep]
    vals = [m[0] for _, m in keep]
    errs = [[m[0] - m[1] for _, m in keep], [m[2] - m[0] for _, m in keep]]
    ax.barh(labels, vals, xerr=errs, color="#4c72b0")
    ax.set_xlabel(ylabel)
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def per_token(r):
    """A scaling run's per-token time: the median of its last blocks (older runs: the last)."""
    return r.get("us_per_token", r["last_block_us_per_token"])


def scaling_chart(path_in, path_out):
    if not os.path.exists(path_in):
        return
    rows = [json.loads(l) for l in open(path_in) if l.strip()]
    if not rows:
        return
    # several runs of one configuration (SCALING_RUNS): the run with the median time stands for
    # it, and the fastest block of all its runs is the cost with the least disturbance (on a
    # shared host a neighbour's load can slow a whole run)
    by_config = defaultdict(list)
    for r in rows:
        by_config[(r["variant"], r["tokens"])].append(r)
    rows = []
    for runs in by_config.values():
        runs.sort(key=per_token)
        best = [r["fastest_us_per_token"] for r in runs if "fastest_us_per_token" in r]
        rows.append(dict(runs[(len(runs) - 1) // 2], runs=len(runs),
                         best_us_per_token=min(best) if best else None))
    print("\nscaling (median run of each configuration, and the fastest block of all its runs):")
    for r in sorted(rows, key=lambda r: (r["variant"], r["tokens"])):
        best = r["best_us_per_token"]
        print(f'  {r["variant"]:5s} {r["tokens"]:8d} tokens: {per_token(r):9.2f} µs/token '
              f'(fastest block {best if best is not None else float("nan"):9.2f}), peak RSS '
              f'{r["peak_rss_mib"]:6.1f} MiB, {r["runs"]} run(s)')
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for v in ("full", "bswa", "fam"):
        pts = sorted((r["tokens"], r) for r in rows if r["variant"] == v)
        if not pts:
            continue
        line = a.plot([p[0] for p in pts], [per_token(p[1]) for p in pts], "o-", label=v)
        if all(p[1]["best_us_per_token"] is not None for p in pts):
            a.plot([p[0] for p in pts], [p[1]["best_us_per_token"] for p in pts], "x--",
                   color=line[0].get_color(), label=v + ", fastest block of the runs")
        b.plot([p[0] for p in pts], [p[1]["peak_rss_mib"] for p in pts], "o-", label=v)
    a.set_yscale("log")  # full attention grows with the stream; BSWA and FAM stay flat
    for ax, yl in ((a, "µs per token (last 16 blocks)"), (b, "peak RSS (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens streamed")
        ax.set_ylabel(yl)
        ax.legend(fontsize="small", loc="center right")
    fig.tight_layout()
    fig.savefig(path_out)
    plt.close(fig)


def main():
    out, img = sys.argv[1], sys.argv[2]
    os.makedirs(img, exist_ok=True)
    context, runs = load_runs(os.path.join(out, "fam_bench.json"))
    summary(context, runs)
    bar_chart(runs, "prefill/", "GFLOP/s", "useful GFLOP/s (median, min-max)",
              os.path.join(img, "perf_prefill.svg"), "prefill: one block after M blocks")
    bar_chart(runs, "decode/", "GB/s", "K/V GB/s (median, min-max)",
              os.path.join(img, "perf_decode.svg"), "decode: one token through >= 256 MiB of rings")
    scaling_chart(os.path.join(out, "scaling.jsonl"), os.path.join(img, "perf_scaling.svg"))


if __name__ == "__main__":
    main()
