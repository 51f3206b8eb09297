#!/usr/bin/env python3
"""PyTorch + PEFT LoRA training speed on the trainer's bench shape, for comparison with lori-train.

    peft_bench.py --out peft.json [--device cuda|cpu] [--warmup 10] [--steps 100] [--precisions fp32,bf16]

Model: transformers LlamaForCausalLM from a LlamaConfig at the bench shape (vocab 260, d 512, 8 layers, 8 heads,
4 kv heads, ff 1408, untied LM head), random init; PEFT LoraConfig r=32, alpha=64, dropout 0 on q,k,v,o,gate,up,
down (A and B trained, like lori-train's method "lora"); torch.optim.AdamW lr 1e-4; batch 4 x 128 tokens of the
same LCG data as make_shards.py (first 32 positions unsupervised, label -100). tokens/s counts every token of a
batch (4 x 128 per step), the same definition as lori-train's "tokens". Precisions:
  fp32  weights and math in float32 (TF32 matmuls off: torch's default)
  bf16  float32 weights, torch.autocast(bfloat16) forward (usual mixed precision)
Timing: `warmup` untimed steps, then `steps` timed steps between two device synchronisations.
Prints one JSON object and writes it to --out.
"""
import argparse
import json
import os
import sys
import time

SHAPE = dict(vocab=260, d=512, layers=8, heads=8, kv_heads=4, ff=1408)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lcg_sequences(vocab, n_seqs, length, seed=12345):
    x, span, out = seed, vocab - 3, []
    for _ in range(n_seqs):
        seq = []
        for _ in range(length):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            seq.append(x % span + 3)
        out.append(seq)
    return out


def run_one(torch, transformers, peft, device, precision, args):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=SHAPE["vocab"], hidden_size=SHAPE["d"], intermediate_size=SHAPE["ff"],
        num_hidden_layers=SHAPE["layers"], num_attention_heads=SHAPE["heads"],
        num_key_value_heads=SHAPE["kv_heads"], max_position_embeddings=max(256, args.seq_len),
        rms_norm_eps=1e-5, tie_word_embeddings=False, use_cache=False)
    model = transformers.LlamaForCausalLM(cfg)  # attention: transformers' default (sdpa), reported below
    model.to(device=device, dtype=torch.float32)
    lcfg = peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, bias="none",
                           target_modules=TARGETS, task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    seqs = lcg_sequences(SHAPE["vocab"], 16, args.seq_len)
    data = torch.tensor(seqs, dtype=torch.long, device=device)
    labels_all = data.clone()
    labels_all[:, : args.prompt] = -100
    n_batches = data.shape[0] // args.batch
    use_autocast = precision == "bf16"
    dev_type = "cuda" if device.startswith("cuda") else "cpu"

    def step(i):
        b = i % n_batches
        ids = data[b * args.batch:(b + 1) * args.batch]
        lab = labels_all[b * args.batch:(b + 1) * args.batch]
        if use_autocast:
            with torch.autocast(device_type=dev_type, dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=lab).loss
        else:
            loss = model(input_ids=ids, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if dev_type == "cuda":
            torch.cuda.synchronize()

    for i in range(args.warmup):
        step(i)
    sync()
    if dev_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = None
    for i in range(args.steps):
        loss = step(args.warmup + i)
    sync()
    dt = time.perf_counter() - t0
    tokens = args.steps * args.batch * args.seq_len
    res = {
        "precision": precision,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "tokens_per_step": args.batch * args.seq_len,
        "tokens_per_s": tokens / dt,
        "steps_per_s": args.steps / dt,
        "seconds": dt,
        "final_loss": float(loss.item()) if loss is not None else None,
        "trainable_params": n_trainable,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }
    if dev_type == "cuda":
        res["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    del model, opt
    if dev_type == "cuda":
        torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    out = {"shape": dict(SHAPE, rank=args.rank, batch=args.batch, seq_len=args.seq_len, prompt=args.prompt,
                         targets=TARGETS, optimizer="AdamW lr 1e-4, grad clip 1.0 (global norm)")}
    try:
        import torch
        import transformers
        import peft
    except Exception as e:  # report, do not fail the whole check
        out["error"] = "import failed: %s: %s" % (type(e).__name__, e)
        print(json.dumps(out))
        with open(args.out, "w") as f:
            json.dump(out, f)
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out.update(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
               device=device, torch_threads=torch.get_num_threads())
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
        out["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    out["results"] = {}
    for precision in [p for p in args.precisions.split(",") if p]:
        try:
            out["results"][precision] = run_one(torch, transformers, peft, device, precision, args)
        except Exception as e:
            out["results"][precision] = {"error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps({precision: out["results"][precision]}), file=sys.stderr, flush=True)
    print(json.dumps(out))
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
