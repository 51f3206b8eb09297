#!/usr/bin/env python3
"""Helpers for scripts/cuda-check/run.sh (standard library only; numpy is used when present, for speed).

    check_tools.py logits-diff A.f32 B.f32            -> JSON: max_abs_diff, mean_abs_diff, max_abs_a, n_values
    check_tools.py adapter-diff A.safetensors B.safetensors -> JSON: max_abs_diff, max_abs_a, n_tensors, n_values
    check_tools.py make-mask OUT --layers L --rank R --dims q=32,k=16,... [--density 0.5] [--seed 1]
    check_tools.py summary OUT_DIR                      -> writes OUT_DIR/cuda-check.json from OUT_DIR/raw/*
"""
import array
import json
import math
import os
import random
import statistics
import struct
import sys

try:
    import numpy as np
except Exception:  # pragma: no cover - numpy is optional
    np = None

GGUF = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
SHORT = ["q", "k", "v", "o", "gate", "up", "down"]


# ---------------------------------------------------------------------------------------------- comparisons

def read_f32(path):
    with open(path, "rb") as f:
        data = f.read()
    if np is not None:
        return np.frombuffer(data, dtype="<f4").astype(np.float64)
    a = array.array("f")
    a.frombytes(data)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def diff_stats(a, b):
    if len(a) != len(b):
        return {"error": "size mismatch: %d vs %d values" % (len(a), len(b))}
    if len(a) == 0:
        return {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "max_abs_a": 0.0, "n_values": 0, "n_nonfinite": 0}
    if np is not None:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        bad = int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
        d = np.abs(a - b)
        d = d[np.isfinite(d)]
        return {"max_abs_diff": float(d.max()) if d.size else float("nan"),
                "mean_abs_diff": float(d.mean()) if d.size else float("nan"),
                "max_abs_a": float(np.abs(a[np.isfinite(a)]).max()) if np.isfinite(a).any() else float("nan"),
                "n_values": int(a.size), "n_nonfinite": bad}
    mx = tot = ma = 0.0
    bad = 0
    for x, y in zip(a, b):
        if not (math.isfinite(x) and math.isfinite(y)):
            bad += 1
            continue
        d = abs(x - y)
        mx = max(mx, d)
        tot += d
        ma = max(ma, abs(x))
    return {"max_abs_diff": mx, "mean_abs_diff": tot / max(1, len(a) - bad), "max_abs_a": ma,
            "n_values": len(a), "n_nonfinite": bad}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            continue
        s, e = info["data_offsets"]
        raw = data[base + s:base + e]
        if np is not None:
            out[name] = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        else:
            a = array.array("f")
            a.frombytes(raw)
            out[name] = a
    return out, header.get("__metadata__", {})


def adapter_diff(pa, pb):
    ta, ma = read_safetensors(pa)
    tb, mb = read_safetensors(pb)
    if set(ta) != set(tb):
        return {"error": "tensor names differ", "only_a": sorted(set(ta) - set(tb))[:5], "only_b": sorted(set(tb) - set(ta))[:5]}
    worst = {"max_abs_diff": 0.0, "max_abs_a": 0.0, "n_values": 0, "n_tensors": len(ta), "worst_tensor": None}
    for name in sorted(ta):
        s = diff_stats(ta[name], tb[name])
        if "error" in s:
            return {"error": name + ": " + s["error"]}
        worst["n_values"] += s["n_values"]
        worst["max_abs_a"] = max(worst["max_abs_a"], s["max_abs_a"])
        if s["max_abs_diff"] >= worst["max_abs_diff"]:
            worst["max_abs_diff"] = s["max_abs_diff"]
            worst["worst_tensor"] = name
    worst["method"] = ma.get("method")
    worst["steps"] = [ma.get("steps"), mb.get("steps")]
    return worst


def make_mask(out, layers, rank, dims, density, seed):
    rng = random.Random(seed)
    tensors = []
    for il in range(layers):
        for short, gguf in zip(SHORT, GGUF):
            if short not in dims:
                continue
            n = dims[short] * rank
            data = bytes(1 if rng.random() < density else 0 for _ in range(n))
            tensors.append(("blk.%d.%s.lora_b" % (il, gguf), [dims[short], rank], data))
    header, off = {"__metadata__": {"format": "lori-mask"}}, 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "U8", "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, data in tensors:
            f.write(data)


# ---------------------------------------------------------------------------------------------- summary

