"""Loads a vqib run's newest checkpoint into PyTorch modules named as the README's tensor table,
with `load_state_dict(strict=True)`, for every quantizer of the family.

    python load_checkpoint.py RUN_DIR [LATENTS.json]

Reads `RUN/config.json` for the architecture and the quantizer, builds the modules, reads
`RUN/checkpoints/<latest>/model.safetensors` (parsed here: the header's JSON and the raw
little-endian values, so only torch is needed), loads it strictly, runs the encoder and the
quantizer's hard code on random images, and prints one JSON line. With LATENTS.json (`{"z":
[[...], ...], "codes": [...]}`: latent rows and the codes vqib gave them) it also computes the
codes by the README's definitions and checks they are vqib's. Exits 1 when anything is missing,
unexpected or of the wrong shape, or a code differs.
"""

import json
import math
import os
import struct
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vqvae import Decoder, Encoder  # noqa: E402

DTYPES = {"F32": torch.float32, "F64": torch.float64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        buf = bytearray(data[lo:hi])
        out[name] = torch.frombuffer(buf, dtype=DTYPES[t["dtype"]]).reshape(t["shape"]).clone()
    return out


class Quantizer(nn.Module):
    """The quantizer's tensors: `codebook` [K, D] ([S*K, D] for rvq; none for fsq and lfq),
    `precision` [1] (sq), and the EMA state of vq-ema and soft-em as buffers."""

    def __init__(self, q):
        super().__init__()
        kind, k, d = q["kind"], q["codebook_size"], q["code_dim"]
        stages = q.get("stages") or 1
        if kind not in ("fsq", "lfq"):
            self.codebook = nn.Parameter(torch.zeros(k * stages, d))
        if kind == "sq":
            self.precision = nn.Parameter(torch.zeros(1))
        if kind in ("vq-ema", "soft-em") or (kind == "rvq" and q.get("update") == "ema"):
            rows = k * stages
            self.register_buffer("ema_count_hidden", torch.zeros(rows, dtype=torch.float64))
            self.register_buffer("ema_sum_hidden", torch.zeros(rows, d, dtype=torch.float64))


class Prior(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n))


class VqVae(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        q = cfg["quantizer"]
        c = cfg["data"]["image_shape"][0]
        h, d = cfg["model"]["hidden"], q["code_dim"]
        self.encoder = Encoder(c, h, d)
        self.decoder = Decoder(c, h, d)
        self.quantizer = Quantizer(q)
        self.prior = Prior(q["codebook_size"] * (q.get("stages") or 1))


def codes(q, quantizer, z):
    """The hard code of each row of z [N, D], as vqib computes it (README)."""
    kind = q["kind"]
    if kind == "fsq":
        levels = torch.tensor(q["levels"], dtype=torch.float64)
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 1, 0.0, 0.5)
        shift = torch.atanh(offset / half_l)
        r = torch.round(torch.tanh(z.double() + shift) * half_l - offset)
        digits = r + torch.floor(levels / 2)
        radix = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.float64), levels[:-1]]), 0)
        return (digits * radix).sum(1).long()
    if kind == "lfq":
        bits = (z > 0).long()
        return (bits << torch.arange(z.shape[1])).sum(1)
    e = quantizer.codebook.detach()
    k = q["codebook_size"]
    stages = q.get("stages") or 1
    r, out = z.clone(), []
    for s in range(stages):
        cb = e[s * k : (s + 1) * k]
        idx = torch.cdist(r, cb).argmin(1)
        out.append(idx + s * k)
        r = r - cb[idx]
    return torch.stack(out, 1).reshape(-1)


def main():
    run = sys.argv[1]
    cfg = json.load(open(os.path.join(run, "config.json")))
    ckpt = os.path.join(run, "checkpoints")
    with open(os.path.join(ckpt, "latest")) as f:
        latest = f.read().strip()
    tensors = read_safetensors(os.path.join(ckpt, latest, "model.safetensors"))
    model = VqVae(cfg)
    model.load_state_dict(tensors, strict=True)
    q = cfg["quantizer"]
    c, hh, ww = cfg["data"]["image_shape"]
    with torch.no_grad():
        z = model.encoder(torch.rand(2, c, hh, ww))
        rows = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        k = codes(q, model.quantizer, rows)
    space = q["codebook_size"] ** (q.get("stages") or 1)
    assert int(k.max()) < q["codebook_size"] * (q.get("stages") or 1) or q["kind"] in ("fsq", "lfq")
    result = {"quantizer": q["kind"], "tensors": len(tensors), "codes": k.numel(),
              "code_space_log2": math.log2(space)}
    if len(sys.argv) > 2:
        given = json.load(open(sys.argv[2]))
        z = torch.tensor(given["z"], dtype=torch.float32)
        mine = codes(q, model.quantizer, z).tolist()
        result["codes_match"] = mine == given["codes"]
        if not result["codes_match"]:
            print(json.dumps({"vqib": given["codes"], "torch": mine}))
            print(json.dumps(result))
            sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
