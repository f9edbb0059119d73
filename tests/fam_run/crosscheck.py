#!/usr/bin/python3
"""Cross-checks fam-run against an independent NumPy float64 implementation of docs/spec.md.

  crosscheck.py --fam-run PATH [--part numerics|bad-input|all] [--seed N] [--keep DIR]

numerics:  random inputs for every variant (MHA, GQA, MQA for full/swa/bswa; partial last
           blocks; F = 0 and F > 0, F > B, up to 32 FAM updates; float64 inputs; .npy format
           versions 1.0/2.0/3.0), fam-run's output against NumPy in float64 with
           max|err| <= 1e-5 * (1 + max|V|) (for fam, max over V and the initial state P), and, if
           PyTorch is importable, full/swa against torch's scaled_dot_product_attention.
bad-input: a table of bad command lines and files: each must exit non-zero with exactly one
           line on stderr that names the offending argument, print nothing on stdout, and leave
           no output file (nor temporary file) behind; an existing output stays untouched.

Exit status: 0 all passed, 1 a check failed, 77 NumPy is not importable (ctest: SKIPPED).
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIPPED: numpy is not importable by %s (Debian: apt-get install python3-numpy)"
          % sys.executable)
    sys.exit(77)

TOL = 1e-5

# ---------------------------------------------------------------------------------------------
# The reference: SPEC §1-§3 and §6, written from the spec, in float64.


def softmax_rows(logits):
    """Row softmax of a float64 matrix whose masked entries are -inf (every row has one key)."""
    if logits.size == 0:
        return np.zeros(logits.shape)
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    return e / e.sum(axis=1, keepdims=True)


def token_mask(variant, L, window=None, block=None, memory=None):
    """visible[n, m] for token queries n and token keys m (SPEC §2)."""
    n = np.arange(L)[:, None]
    m = np.arange(L)[None, :]
    causal = m <= n
    if variant == "full":
        return causal
    if variant == "swa":
        return causal & (m > n - window)
    if variant == "bswa":
        return causal & (m // block + memory >= n // block)
    raise ValueError(variant)


def ref_attention(q, k, v, mask, scale):
    """Masked attention, query head h reading kv head h // (H / Hkv) (SPEC §1)."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    L, H, D = q.shape
    group = H // k.shape[1]
    out = np.zeros((L, H, D))
    for h in range(H):
        hk = h // group
        logits = scale * q[:, h, :] @ k[:, hk, :].T
        logits = np.where(mask, logits, -np.inf)
        out[:, h, :] = softmax_rows(logits) @ v[:, hk, :]
    return out


