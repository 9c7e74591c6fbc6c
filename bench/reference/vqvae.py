"""PyTorch reference for vqib's benchmarks: the same architectures, initialisation scheme,
quantizers (vq, vq-ema, soft-em) and losses as vqib, run one case a process.

    python bench/reference/vqvae.py --case assign --k 65536
    python bench/reference/vqvae.py --case train --model mnist --quantizer vq

prints one JSON line (the same fields as `vqib bench`): seconds a run, items a second, achieved
GFLOP/s from the analytic flop count, and the process's peak resident memory. The thread count
is torch.set_num_threads(--threads) (bench/compare passes the same count to both sides).

Model (van den Oord et al. 2017, as vqib's `model` module): encoder conv4x4/2 -> ReLU ->
conv4x4/2 -> 2 residual blocks x + conv1x1(ReLU(conv3x3(ReLU(x)))) -> ReLU -> conv1x1 to D;
decoder conv3x3 -> 2 residual blocks -> ReLU -> convT4x4/2 -> ReLU -> convT4x4/2. Convolutions
keep PyTorch's default init (kaiming-uniform bound 1/sqrt(fan_in), the scheme burn's defaults
use); the codebook is U(-1/K, 1/K). Loss: mean (x_hat - x)^2 + mean (sg(z_e) - z_q)^2 (vq only)
+ beta mean (z_e - sg(z_q))^2; vq-ema and soft-em move the codebook by EMA (decay 0.99 / 0.999,
Laplace eps 1e-5, bias-corrected) of the (expected) counts and sums; soft-em draws m = 10 codes
from softmax(-d^2 / tau), tau = 1, and decodes their mean codeword. Adam lr 2e-4, eps 1e-8.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

N_VECTORS, CODE_DIM, SAMPLES = 8192, 64, 10
MODELS = {"mnist": (1, 28, 28, 128), "cifar": (3, 32, 32, 256)}


def rss_mib():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open("/proc/self/status") as f:
        cur = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0) / 1024.0
    return cur, peak


class ResBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv3x3 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv1x1 = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        return x + self.conv1x1(F.relu(self.conv3x3(F.relu(x))))


class Encoder(nn.Module):
    def __init__(self, c, h, d):
        super().__init__()
        self.conv1 = nn.Conv2d(c, h, 4, 2, 1)
        self.conv2 = nn.Conv2d(h, h, 4, 2, 1)
        self.res1, self.res2 = ResBlock(h), ResBlock(h)
        self.pre_vq = nn.Conv2d(h, d, 1)

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(x)))
        return self.pre_vq(F.relu(self.res2(self.res1(h))))


class Decoder(nn.Module):
    def __init__(self, c, h, d):
        super().__init__()
        self.conv_in = nn.Conv2d(d, h, 3, padding=1)
        self.res1, self.res2 = ResBlock(h), ResBlock(h)
        self.deconv1 = nn.ConvTranspose2d(h, h, 4, 2, 1)
        self.deconv2 = nn.ConvTranspose2d(h, c, 4, 2, 1)

    def forward(self, z):
        h = F.relu(self.res2(self.res1(self.conv_in(z))))
        return self.deconv2(F.relu(self.deconv1(h)))


def nearest(z, e):
    """Hard assignment (eq. 27): torch.cdist and argmin."""
    return torch.cdist(z, e).argmin(dim=1)


def soft_estep(z, e, m, tau=1.0):
    """Soft-EM E-step (eq. 28): log-softmax of -d^2 / tau, m samples, expected counts and sums."""
    logp = torch.log_softmax(-torch.cdist(z, e).pow(2) / tau, dim=1)
    samples = torch.multinomial(logp.exp(), m, replacement=True)
    k = e.shape[0]
    counts = torch.bincount(samples.reshape(-1), minlength=k).to(z.dtype) / m
    sums = torch.zeros_like(e).index_add_(0, samples.reshape(-1), z.repeat_interleave(m, 0)) / m
    return samples, counts, sums


class VqVae(nn.Module):
    def __init__(self, c, h, k, d, quantizer, decay):
        super().__init__()
        self.encoder, self.decoder = Encoder(c, h, d), Decoder(c, h, d)
        self.codebook = nn.Parameter(torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k),
                                     requires_grad=quantizer == "vq")
        self.quantizer, self.decay, self.eps, self.updates = quantizer, decay, 1e-5, 0
        self.register_buffer("ema_count", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("ema_sum", torch.zeros(k, d, dtype=torch.float64))

    def forward(self, x):
        z = self.encoder(x)
        b, d, h, w = z.shape
        z_e = z.permute(0, 2, 3, 1).reshape(-1, d)
        e = self.codebook
        if self.quantizer == "soft-em":
            samples, counts, sums = soft_estep(z_e.detach(), e.detach(), SAMPLES)
            z_q = e.detach()[samples].mean(dim=1)
            stats = (counts, sums)
            idx = None
        else:
            idx = nearest(z_e.detach(), e.detach())
            z_q = e[idx]
            stats = None
        z_st = z_e + (z_q - z_e).detach()
        x_hat = self.decoder(z_st.reshape(b, h, w, d).permute(0, 3, 1, 2))
        return x_hat, z_e, z_q, idx, stats

    @torch.no_grad()
    def ema_update(self, z_e, idx, stats):
        if stats is None:
            k = self.codebook.shape[0]
            counts = torch.bincount(idx, minlength=k).double()
            sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, z_e.double())
        else:
            counts, sums = stats[0].double(), stats[1].double()
        self.updates += 1
        a = 1.0 - self.decay
        self.ema_count.sub_((self.ema_count - counts) * a)
        self.ema_sum.sub_((self.ema_sum - sums) * a)
        db = 1.0 - self.decay ** self.updates
        n_k = self.ema_count / db
        n = n_k.sum()
        smoothed = (n_k + self.eps) / (n + n_k.numel() * self.eps) * n
        self.codebook.copy_((self.ema_sum / db / smoothed.unsqueeze(1)).float())


def forward_flops(model, d):
    c, h, w, hid = MODELS[model]
    h2, w2, h4, w4 = h // 2, w // 2, h // 4, w // 4
    conv = lambda px, ci, co, taps: 2.0 * px * ci * co * taps
    res = 2 * (conv(h4 * w4, hid, hid, 9) + conv(h4 * w4, hid, hid, 1))
    enc = conv(h2 * w2, c, hid, 16) + conv(h4 * w4, hid, hid, 16) + res + conv(h4 * w4, hid, d, 1)
    dec = conv(h4 * w4, d, hid, 9) + res + conv(h4 * w4, hid, hid, 16) + conv(h2 * w2, hid, c, 16)
    return enc + dec


def timed(warmup, iters, f):
    for _ in range(warmup):
        f()
    t = time.perf_counter()
    for _ in range(max(iters, 1)):
        f()
    return (time.perf_counter() - t) / max(iters, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=["assign", "estep", "train", "eval"], required=True)
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--model", choices=list(MODELS), default="mnist")
    ap.add_argument("--quantizer", choices=["vq", "vq-ema", "soft-em"], default="vq")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mode", choices=["eager", "channels_last", "compile"], default="eager",
                    help="PyTorch's execution mode for the model cases: eager (NCHW), "
                         "channels_last (NHWC memory format) or compile (torch.compile, inductor, "
                         "on the encoder and decoder; compilation happens in the warm-up)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    rss0, _ = rss_mib()
    if a.case in ("assign", "estep"):
        z = torch.randn(N_VECTORS, CODE_DIM, device=dev)
        e = torch.randn(a.k, CODE_DIM, device=dev)
        if a.case == "assign":
            def run():
                idx = nearest(z, e)
                return e[idx]
        else:
            def run():
                return soft_estep(z, e, SAMPLES)
        secs = timed(a.warmup, a.iters, lambda: (run(), sync()))
        name, items, unit = f"{a.case} K={a.k}", N_VECTORS, "vectors"
        flops = 2.0 * N_VECTORS * a.k * CODE_DIM
    else:
        c, h, w, hid = MODELS[a.model]
        decay = 0.999 if a.quantizer == "soft-em" else 0.99
        model = VqVae(c, hid, 512, CODE_DIM, a.quantizer, decay).to(dev)
        fmt = torch.channels_last if a.mode == "channels_last" else torch.contiguous_format
        if a.mode == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        if a.mode == "compile":
            model.encoder = torch.compile(model.encoder)
            model.decoder = torch.compile(model.decoder)
        n_lat = (h // 4) * (w // 4)
        if a.case == "train":
            x = torch.rand(a.batch, c, h, w, device=dev).contiguous(memory_format=fmt)
            opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4,
                                   eps=1e-8)

            def step():
                x_hat, z_e, z_q, idx, stats = model(x)
                loss = F.mse_loss(x_hat, x) + 0.25 * F.mse_loss(z_e, z_q.detach())
                if a.quantizer == "vq":
                    loss = loss + F.mse_loss(z_q, z_e.detach())
                if not torch.isfinite(loss):
                    raise SystemExit("non-finite loss")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if a.quantizer != "vq":
                    model.ema_update(z_e.detach(), idx, stats)
                loss.item()
            secs = timed(a.warmup, a.iters, lambda: (step(), sync()))
            items = a.batch
            n = a.batch * n_lat
            flops = 3.0 * (a.batch * forward_flops(a.model, CODE_DIM) + 2.0 * n * 512 * CODE_DIM)
        else:
            images = torch.rand(a.batch, c, h, w, device=dev).contiguous(memory_format=fmt)

            @torch.no_grad()
            def evaluate():
                sse, hz = 0.0, 0.0
                for xb in images.split(256):
                    x_hat, z_e, z_q, idx, _ = model(xb)
                    sse += (x_hat - xb).pow(2).sum().item()
                    logp = torch.log_softmax(-torch.cdist(z_e, model.codebook).pow(2), dim=1)
                    hz += -(logp.exp() * logp).sum().item()
                return sse, hz
            secs = timed(a.warmup, a.iters, lambda: (evaluate(), sync()))
            items = a.batch
            n = a.batch * n_lat
            flops = a.batch * forward_flops(a.model, CODE_DIM) + 2.0 * (2.0 * n * 512 * CODE_DIM)
        name, unit = f"{a.case} {a.model} {a.quantizer}", "images"
    if a.mode != "eager" and a.case in ("train", "eval"):
        name += f" ({a.mode})"
    _, peak = rss_mib()
    print(json.dumps({
        "impl": "pytorch " + torch.__version__, "case": name, "threads": torch.get_num_threads(),
        "secs_per_run": secs, "items_per_s": items / secs, "unit": unit,
        "gflops": flops / secs / 1e9, "peak_rss_mib": peak, "base_rss_mib": rss0,
    }))


if __name__ == "__main__":
    main()