def read_events(path):
    events = []
    if not os.path.exists(path):
        return events
    with open(path, "r", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
    return events


def first(events, kind):
    for e in events:
        if e.get("event") == kind:
            return e
    return None


def tail_text(path, n=600):
    if not os.path.exists(path):
        return None
    with open(path, "r", errors="replace") as f:
        t = f.read()
    return t[-n:] if t else None


def stage_times(raw):
    times = {}
    p = os.path.join(raw, "times.txt")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    times[parts[0]] = {"seconds": round(float(parts[1]), 2), "rc": int(parts[2])}
    return times


def kv_file(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    out[k] = v
    return out


def run_status(raw, name, times):
    """A trainer run: its terminal event, or why it is missing."""
    ev = read_events(os.path.join(raw, name + ".jsonl"))
    err = first(ev, "error")
    st = {"rc": times.get(name, {}).get("rc"), "seconds": times.get(name, {}).get("seconds")}
    if err:
        st["error"] = err.get("message")
    elif st["rc"] not in (None, 0):
        st["error"] = "exit %s; stderr tail: %s" % (st["rc"], tail_text(os.path.join(raw, name + ".err")))
    return ev, st


def gradcheck_summary(raw, name, times):
    ev, st = run_status(raw, name, times)
    if not ev and st["rc"] is None:
        return None
    g = first(ev, "gradcheck")
    s = first(ev, "start") or {}
    if g:
        for k in ("max_rel_err", "median_rel_err", "norm_rel_err", "max_abs_err", "max_abs_grad", "loss", "checked",
                  "masked_entries", "masked_nonzero_grads", "masked_fd_max_abs"):
            if k in g:
                st[k] = g[k]
    if s.get("backend"):
        st["backend"] = s.get("backend")
    return st


def train_summary(raw, name, times, warmup=5):
    ev, st = run_status(raw, name, times)
    if not ev and st["rc"] is None:
        return None
    start = first(ev, "start") or {}
    done = first(ev, "done")
    steps = [e for e in ev if e.get("event") == "step"]
    st.update({k: start.get(k) for k in ("backend", "device", "threads", "method", "rank", "seq_len", "batch",
                                          "trainable_params", "weight_types") if k in start})
    if steps:
        st["steps_done"] = steps[-1]["step"]
        st["first_loss"] = steps[0]["loss"]
        st["last_loss"] = steps[-1]["loss"]
        st["tokens_per_step"] = steps[0]["tokens"]
        steady = [e["tokens_per_s"] for e in steps[warmup:]] or [e["tokens_per_s"] for e in steps]
        st["steady_tokens_per_s"] = statistics.median(steady)
        st["steady_steps_per_s"] = st["steady_tokens_per_s"] / max(1, steps[0]["tokens"])
        st["first_step_s"] = steps[0]["tokens"] / steps[0]["tokens_per_s"] if steps[0]["tokens_per_s"] else None
    if done:
        st["tokens_per_s"] = done.get("tokens_per_s")
        st["final_loss"] = done.get("final_loss")
        st["peak_rss_mb"] = done.get("peak_rss_mb")
        st["elapsed_s"] = done.get("elapsed_s")
        if done.get("tokens_per_s") and done.get("tokens"):
            train_s = done["tokens"] / done["tokens_per_s"]
            st["steps_per_s"] = done["steps"] / train_s if train_s > 0 else None
    return st


def loss_curve_diff(raw, a, b):
    la = [e["loss"] for e in read_events(os.path.join(raw, a + ".jsonl")) if e.get("event") == "step"]
    lb = [e["loss"] for e in read_events(os.path.join(raw, b + ".jsonl")) if e.get("event") == "step"]
    n = min(len(la), len(lb))
    if n == 0:
        return None
    d = [abs(x - y) for x, y in zip(la[:n], lb[:n])]
    return {"steps_compared": n, "max_abs_loss_diff": max(d), "max_rel_loss_diff": max(di / max(abs(x), 1e-30) for di, x in zip(d, la))}


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None


def summary(out_dir):
    raw = os.path.join(out_dir, "raw")
    times = stage_times(raw)
    info = kv_file(os.path.join(raw, "info.txt"))
    res = {"check": "lori-train on CUDA (scripts/cuda-check/run.sh)", "mode": info.get("mode"),
           "host": {k: info.get(k) for k in ("gpu", "driver", "gpu_memory", "compute_cap", "nvcc", "cmake", "gxx",
                                               "cpu", "nproc", "python") if info.get(k)},
           "ggml_commit": info.get("ggml_commit"), "repo_commit": info.get("repo_commit"),
           "config": {k: info.get(k) for k in ("steps", "cpu_steps", "cpu_threads", "jobs", "cuda_arch", "cmake_options") if info.get(k)}}
    b = {}
    for k in ("ggml_configure", "ggml_build", "trainer_build"):
        if k in times:
            b[k + "_s"] = times[k]["seconds"]
            b[k + "_rc"] = times[k]["rc"]
    for k in ("build_resumed", "ggml_libs"):
        if info.get(k):
            b[k] = info.get(k)
    res["build"] = b

    gc = {}
    for name in sorted(n for n in times if n.startswith("gradcheck_")):
        s = gradcheck_summary(raw, name, times)
        if s is not None:
            gc[name[len("gradcheck_"):]] = s
    res["gradcheck"] = gc

    tr = {}
    for name in sorted(n for n in times if n.startswith("train_")):
        s = train_summary(raw, name, times)
        if s is not None:
            tr[name[len("train_"):]] = s
    res["train"] = tr
    alt = info.get("alt") or "cuda"
    cu, cp = tr.get(alt + "_lora", {}), tr.get("cpu_lora", {})
    if cu.get("steady_tokens_per_s") and cp.get("steady_tokens_per_s"):
        res["train_speedup_%s_vs_cpu" % alt] = cu["steady_tokens_per_s"] / cp["steady_tokens_per_s"]

    par = {}
    lc = loss_curve_diff(raw, "train_%s_lora_short" % alt, "train_cpu_lora")
    if lc:
        par["training_losses"] = lc
    ad = load_json(os.path.join(raw, "adapter_diff.json"))
    if ad:
        par["training_adapter"] = ad
    ld = load_json(os.path.join(raw, "logits_diff.json"))
    if ld:
        par["logits"] = ld
    la = first(read_events(os.path.join(raw, "logits_a.jsonl")), "done")
    lb = first(read_events(os.path.join(raw, "logits_b.jsonl")), "done")
    if la and lb:
        par["logits_loss"] = {"a": la.get("loss"), "b": lb.get("loss"), "abs_diff": abs(la["loss"] - lb["loss"])}
    if info.get("parity_pair"):
        par["pair"] = info.get("parity_pair")
    for name in ("logits_a", "logits_b"):
        if name in times and times[name]["rc"] != 0:
            par.setdefault("errors", {})[name] = run_status(raw, name, times)[1].get("error")
    res["parity"] = par

    peft = load_json(os.path.join(raw, "peft.json"))
    if peft is None and "peft" in times:
        peft = {"error": "no result; log tail: %s" % tail_text(os.path.join(raw, "peft.log"))}
    if peft is not None:
        res["peft"] = peft
        fp = ((peft.get("results") or {}).get("fp32") or {}).get("tokens_per_s")
        if fp and cu.get("steady_tokens_per_s"):
            res["lori_%s_vs_peft_fp32" % alt] = cu["steady_tokens_per_s"] / fp
        bf = ((peft.get("results") or {}).get("bf16") or {}).get("tokens_per_s")
        if bf and cu.get("steady_tokens_per_s"):
            res["lori_%s_vs_peft_bf16" % alt] = cu["steady_tokens_per_s"] / bf

    res["stages"] = times
    res["total_s"] = float(info["total_s"]) if info.get("total_s") else None
    failed = sorted(n for n, t in times.items() if t["rc"] != 0)
    res["failed_stages"] = failed
    res["finished"] = info.get("finished") == "1"
    res["ok"] = res["finished"] and not failed
    tmp = os.path.join(out_dir, "cuda-check.json.tmp")
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1, sort_keys=False)
    os.replace(tmp, os.path.join(out_dir, "cuda-check.json"))
    return res


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "logits-diff":
        print(json.dumps(diff_stats(read_f32(argv[2]), read_f32(argv[3]))))
    elif cmd == "adapter-diff":
        print(json.dumps(adapter_diff(argv[2], argv[3])))
    elif cmd == "make-mask":
        import argparse
        ap = argparse.ArgumentParser(prog="check_tools.py make-mask")
        ap.add_argument("out")
        ap.add_argument("--layers", type=int, required=True)
        ap.add_argument("--rank", type=int, required=True)
        ap.add_argument("--dims", required=True, help="q=32,k=16,... (output features per projection)")
        ap.add_argument("--density", type=float, default=0.5)
        ap.add_argument("--seed", type=int, default=1)
        a = ap.parse_args(argv[2:])
        dims = {k: int(v) for k, v in (kv.split("=") for kv in a.dims.split(","))}
        make_mask(a.out, a.layers, a.rank, dims, a.density, a.seed)
    elif cmd == "summary":
        print(json.dumps(summary(argv[2]), indent=1))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