def ref_fam(q, k, v, P, block, memory, scale):
    """The weight-free FAM loop of SPEC §6: per head Qf = Kf = Vf = Φ, Φ[t] = Uf after each
    complete block; token rows see [memory | Φ | own block causally], FAM rows see [Φ | whole
    block]. Returns (token outputs [L, H, D], state after the last complete block [H, F, D],
    number of updates)."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    L, H, D = q.shape
    phi = np.array(P, dtype=np.float64)  # [H, F, D]
    F = phi.shape[1]
    out = np.zeros((L, H, D))
    updates = 0
    for t in range((L + block - 1) // block):
        s, e = t * block, min(L, (t + 1) * block)
        b = e - s
        ms = max(0, t - memory) * block
        lm = s - ms
        new_phi = np.empty_like(phi)
        for h in range(H):
            keys = np.concatenate([k[ms:s, h], phi[h], k[s:e, h]])
            vals = np.concatenate([v[ms:s, h], phi[h], v[s:e, h]])
            logits = scale * q[s:e, h] @ keys.T  # [b, lm + F + b]
            i = np.arange(b)[:, None]
            j = np.arange(b)[None, :]
            vis = np.concatenate([np.ones((b, lm + F), bool), j <= i], axis=1)
            out[s:e, h] = softmax_rows(np.where(vis, logits, -np.inf)) @ vals
            if F > 0:
                fk = np.concatenate([phi[h], k[s:e, h]])
                fv = np.concatenate([phi[h], v[s:e, h]])
                new_phi[h] = softmax_rows(scale * phi[h] @ fk.T) @ fv
        if b == block and F > 0:
            phi = new_phi
            updates += 1
    return out, phi, updates


# ---------------------------------------------------------------------------------------------
# .npy files written by hand (for the format variants and the malformed ones)


def npy_bytes(descr="<f4", fortran=False, shape=(), data=b"", version=(1, 0), header=None,
              magic=b"\x93NUMPY"):
    """A .npy file: `header` (the dict text) overrides the one built from descr/fortran/shape."""
    if header is None:
        shape_text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        header = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (
            descr, "True" if fortran else "False", shape_text)
    hb = header.encode("utf-8" if version[0] >= 3 else "latin-1")
    size_bytes = 2 if version[0] == 1 else 4
    pad = (-(len(magic) + 2 + size_bytes + len(hb) + 1)) % 64
    hb = hb + b" " * pad + b"\n"
    fmt = "<H" if size_bytes == 2 else "<I"
    return magic + bytes(version) + struct.pack(fmt, len(hb)) + hb + data


def write_npy(path, a, version=(1, 0), header=None):
    """Writes array `a` (C order, little-endian) with the given format version."""
    a = np.ascontiguousarray(a)
    descr = a.dtype.str
    with open(path, "wb") as f:
        f.write(npy_bytes(descr, False, a.shape, a.tobytes(), version,
                          header(a) if header else None))


# ---------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, fam_run, work):
        self.fam_run = fam_run
        self.work = work
        self.count = 0

    def case_dir(self):
        self.count += 1
        d = os.path.join(self.work, "case%03d" % self.count)
        os.makedirs(d)
        return d

    def run(self, args, cwd=None):
        return subprocess.run([self.fam_run] + args, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120)


def variant_args(c):
    args = ["--variant", c["variant"]]
    for key in ("window", "block", "memory"):
        if key in c:
            args += ["--" + key, str(c[key])]
    if "scale" in c:
        args += ["--scale", repr(c["scale"])]
    return args


def numerics(runner, rng, torch_state):
    cases = []
    # full / swa / bswa: MHA, GQA, MQA, partial last blocks, degenerate sizes
    for H, Hkv in ((4, 4), (6, 2), (4, 1)):
        cases.append(dict(variant="full", L=45, H=H, Hkv=Hkv, D=16))
        cases.append(dict(variant="swa", L=45, H=H, Hkv=Hkv, D=16, window=7))
        cases.append(dict(variant="bswa", L=45, H=H, Hkv=Hkv, D=16, block=8, memory=2))
    cases += [
        dict(variant="full", L=1, H=1, Hkv=1, D=1),
        dict(variant="full", L=0, H=2, Hkv=1, D=8),
        dict(variant="full", L=300, H=2, Hkv=1, D=64, scale=0.05),  # spans several 256-granules
        dict(variant="swa", L=30, H=3, Hkv=3, D=8, window=1),
        dict(variant="swa", L=30, H=4, Hkv=2, D=8, window=100),
        dict(variant="swa", L=300, H=2, Hkv=2, D=32, window=257),
        dict(variant="bswa", L=37, H=2, Hkv=2, D=8, block=4, memory=0),
        dict(variant="bswa", L=37, H=4, Hkv=2, D=8, block=1, memory=3),
        dict(variant="bswa", L=37, H=2, Hkv=1, D=8, block=5, memory=100),
        dict(variant="bswa", L=10, H=2, Hkv=2, D=8, block=64, memory=1),
        dict(variant="bswa", L=40, H=2, Hkv=2, D=8, block=8, memory=1, dtype="f8"),
        dict(variant="bswa", L=20, H=2, Hkv=2, D=1000, block=6, memory=1, scale=0.01),
    ]
    # fam: F = 0 and F > 0, F > B, M = 0, partial and complete last blocks, no complete block,
    # 32 updates
    cases += [
        dict(variant="fam", L=37, H=2, D=8, block=4, memory=1, F=0),
        dict(variant="fam", L=37, H=2, D=8, block=4, memory=1, F=3),
        dict(variant="fam", L=36, H=3, D=16, block=4, memory=2, F=2),
        dict(variant="fam", L=30, H=2, D=8, block=4, memory=0, F=6),
        dict(variant="fam", L=64, H=2, D=8, block=2, memory=3, F=2),
        dict(variant="fam", L=5, H=2, D=8, block=8, memory=2, F=3),
        dict(variant="fam", L=0, H=2, D=8, block=4, memory=1, F=3),
        dict(variant="fam", L=50, H=1, D=32, block=10, memory=1, F=4, scale=0.3, dtype="f8"),
        dict(variant="fam", L=20, H=2, D=8, block=1, memory=2, F=1),
        dict(variant="fam", L=24, H=2, D=8, block=6, memory=10 ** 12, F=2),
    ]
    failures = 0
    torch_errors = []
    for c in cases:
        d = runner.case_dir()
        L, H, D = c["L"], c["H"], c["D"]
        Hkv = c.get("Hkv", H)
        dtype = np.float64 if c.get("dtype") == "f8" else np.float32
        q = rng.uniform(-1.5, 1.5, (L, H, D)).astype(dtype)
        k = rng.uniform(-1.5, 1.5, (L, Hkv, D)).astype(dtype)
        v = rng.uniform(-3.0, 3.0, (L, Hkv, D)).astype(dtype)
        for name, a in (("q", q), ("k", k), ("v", v)):
            np.save(os.path.join(d, name + ".npy"), a)
        args = variant_args(c) + ["--q", "q.npy", "--k", "k.npy", "--v", "v.npy",
                                  "--out", "o.npy"]
        scale = c.get("scale", 1.0 / np.sqrt(D))
        vmax = float(np.abs(v).max()) if v.size else 0.0
        if c["variant"] == "fam":
            P = rng.uniform(-3.0, 3.0, (H, c["F"], D)).astype(dtype)
            np.save(os.path.join(d, "p.npy"), P)
            args += ["--fam-init", "p.npy", "--fam-out", "pf.npy"]
            ref, ref_phi, updates = ref_fam(q, k, v, P, c["block"], c["memory"], scale)
            if P.size:
                vmax = max(vmax, float(np.abs(P).max()))
        else:
            mask = token_mask(c["variant"], L, c.get("window"), c.get("block"), c.get("memory"))
            ref = ref_attention(q, k, v, mask, scale)
        r = runner.run(args, cwd=d)
        label = " ".join("%s=%s" % (key, c[key]) for key in c if key != "variant")
        label = "%-5s %s" % (c["variant"], label)
        if r.returncode != 0:
            print("FAIL %s: exit %d: %s" % (label, r.returncode, r.stderr.decode().strip()))
            failures += 1
            continue
        o = np.load(os.path.join(d, "o.npy"))
        tol = TOL * (1.0 + vmax)
        problems = []
        if o.dtype != np.float32 or o.shape != (L, H, D):
            problems.append("output %s %s, want float32 %s" % (o.dtype, o.shape, (L, H, D)))
            err = float("inf")
        else:
            err = float(np.abs(o.astype(np.float64) - ref).max()) if o.size else 0.0
        extra = ""
        if c["variant"] == "fam":
            pf = np.load(os.path.join(d, "pf.npy"))
            if pf.dtype != np.float32 or pf.shape != P.shape:
                problems.append("state %s %s, want float32 %s" % (pf.dtype, pf.shape, P.shape))
                perr = float("inf")
            else:
                perr = float(np.abs(pf.astype(np.float64) - ref_phi).max()) if pf.size else 0.0
            extra = "  state max|err| %.2e  updates %d" % (perr, updates)
            if not perr <= tol:
                problems.append("state error %.3e > %.3e" % (perr, tol))
        if not err <= tol:
            problems.append("error %.3e > %.3e" % (err, tol))
        if torch_state["sdpa"] is not None and c["variant"] in ("full", "swa") and L > 0:
            mask = token_mask(c["variant"], L, c.get("window"))
            terr = float(np.abs(o.astype(np.float64) - torch_sdpa(torch_state, q, k, v, mask,
                                                                  scale)).max())
            torch_errors.append(terr)
            extra += "  torch max|err| %.2e" % terr
            if not terr <= tol:
                problems.append("torch error %.3e > %.3e" % (terr, tol))
        status = "ok  " if not problems else "FAIL"
        print("%s %-58s max|err| %.2e (tol %.1e)%s%s" % (
            status, label, err, tol, extra, "" if not problems else ": " + "; ".join(problems)))
        failures += bool(problems)
        shutil.rmtree(d)
    if torch_state["sdpa"] is None:
        print("torch: %s; skipped the scaled_dot_product_attention comparison"
              % torch_state["why"])
    else:
        print("torch %s: scaled_dot_product_attention compared on %d cases, max|err| %.2e"
              % (torch_state["version"], len(torch_errors), max(torch_errors or [0.0])))
    failures += formats(runner, rng)
    failures += fam_equals_bswa(runner, rng)
    return len(cases) + 2, failures


def formats(runner, rng):
    """.npy versions 1.0/2.0/3.0, float64 inputs, other key orders and quotes: same output."""
    d = runner.case_dir()
    L, H, D = 19, 2, 8
    q = rng.uniform(-1, 1, (L, H, D)).astype(np.float32)
    k = rng.uniform(-1, 1, (L, 1, D)).astype(np.float32)
    v = rng.uniform(-1, 1, (L, 1, D))  # float64
    np.save(os.path.join(d, "q1.npy"), q)
    np.save(os.path.join(d, "k1.npy"), k)
    np.save(os.path.join(d, "v1.npy"), v.astype(np.float32))
    write_npy(os.path.join(d, "q2.npy"), q, version=(2, 0))
    write_npy(os.path.join(d, "k3.npy"), k, version=(3, 0),
              header=lambda a: '{"shape": (%d, %d, %d), "fortran_order": False, "descr": "<f4"}'
              % a.shape)
    write_npy(os.path.join(d, "v8.npy"), v, version=(1, 0),
              header=lambda a: "{'descr':'<f8','fortran_order':False,'shape':(%d,%d,%d,)}"
              % a.shape)
    base = ["--variant", "swa", "--window", "5"]
    r1 = runner.run(base + ["--q", "q1.npy", "--k", "k1.npy", "--v", "v1.npy", "--out", "o1.npy"],
                    cwd=d)
    r2 = runner.run(base + ["--q=q2.npy", "--k=k3.npy", "--v=v8.npy", "--out=o2.npy"], cwd=d)
    ok = r1.returncode == 0 and r2.returncode == 0
    if ok:
        o1 = np.load(os.path.join(d, "o1.npy"))
        o2 = np.load(os.path.join(d, "o2.npy"))
        ok = o1.shape == (L, H, D) and np.array_equal(o1, o2)
    print("%s npy formats 1.0/2.0/3.0, '<f8' input, reordered keys, '=' options: %s"
          % ("ok  " if ok else "FAIL", "bitwise equal" if ok else
             (r1.stderr + r2.stderr).decode().strip() or "outputs differ"))
    shutil.rmtree(d)
    return 0 if ok else 1


def fam_equals_bswa(runner, rng):
    """SPEC §7.2: fam with F = 0 equals bswa (up to rounding) through the tool."""
    d = runner.case_dir()
    L, H, D = 29, 3, 8
    for name, shape in (("q", (L, H, D)), ("k", (L, H, D)), ("v", (L, H, D))):
        np.save(os.path.join(d, name + ".npy"), rng.uniform(-1, 1, shape).astype(np.float32))
    np.save(os.path.join(d, "p.npy"), np.zeros((H, 0, D), np.float32))
    io = ["--q", "q.npy", "--k", "k.npy", "--v", "v.npy"]
    r1 = runner.run(["--variant", "bswa", "--block", "4", "--memory", "2"] + io +
                    ["--out", "b.npy"], cwd=d)
    r2 = runner.run(["--variant", "fam", "--block", "4", "--memory", "2", "--fam-init", "p.npy",
                     "--fam-out", "pf.npy"] + io + ["--out", "f.npy"], cwd=d)
    ok = r1.returncode == 0 and r2.returncode == 0
    err = float("inf")
    if ok:
        err = float(np.abs(np.load(os.path.join(d, "b.npy")).astype(np.float64) -
                           np.load(os.path.join(d, "f.npy"))).max())
        ok = err <= TOL * 2 and np.load(os.path.join(d, "pf.npy")).shape == (H, 0, D)
    print("%s fam with F=0 equals bswa: max|diff| %.2e" % ("ok  " if ok else "FAIL", err))
    shutil.rmtree(d)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# PyTorch (optional)


def load_torch():
    state = {"sdpa": None, "why": "", "version": ""}
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # ImportError, or a broken install
        state["why"] = "not importable (%s)" % type(e).__name__
        return state
    if not hasattr(F, "scaled_dot_product_attention"):
        state["why"] = "torch %s has no scaled_dot_product_attention" % torch.__version__
        return state
    state.update(sdpa=F.scaled_dot_product_attention, torch=torch, version=torch.__version__)
    return state


def torch_sdpa(state, q, k, v, mask, scale):
    """torch's SDPA in float64 on [1, H, L, D], kv heads repeated for GQA; mask True = visible."""
    torch = state["torch"]
    H, Hkv, D = q.shape[1], k.shape[1], q.shape[2]
    tq = torch.from_numpy(np.asarray(q, np.float64).transpose(1, 0, 2).copy())[None]
    tk = torch.from_numpy(np.asarray(k, np.float64).transpose(1, 0, 2).copy())[None]
    tv = torch.from_numpy(np.asarray(v, np.float64).transpose(1, 0, 2).copy())[None]
    tk = tk.repeat_interleave(H // Hkv, dim=1)
    tv = tv.repeat_interleave(H // Hkv, dim=1)
    tm = torch.from_numpy(np.ascontiguousarray(mask))
    try:
        o = state["sdpa"](tq, tk, tv, attn_mask=tm, scale=float(scale))
    except TypeError:  # torch 2.0: no scale argument, the default is 1/sqrt(D)
        o = state["sdpa"](tq * (float(scale) * np.sqrt(D)), tk, tv, attn_mask=tm)
    return o[0].numpy().transpose(1, 0, 2)


# ---------------------------------------------------------------------------------------------
# Bad input


def bad_input(runner, rng):
    L, H, Hkv, D = 6, 4, 2, 8
    f32 = np.float32
    good = {
        "q.npy": rng.uniform(-1, 1, (L, H, D)).astype(f32),
        "k.npy": rng.uniform(-1, 1, (L, Hkv, D)).astype(f32),
        "v.npy": rng.uniform(-1, 1, (L, Hkv, D)).astype(f32),
        "qm.npy": rng.uniform(-1, 1, (L, H, D)).astype(f32),  # MHA set for fam
        "km.npy": rng.uniform(-1, 1, (L, H, D)).astype(f32),
        "vm.npy": rng.uniform(-1, 1, (L, H, D)).astype(f32),
        "p.npy": rng.uniform(-1, 1, (H, 2, D)).astype(f32),
        "q2d.npy": np.zeros((L, H * D), f32),
        "k4d.npy": np.zeros((L, Hkv, D, 1), f32),
        "kshort.npy": np.zeros((L - 1, Hkv, D), f32),
        "vshort.npy": np.zeros((L - 1, Hkv, D), f32),
        "kd.npy": np.zeros((L, Hkv, D + 1), f32),
        "vd.npy": np.zeros((L, Hkv, D - 1), f32),
        "vh.npy": np.zeros((L, Hkv + 2, D), f32),
        "k3.npy": np.zeros((L, 3, D), f32),
        "v3.npy": np.zeros((L, 3, D), f32),
        "q0h.npy": np.zeros((L, 0, D), f32),
        "q0d.npy": np.zeros((L, H, 0), f32),
        "k0d.npy": np.zeros((L, Hkv, 0), f32),
        "v0d.npy": np.zeros((L, Hkv, 0), f32),
        "qbig.npy": np.zeros((1, 1, 1025), f32),
        "kbig.npy": np.zeros((1, 1, 1025), f32),
        "vbig.npy": np.zeros((1, 1, 1025), f32),
        "pH.npy": np.zeros((H + 1, 2, D), f32),
        "pD.npy": np.zeros((H, 2, D + 1), f32),
        "p2d.npy": np.zeros((H, D), f32),
        "qi4.npy": np.zeros((L, H, D), np.int32),
        "qf2.npy": np.zeros((L, H, D), np.float16),
        "qc8.npy": np.zeros((L, H, D), np.complex64),
        "qbe.npy": np.zeros((L, H, D), ">f4"),
        "qbe8.npy": np.zeros((L, H, D), ">f8"),
        "qfort.npy": np.asfortranarray(np.zeros((L, H, D), f32)),
        "empty.npy": None,
    }
    nan_q = good["q.npy"].copy()
    nan_q[2, 1, 3] = np.nan
    good["qnan.npy"] = nan_q
    inf_v = good["v.npy"].copy()
    inf_v[0, 0, 0] = np.inf
    good["vinf.npy"] = inf_v
    big8 = good["q.npy"].astype(np.float64)
    big8[1, 1, 1] = 1e300
    good["qbig8.npy"] = big8
    qd = good["q.npy"].tobytes()
    sh = "(%d, %d, %d)" % (L, H, D)
    raw = {
        "badmagic.npy": npy_bytes("<f4", False, (L, H, D), qd, magic=b"\x93NUMPZ"),
        "notnpy.npy": b"hello, this is not a numpy file at all\n",
        "short.npy": b"\x93NUM",
        "v4.npy": npy_bytes("<f4", False, (L, H, D), qd, version=(4, 0)),
        "v11.npy": npy_bytes("<f4", False, (L, H, D), qd, version=(1, 1)),
        "hdrlen.npy": b"\x93NUMPY\x01\x00\xff\x7f{'descr': '<f4'",
        "notdict.npy": npy_bytes(header="['<f4', False, %s]" % sh, data=qd),
        "nokey.npy": npy_bytes(header="{'descr': '<f4', 'fortran_order': False}", data=qd),
        "extrakey.npy": npy_bytes(
            header="{'descr': '<f4', 'fortran_order': False, 'shape': %s, 'x': 1}" % sh, data=qd),
        "dupkey.npy": npy_bytes(
            header="{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': %s}" % sh,
            data=qd),
        "negshape.npy": npy_bytes(header="{'descr': '<f4', 'fortran_order': False, "
                                         "'shape': (6, -4, 8)}", data=qd),
        "floatshape.npy": npy_bytes(header="{'descr': '<f4', 'fortran_order': False, "
                                           "'shape': (6, 4.0, 8)}", data=qd),
        "listshape.npy": npy_bytes(header="{'descr': '<f4', 'fortran_order': False, "
                                          "'shape': 192}", data=qd),
        "hugeshape.npy": npy_bytes(header="{'descr': '<f4', 'fortran_order': False, "
                                          "'shape': (99999999999999999999, 4, 8)}", data=qd),
        "overflow.npy": npy_bytes(header="{'descr': '<f4', 'fortran_order': False, "
                                         "'shape': (4294967296, 4294967296, 8)}", data=qd),
        "unterminated.npy": npy_bytes(header="{'descr': '<f4, 'fortran_order': False, "
                                             "'shape': %s}" % sh, data=qd),
        "fortranstr.npy": npy_bytes(header="{'descr': '<f4', 'fortran_order': 'no', "
                                           "'shape': %s}" % sh, data=qd),
        "structured.npy": npy_bytes(header="{'descr': [('a', '<f4')], 'fortran_order': False, "
                                           "'shape': %s}" % sh, data=qd),
        "trunc.npy": npy_bytes("<f4", False, (L, H, D), qd[:-3]),
        "trailing.npy": npy_bytes("<f4", False, (L, H, D), qd + b"\0\0\0\0"),
        "hdrtrunc.npy": npy_bytes("<f4", False, (L, H, D), b"")[:40],
    }
    for name, a in good.items():
        if a is None:
            open(os.path.join(runner.work, name), "wb").close()
        else:
            np.save(os.path.join(runner.work, name), a)
    for name, b in raw.items():
        with open(os.path.join(runner.work, name), "wb") as f:
            f.write(b)
    os.mkdir(os.path.join(runner.work, "adir.npy"))
    unreadable = os.path.join(runner.work, "unreadable.npy")
    shutil.copy(os.path.join(runner.work, "q.npy"), unreadable)
    os.chmod(unreadable, 0)
    can_deny = os.geteuid() != 0

    def cmd(variant="full", q="q.npy", k="k.npy", v="v.npy", out="o.npy", **extra):
        a = []
        if variant is not None:
            a += ["--variant", variant]
        for name, val in (("--q", q), ("--k", k), ("--v", v), ("--out", out)):
            if val is not None:
                a += [name, val]
        for key, val in extra.items():
            a += ["--" + key.replace("_", "-"), val]
        return a

    def fam(**kw):
        base = dict(variant="fam", q="qm.npy", k="km.npy", v="vm.npy", block="2", memory="1",
                    fam_init="p.npy")
        base.update(kw)
        return cmd(**{k: v for k, v in base.items() if v is not None})

    table = [
        # (description, args, argument that the message must name)
        ("no variant", cmd(variant=None), "--variant"),
        ("unknown variant", cmd(variant="local"), "--variant"),
        ("missing --q", cmd(q=None), "--q"),
        ("missing --out", cmd(out=None), "--out"),
        ("missing file", cmd(q="nope.npy"), "--q"),
        ("directory as input", cmd(k="adir.npy"), "--k"),
        ("empty file", cmd(v="empty.npy"), "--v"),
        ("Q rank 2", cmd(q="q2d.npy"), "--q"),
        ("K rank 4", cmd(k="k4d.npy"), "--k"),
        ("int32 dtype", cmd(q="qi4.npy"), "--q"),
        ("float16 dtype", cmd(q="qf2.npy"), "--q"),
        ("complex dtype", cmd(q="qc8.npy"), "--q"),
        ("big-endian f4", cmd(q="qbe.npy"), "--q"),
        ("big-endian f8", cmd(q="qbe8.npy"), "--q"),
        ("fortran order", cmd(q="qfort.npy"), "--q"),
        ("bad magic", cmd(q="badmagic.npy"), "--q"),
        ("not npy", cmd(k="notnpy.npy"), "--k"),
        ("shorter than the magic", cmd(q="short.npy"), "--q"),
        ("format 4.0", cmd(q="v4.npy"), "--q"),
        ("format 1.1", cmd(q="v11.npy"), "--q"),
        ("header length beyond the file", cmd(q="hdrlen.npy"), "--q"),
        ("header cut short", cmd(q="hdrtrunc.npy"), "--q"),
        ("header not a dict", cmd(q="notdict.npy"), "--q"),
        ("header without shape", cmd(q="nokey.npy"), "--q"),
        ("header with an extra key", cmd(q="extrakey.npy"), "--q"),
        ("header with a duplicate key", cmd(q="dupkey.npy"), "--q"),
        ("negative dimension", cmd(q="negshape.npy"), "--q"),
        ("float dimension", cmd(q="floatshape.npy"), "--q"),
        ("shape not a tuple", cmd(q="listshape.npy"), "--q"),
        ("dimension beyond int64", cmd(q="hugeshape.npy"), "--q"),
        ("element count overflows", cmd(q="overflow.npy"), "--q"),
        ("unterminated string", cmd(q="unterminated.npy"), "--q"),
        ("fortran_order not a bool", cmd(q="fortranstr.npy"), "--q"),
        ("structured dtype", cmd(q="structured.npy"), "--q"),
        ("truncated data", cmd(q="trunc.npy"), "--q"),
        ("trailing bytes", cmd(q="trailing.npy"), "--q"),
        ("NaN in Q", cmd(q="qnan.npy"), "--q"),
        ("inf in V", cmd(v="vinf.npy"), "--v"),
        ("f8 value beyond float32", cmd(q="qbig8.npy"), "--q"),
        ("K length differs", cmd(k="kshort.npy"), "--k"),
        ("V length differs", cmd(v="vshort.npy"), "--v"),
        ("K head dim differs", cmd(k="kd.npy"), "--k"),
        ("V head dim differs", cmd(v="vd.npy"), "--v"),
        ("V kv heads differ from K", cmd(v="vh.npy"), "--v"),
        ("H % Hkv != 0", cmd(k="k3.npy", v="v3.npy"), "--k"),
        ("zero heads", cmd(q="q0h.npy"), "--q"),
        ("zero head dim", cmd(q="q0d.npy", k="k0d.npy", v="v0d.npy"), "--q"),
        ("head dim above the backend limit", cmd(q="qbig.npy", k="kbig.npy", v="vbig.npy"),
         "--q"),
        ("swa without --window", cmd(variant="swa"), "--window"),
        ("window 0", cmd(variant="swa", window="0"), "--window"),
        ("window -3", cmd(variant="swa", window="-3"), "--window"),
        ("window not numeric", cmd(variant="swa", window="seven"), "--window"),
        ("window 2.5", cmd(variant="swa", window="2.5"), "--window"),
        ("window 1e3", cmd(variant="swa", window="1e3"), "--window"),
        ("window beyond int64", cmd(variant="swa", window="99999999999999999999"), "--window"),
        ("window with trailing text", cmd(variant="swa", window="4x"), "--window"),
        ("window with a space", cmd(variant="swa", window=" 4"), "--window"),
        ("bswa without --block", cmd(variant="bswa", memory="1"), "--block"),
        ("bswa without --memory", cmd(variant="bswa", block="2"), "--memory"),
        ("block 0", cmd(variant="bswa", block="0", memory="1"), "--block"),
        ("block -1", cmd(variant="bswa", block="-1", memory="1"), "--block"),
        ("block nan", cmd(variant="bswa", block="nan", memory="1"), "--block"),
        ("memory -1", cmd(variant="bswa", block="2", memory="-1"), "--memory"),
        ("memory not numeric", cmd(variant="bswa", block="2", memory="x"), "--memory"),
        ("scale 0", cmd(scale="0"), "--scale"),
        ("scale -1", cmd(scale="-1"), "--scale"),
        ("scale nan", cmd(scale="nan"), "--scale"),
        ("scale inf", cmd(scale="inf"), "--scale"),
        ("scale 1e999", cmd(scale="1e999"), "--scale"),
        ("scale not numeric", cmd(scale="abc"), "--scale"),
        ("scale with trailing text", cmd(scale="0.5s"), "--scale"),
        ("window with full", cmd(window="3"), "--window"),
        ("block with swa", cmd(variant="swa", window="3", block="2"), "--block"),
        ("fam-init with bswa", cmd(variant="bswa", block="2", memory="1", fam_init="p.npy"),
         "--fam-init"),
        ("fam-out with full", cmd(fam_out="pf.npy"), "--fam-out"),
        ("fam without --fam-init", fam(fam_init=None), "--fam-init"),
        ("fam without --block", fam(block=None), "--block"),
        ("fam with GQA", fam(q="q.npy", k="k.npy", v="v.npy"), "--k"),
        ("fam-init rank 2", fam(fam_init="p2d.npy"), "--fam-init"),
        ("fam-init heads differ", fam(fam_init="pH.npy"), "--fam-init"),
        ("fam-init head dim differs", fam(fam_init="pD.npy"), "--fam-init"),
        ("fam-init missing file", fam(fam_init="nope.npy"), "--fam-init"),
        ("fam-out same as out", fam(fam_out="o.npy"), "--fam-out"),
        ("fam-out in a missing directory", fam(fam_out="nodir/pf.npy"), "--fam-out"),
        ("out in a missing directory", cmd(out="nodir/o.npy"), "--out"),
        ("out is a directory", cmd(out="adir.npy"), "--out"),
        ("unknown option", cmd() + ["--foo", "1"], "--foo"),
        ("option given twice", cmd() + ["--q", "q.npy"], "--q"),
        ("option without a value", cmd() + ["--scale"], "--scale"),
        ("option followed by an option", cmd(q=None) + ["--q", "--scale", "1"], "--q"),
        ("empty value", cmd(q=""), "--q"),
        ("positional argument", cmd() + ["extra.npy"], "extra.npy"),
    ]
    if can_deny:
        table.append(("unreadable file", cmd(q="unreadable.npy"), "--q"))
    else:
        print("note: running as root, the unreadable-file row is skipped")

    inputs = sorted(os.listdir(runner.work))
    failures = 0
    for desc, args, arg in table:
        r = runner.run(args, cwd=runner.work)
        err = r.stderr.decode("utf-8", "replace")
        problems = []
        if r.returncode <= 0:
            problems.append("exit status %d" % r.returncode)
        if err.count("\n") != 1 or not err.endswith("\n"):
            problems.append("stderr is not one line: %r" % err)
        if arg not in err:
            problems.append("message does not name %s: %r" % (arg, err))
        if r.stdout:
            problems.append("stdout not empty")
        now = sorted(os.listdir(runner.work))
        if now != inputs:
            problems.append("files left behind: %s" % sorted(set(now) - set(inputs)))
            for extra in set(now) - set(inputs):
                path = os.path.join(runner.work, extra)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        print("%s %-34s exit %d  %s" % ("ok  " if not problems else "FAIL", desc, r.returncode,
                                       err.strip() if not problems else "; ".join(problems)))
        failures += bool(problems)

    # an existing output survives a failed run untouched, and is replaced by a good one
    out = os.path.join(runner.work, "o.npy")
    with open(out, "wb") as f:
        f.write(b"previous")
    r = runner.run(cmd(k="kshort.npy"), cwd=runner.work)
    kept = open(out, "rb").read() == b"previous" and r.returncode != 0
    r = runner.run(cmd(), cwd=runner.work)
    replaced = r.returncode == 0 and np.load(out).shape == (L, H, D)
    leftovers = [n for n in os.listdir(runner.work) if ".tmp." in n]
    ok = kept and replaced and not leftovers
    print("%s existing output kept on failure, replaced on success%s" % (
        "ok  " if ok else "FAIL", "" if ok else ": kept %s replaced %s leftovers %s" % (
            kept, replaced, leftovers)))
    failures += not ok
    os.remove(out)

    # --help documents every option and exits 0
    r = runner.run(["--help"])
    text = r.stdout.decode()
    missing = [o for o in ("--variant", "--q", "--k", "--v", "--out", "--window", "--block",
                           "--memory", "--scale", "--fam-init", "--fam-out", "full", "swa",
                           "bswa", "fam") if o not in text]
    ok = r.returncode == 0 and not missing
    print("%s --help documents every option%s" % ("ok  " if ok else "FAIL",
                                                  "" if ok else ": missing %s" % missing))
    failures += not ok
    os.chmod(unreadable, 0o600)
    return len(table) + 2, failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fam-run", required=True, help="path of the fam-run executable")
    ap.add_argument("--part", choices=("numerics", "bad-input", "all"), default="all")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("FAM_TEST_SEED", "20240404")))
    ap.add_argument("--keep", help="work in this directory and keep it")
    a = ap.parse_args()
    fam_run = os.path.abspath(a.fam_run)
    if not os.access(fam_run, os.X_OK):
        print("error: %s is not an executable" % fam_run)
        return 1
    print("numpy %s, seed %d, fam-run %s" % (np.__version__, a.seed, fam_run))
    rng = np.random.default_rng(a.seed)
    work = a.keep or tempfile.mkdtemp(prefix="fam_run_")
    os.makedirs(work, exist_ok=True)
    runs = fails = 0
    try:
        if a.part in ("numerics", "all"):
            n, f = numerics(Runner(fam_run, os.path.join(work, "numerics")), rng, load_torch())
            runs, fails = runs + n, fails + f
        if a.part in ("bad-input", "all"):
            bad = os.path.join(work, "bad")
            os.makedirs(bad, exist_ok=True)
            n, f = bad_input(Runner(fam_run, bad), rng)
            runs, fails = runs + n, fails + f
    finally:
        if not a.keep:
            for root, dirs, _ in os.walk(work):
                for d in dirs:
                    os.chmod(os.path.join(root, d), 0o700)
            shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (runs - fails, fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
