#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the shapes of fam_cuda_bench (its --csv output),
printed beside fam's numbers: same useful FLOPs (visible query-key pairs), same bytes.

Full causal uses is_causal=True (flash kernels); sliding window and BSWA need an explicit
boolean mask (SDPA then runs its memory-efficient or math kernel over the whole L x L score
matrix); decode is one query against the visible keys; FAM has no SDPA counterpart (skipped).
"""
import argparse
import csv
import sys

import torch
import torch.nn.functional as F


def visible_mask(variant, L, window, block, memory, device):
    n = torch.arange(L, device=device).view(L, 1)
    m = torch.arange(L, device=device).view(1, L)
    causal = m <= n
    if variant == "full":
        return causal
    if variant == "swa":
        return causal & (m > n - window)
    if variant == "bswa":
        return causal & (torch.div(m, block, rounding_mode="floor") + memory >=
                         torch.div(n, block, rounding_mode="floor"))
    raise ValueError(variant)


def median_ms(fn, min_reps=3, budget_ms=250.0):
    fn()
    torch.cuda.synchronize()
    times, total = [], 0.0
    while len(times) < min_reps or (total < budget_ms and len(times) < 50):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        t = a.elapsed_time(b)
        times.append(t)
        total += t
    times.sort()
    return times[len(times) // 2]


def sdpa(q, k, v, **kw):
    h, hkv = q.shape[1], k.shape[1]
    if h != hkv:
        try:
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw)
        except TypeError:  # PyTorch < 2.5: repeat the kv heads
            k = k.repeat_interleave(h // hkv, dim=1)
            v = v.repeat_interleave(h // hkv, dim=1)
    return F.scaled_dot_product_attention(q, k, v, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True, help="fam_cuda_bench --csv output")
    ap.add_argument("--out", help="write the PyTorch times here")
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.csv)))
    dev = torch.device("cuda")
    print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    print(f"{'case':44s} {'fam ms':>9s} {'torch ms':>9s} {'fam TF/s':>9s} {'torch TF/s':>10s} "
          f"{'speedup':>8s}  torch kernel")
    results = []
    for r in rows:
        variant, L, H, Hkv, D = r["variant"], int(r["L"]), int(r["H"]), int(r["Hkv"]), int(r["D"])
        flops, fam_ms = float(r["flops"]), float(r["ms"])
        name = r["name"]
        dtype = torch.float16 if "fp16" in name else torch.float32 if "fp32" in name else torch.bfloat16
        if variant == "fam":
            print(f"{name:44s} {fam_ms:9.3f} {'-':>9s}  (no SDPA counterpart)")
            continue
        torch.manual_seed(0)
        if variant == "decode":
            keys = int(r["memory"]) * int(r["block"]) + int(r["block"]) // 2 + 16
            q = torch.randn(1, H, 1, D, device=dev, dtype=dtype)
            k = torch.randn(1, Hkv, keys, D, device=dev, dtype=dtype)
            v = torch.randn(1, Hkv, keys, D, device=dev, dtype=dtype)
            fn, kernel = (lambda: sdpa(q, k, v)), "no mask"
        else:
            q = torch.randn(1, H, L, D, device=dev, dtype=dtype)
            k = torch.randn(1, Hkv, L, D, device=dev, dtype=dtype)
            v = torch.randn(1, Hkv, L, D, device=dev, dtype=dtype)
            if variant == "full":
                fn, kernel = (lambda: sdpa(q, k, v, is_causal=True)), "is_causal"
            else:
                mask = visible_mask(variant, L, int(r["window"]), int(r["block"]), int(r["memory"]), dev)
                fn, kernel = (lambda: sdpa(q, k, v, attn_mask=mask)), "dense bool mask"
        try:
            ms = median_ms(fn)
        except RuntimeError as e:  # out of memory, unsupported dtype
            print(f"{name:44s} {fam_ms:9.3f} {'error':>9s}  {str(e).splitlines()[0][:60]}")
            continue
        fam_tf, torch_tf = flops / fam_ms / 1e9, flops / ms / 1e9
        print(f"{name:44s} {fam_ms:9.3f} {ms:9.3f} {fam_tf:9.1f} {torch_tf:10.1f} "
              f"{ms / fam_ms:7.2f}x  {kernel}")
        results.append((name, ms))
        del q, k, v
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("name,torch_ms\n")
            for name, ms in results:
                f.write(f"{name},{ms:.6f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
