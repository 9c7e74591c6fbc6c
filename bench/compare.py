"""Runs every benchmark case for vqib (`vqib bench`) and the PyTorch reference
(bench/reference/vqvae.py), one process a case and side, and prints a Markdown table. Called by
bench/compare, which installs torch and builds vqib first."""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, arguments common to both sides, timed runs, full / quick)
CPU_CASES = [
    *[(f"assign K={k}", ["--case", "assign", "--k", str(k)], (10, 3) if k < 65536 else (3, 1))
      for k in (512, 8192, 65536)],
    *[(f"estep K={k}", ["--case", "estep", "--k", str(k)], (10, 3) if k < 65536 else (3, 1))
      for k in (512, 8192, 65536)],
    *[(f"train {m} {q}", ["--case", "train", "--model", m, "--quantizer", q], (5, 2))
      for m in ("mnist", "cifar") for q in ("vq", "vq-ema", "soft-em")],
    *[(f"eval {m} vq", ["--case", "eval", "--model", m, "--batch", "1024"], (3, 1))
      for m in ("mnist", "cifar")],
]


def run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(runs):
    """The run with the median throughput (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["items_per_s"])[(len(runs) - 1) // 2]


def machine():
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "+".join(x for x in ("avx2", "fma", "avx512f") if x in flags) or platform.machine()
    topo = ""
    try:
        info = dict(line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in line)
        get = lambda k: info.get(k, "?").strip()
        topo = (f" ({get('Socket(s)')} socket(s), {get('Core(s) per socket')} cores a socket, "
                f"{get('Thread(s) per core')} threads a core)")
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs{topo}, {isa}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vqib", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--gpu", action="store_true",
                    help="vqib --device wgpu against PyTorch --device cuda (train, eval)")
    ap.add_argument("--gpu-device", default="wgpu", choices=["wgpu", "vulkan", "cuda"],
                    help="vqib's GPU device with --gpu (vulkan and cuda need vqib built with "
                         "that feature: VQIB_CARGO_FLAGS='--features vulkan' bench/compare ...)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--torch-modes", default="channels_last,compile",
                    help="PyTorch modes besides eager for the train and eval cases on the CPU, "
                         "each with its own column and ratio (empty: eager only)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs a side and case, alternating sides; the table gives the median "
                         "(a shared machine's speed drifts by 10-20%% between runs)")
    a = ap.parse_args()
    modes = [m for m in a.torch_modes.split(",") if m]
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    cases = [c for c in CPU_CASES if a.only in c[0]]
    if a.gpu:
        cases = [c for c in cases if c[1][1] in ("train", "eval")]
    ref = os.path.join(HERE, "reference", "vqvae.py")
    rows, raw = [], []
    for name, args, (full, quick) in cases:
        iters = quick if a.quick else full
        # A GPU's first steps compile kernels and autotune them (wgpu and CUDA alike), and they are
        # cheap to repeat: warm up longer and time more steps there.
        warmup = 5 if a.gpu else 1
        if a.gpu:
            iters *= 4
        common = args + ["--iters", str(iters), "--warmup", str(warmup)]
        v_dev = ["--device", a.gpu_device] if a.gpu else []
        p_dev = ["--device", "cuda"] if a.gpu else []
        extra = modes if (not a.gpu and args[1] in ("train", "eval")) else []
        vs, ps, xs = [], [], {m: [] for m in extra}
        for _ in range(max(1, a.repeat)):
            vs.append(run([a.vqib, "bench"] + common + v_dev, env))
            ps.append(run([a.python, ref, "--threads", str(a.threads)] + common + p_dev, env))
            for m in extra:
                # torch.compile compiles in its first steps: two warm-up steps at least.
                c = common + (["--warmup", "2"] if m == "compile" else [])
                xs[m].append(run([a.python, ref, "--threads", str(a.threads), "--mode", m] + c,
                                 env))
        v, p = median_run(vs), median_run(ps)
        x = {m: median_run(r) for m, r in xs.items()}
        raw.append({"case": name, "vqib": v, "pytorch": p,
                    "vqib_runs": [r["items_per_s"] for r in vs],
                    "pytorch_runs": [r["items_per_s"] for r in ps],
                    "pytorch_modes": {m: {"median": x[m], "runs": [r["items_per_s"] for r in xs[m]]}
                                      for m in extra}})
        ratio = v["items_per_s"] / p["items_per_s"]
        rows.append((name, v["unit"], v["items_per_s"], p["items_per_s"], ratio, v["gflops"],
                     p["gflops"], v["peak_rss_mib"], p["peak_rss_mib"],
                     v["peak_rss_mib"] - v["base_rss_mib"], p["peak_rss_mib"] - p["base_rss_mib"],
                     {m: (x[m]["items_per_s"], v["items_per_s"] / x[m]["items_per_s"])
                      for m in extra}))
        more = "".join(f", {m} {x[m]['items_per_s']:.1f} (ratio "
                       f"{v['items_per_s'] / x[m]['items_per_s']:.2f})" for m in extra)
        print(f"{name}: vqib {v['items_per_s']:.1f}, pytorch {p['items_per_s']:.1f} "
              f"{v['unit']}/s (medians of {len(vs)}), ratio {ratio:.2f}{more}", file=sys.stderr)
    torch_impl = raw[0]["pytorch"]["impl"] if raw else "pytorch"
    print(f"Measured {datetime.date.today()} on {machine()}; {a.threads} threads a side"
          f"{f' (GPU: vqib {a.gpu_device}, PyTorch CUDA)' if a.gpu else ''}; {torch_impl}; median of "
          f"{max(1, a.repeat)} runs a side, alternating.\n")
    shown = modes if not a.gpu else []
    head = "".join(f" PyTorch {m} /s | vqib / {m} |" for m in shown)
    print("| case | unit | vqib /s | PyTorch /s | vqib / PyTorch |" + head + " vqib GFLOP/s "
          "| PyTorch GFLOP/s | vqib peak MiB | PyTorch peak MiB | vqib MiB over start "
          "| PyTorch MiB over start |")
    print("|---|---|---|---|---|" + "---|---|" * len(shown) + "---|---|---|---|---|---|")
    for r in rows:
        cols = "".join(f" {r[11][m][0]:.0f} | {r[11][m][1]:.2f}x |" if m in r[11] else " - | - |"
                       for m in shown)
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:.2f}x |{cols} {r[5]:.1f} | "
              f"{r[6]:.1f} | {r[7]:.0f} | {r[8]:.0f} | {r[9]:.0f} | {r[10]:.0f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
