#!/usr/bin/env python3
"""Writes LORITOK1 token-shard files (native/README.md, "Token shards") without Node.js.

    make_shards.py OUT.bin --vocab V --seqs N --len T --prompt P [--seed S]

Tokens come from the same LCG as bench/train.ts (x = x * 1103515245 + 12345 mod 2^32, token = x % (V - 3) + 3;
for V = 260 and seed 12345 these are exactly bench/train.ts's sequences). Positions >= P are supervised.
Standard library only.
"""
import argparse
import struct
import sys


def lcg_sequences(vocab, n_seqs, length, seed):
    x = seed
    span = vocab - 3
    out = []
    for _ in range(n_seqs):
        seq = []
        for _ in range(length):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            seq.append(x % span + 3)
        out.append(seq)
    return out


def write_shards(path, seqs, prompt):
    parts = [b"LORITOK1", struct.pack("<II", 1, len(seqs))]
    for toks in seqs:
        n = len(toks)
        parts.append(struct.pack("<I", n))
        parts.append(struct.pack("<%dI" % n, *toks))
        sup = bytes(1 if i >= prompt else 0 for i in range(n))
        parts.append(sup)
        parts.append(b"\0" * ((-n) % 4))
    with open(path, "wb") as f:
        f.write(b"".join(parts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--seqs", type=int, required=True)
    ap.add_argument("--len", type=int, required=True)
    ap.add_argument("--prompt", type=int, default=0)
    ap.add_argument("--seed", type=int, default=12345)
    a = ap.parse_args()
    if a.vocab < 4 or a.len < 2 or a.prompt >= a.len:
        sys.exit("make_shards: need vocab >= 4, len >= 2, prompt < len")
    write_shards(a.out, lcg_sequences(a.vocab, a.seqs, a.len, a.seed), a.prompt)


if __name__ == "__main__":
    main()
