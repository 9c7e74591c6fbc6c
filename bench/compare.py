"""Runs every benchmark case for vqib (`vqib bench`) and the PyTorch reference
(bench/reference/vqvae.py), one process a run, and prints a Markdown table. Called by
bench/compare (which installs torch and builds vqib first) and by bench/gpu/run.

How a case is measured, so that a shared machine's drift shows instead of hiding in a median:
* each side (vqib, PyTorch eager and each extra PyTorch mode) runs --repeat times (default 5),
  the sides alternating run by run (vqib, eager, channels_last, compile, vqib, ...);
* the table gives each side's median run, its fastest run and its spread (fastest / slowest);
* a case where some side spreads by more than --max-spread (default 1.3) is measured again, up to
  --retries more times; the attempt with the smallest spread is kept, and if even that one
  spreads too much the row is marked "noisy";
* torch.compile is compiled once a case, outside the timed runs: an untimed priming process
  compiles the encoder and decoder (forward and backward) into a fresh inductor cache
  (TORCHINDUCTOR_CACHE_DIR, one a harness invocation); each timed process then finds the
  compiled graphs in that cache during its two warm-up steps, which the timer excludes.
--budget bounds the whole invocation: a case is not started after it, and each process is given
at most the time left (a case that runs over is reported as timed out, the rest as skipped).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUANTIZERS = ("vq", "vq-ema", "soft-em")
MODELS = ("mnist", "cifar")

# (name, arguments common to both sides, timed runs (full, quick))
CPU_CASES = [
    *[(f"assign K={k}", ["--case", "assign", "--k", str(k)], (10, 3) if k < 65536 else (3, 1))
      for k in (512, 8192, 65536)],
    *[(f"estep K={k}", ["--case", "estep", "--k", str(k)], (10, 3) if k < 65536 else (3, 1))
      for k in (512, 8192, 65536)],
    *[(f"train {m} {q}", ["--case", "train", "--model", m, "--quantizer", q], (5, 2))
      for m in MODELS for q in QUANTIZERS],
    *[(f"eval {m} vq", ["--case", "eval", "--model", m, "--batch", "1024"], (3, 1))
      for m in MODELS],
]
# On a GPU: the train and eval cases of both models for every quantizer, the train cases first
# (the step is what is being tuned there), so that a time budget that runs out cuts eval cases.
GPU_CASES = [
    *[(f"train {m} {q}", ["--case", "train", "--model", m, "--quantizer", q], (5, 2))
      for q in QUANTIZERS for m in MODELS],
    *[(f"eval {m} {q}", ["--case", "eval", "--model", m, "--quantizer", q, "--batch", "1024"],
       (3, 1)) for q in QUANTIZERS for m in MODELS],
]


class CaseFailed(Exception):
    pass


class Clock:
    """The invocation's time budget (None: unbounded)."""

    def __init__(self, budget):
        self.end = None if budget is None else time.monotonic() + budget

    def left(self):
        return float("inf") if self.end is None else self.end - time.monotonic()


def run(cmd, env, timeout):
    """Runs one measuring process and returns its JSON line; CaseFailed on an error or timeout."""
    if timeout <= 1:
        raise CaseFailed("time budget spent")
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                             timeout=None if timeout == float("inf") else timeout)
    except subprocess.TimeoutExpired:
        raise CaseFailed(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise CaseFailed(f"exit {out.returncode}: {' '.join(cmd)}")
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["process_wall_s"] = time.monotonic() - t0  # start-up, compilation and warm-up too
        return res
    except (IndexError, json.JSONDecodeError):
        raise CaseFailed(f"no JSON line from {' '.join(cmd)}: {out.stdout[-500:]!r}")


def summary(runs):
    """Median, fastest and spread (fastest / slowest) of the runs' throughputs; the median run."""
    xs = sorted(r["items_per_s"] for r in runs)
    med_run = sorted(runs, key=lambda r: r["items_per_s"])[(len(runs) - 1) // 2]
    return {"median": statistics.median(xs), "fastest": xs[-1],
            "spread": xs[-1] / xs[0] if xs[0] > 0 else float("inf"),
            "runs": [r["items_per_s"] for r in runs], "median_run": med_run}


def cpu_info():
    """CPU model, sockets, cores, threads a core and the SIMD flags vqib's kernels look for."""
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and "model name" not in info:
                    info["model"] = info["model name"] = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not info["flags"]:
                    info["flags"] = line.split(":", 1)[1].split()
    except OSError:
        pass
    info.pop("model name", None)
    try:
        lscpu = dict(line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in line)
        get = lambda k: lscpu.get(k, "?").strip()
        info.update(sockets=get("Socket(s)"), cores_a_socket=get("Core(s) per socket"),
                    threads_a_core=get("Thread(s) per core"))
    except OSError:
        pass
    info["logical_cpus"] = os.cpu_count()
    info["simd"] = [x for x in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")
                    if x in info["flags"]]
    del info["flags"]
    return info


def gpu_info():
    """nvidia-smi's name, driver and memory of each GPU, or None where there is no nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def kernels_line(kernels, cpu):
    if kernels:
        line = f"vqib's CPU kernels: gemm {kernels.get('gemm')}, assign {kernels.get('assign')}"
        return line + (f", conv {kernels['conv']}" if kernels.get("conv") else "")
    simd = cpu.get("simd", [])
    gemm = "avx512f" if "avx512f" in simd else "fma" if "fma" in simd else "scalar"
    assign = "avx2+fma" if {"avx2", "fma"} <= set(simd) else "generic"
    return (f"vqib's CPU kernels (this binary does not report them; inferred from the CPU flags): "
            f"gemm {gemm}, assign {assign}")


def num(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.3g}"


def cell(s):
    return f"{num(s['median'])} ({num(s['fastest'])}, {s['spread']:.2f})"


def ratio(v, p):
    return f"{v['median'] / p['median']:.2f}x ({v['fastest'] / p['fastest']:.2f}x)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vqib", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer timed steps a run")
    ap.add_argument("--only", default="",
                    help="cases whose name contains this (or one of these, comma-separated)")
    ap.add_argument("--gpu", action="store_true",
                    help="vqib --device wgpu against PyTorch --device cuda (train, eval)")
    ap.add_argument("--gpu-device", default="wgpu", choices=["wgpu", "vulkan", "cuda"],
                    help="vqib's GPU device with --gpu (vulkan and cuda need vqib built with "
                         "that feature: VQIB_CARGO_FLAGS='--features vulkan' bench/compare ...)")
    ap.add_argument("--torch-device", default=None,
                    help="PyTorch's device (default: cuda with --gpu, else cpu)")
    ap.add_argument("--json", help="also write the raw results (every run) here")
    ap.add_argument("--markdown", help="also write the table here")
    ap.add_argument("--torch-modes", default=None,
                    help="PyTorch modes besides eager for the train and eval cases, each with "
                         "its own column and ratio (default: channels_last,compile on the CPU, "
                         "compile on a GPU; empty: eager only)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs a side and case, alternating sides (default 5)")
    ap.add_argument("--max-spread", type=float, default=1.3,
                    help="a case where a side's fastest / slowest run exceeds this is measured "
                         "again (default 1.3)")
    ap.add_argument("--retries", type=int, default=2,
                    help="times a case is measured again for its spread before it is marked "
                         "noisy (default 2)")
    ap.add_argument("--iters", type=int, help="timed steps a run (default: the case's)")
    ap.add_argument("--warmup", type=int, help="untimed steps a run (default 1; 5 on a GPU)")
    ap.add_argument("--batch", type=int,
                    help="batch (train) or images (eval) instead of the case's (dry runs)")
    ap.add_argument("--budget", type=float, help="seconds for the whole invocation")
    ap.add_argument("--case-timeout", type=float, default=900, help="seconds a process")
    a = ap.parse_args()
    t_start = time.monotonic()
    clock = Clock(a.budget)
    if a.torch_modes is None:
        a.torch_modes = "compile" if a.gpu else "channels_last,compile"
    modes = [m for m in a.torch_modes.split(",") if m]
    torch_dev = a.torch_device or ("cuda" if a.gpu else "cpu")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    inductor = tempfile.mkdtemp(prefix="vqib-inductor-")
    compile_env = dict(env, TORCHINDUCTOR_CACHE_DIR=inductor, TORCHINDUCTOR_FX_GRAPH_CACHE="1",
                       TORCHINDUCTOR_AUTOGRAD_CACHE="1")
    only = a.only.split(",")
    cases = [c for c in (GPU_CASES if a.gpu else CPU_CASES) if any(o in c[0] for o in only)]
    ref = os.path.join(HERE, "reference", "vqvae.py")
    repeat = max(1, a.repeat)
    rows, raw, kernels, failed = [], [], None, False
    for name, args, (full, quick) in cases:
        model_case = args[1] in ("train", "eval")
        extra = modes if model_case else []
        sides = ["vqib", "eager"] + extra
        if clock.left() <= 1:
            rows.append((name, None, "skipped: time budget spent"))
            raw.append({"case": name, "skipped": "time budget spent"})
            continue
        iters = a.iters or (quick if a.quick else full) * (4 if a.gpu else 1)
        warmup = a.warmup if a.warmup is not None else (5 if a.gpu else 1)
        args = list(args)
        if a.batch and model_case:
            args = [x for i, x in enumerate(args) if x != "--batch" and
                    (i == 0 or args[i - 1] != "--batch")] + ["--batch", str(a.batch)]
        v_dev = ["--device", a.gpu_device] if a.gpu else []
        p_dev = ["--device", torch_dev] if model_case and torch_dev != "cpu" else []

        def cmd(side, iters=iters):
            common = args + ["--iters", str(iters), "--warmup", str(warmup)]
            if side == "vqib":
                return [a.vqib, "bench"] + common + v_dev, env
            c = [a.python, ref, "--threads", str(a.threads)] + common + p_dev
            if side == "compile":
                # Two warm-up steps at least: the cache is loaded in the first, for the forward
                # and the backward graph.
                return c + ["--mode", side, "--warmup", str(max(2, warmup))], compile_env
            return c + (["--mode", side] if side != "eager" else []), env

        try:
            prime_s = None
            if "compile" in extra:
                t0 = time.monotonic()
                c, e = cmd("compile", iters=1)
                run(c, e, min(a.case_timeout, clock.left()))
                prime_s = time.monotonic() - t0
            attempts = []
            while True:
                runs = {s: [] for s in sides}
                for _ in range(repeat):
                    for s in sides:
                        c, e = cmd(s)
                        runs[s].append(run(c, e, min(a.case_timeout, clock.left())))
                stats = {s: summary(r) for s, r in runs.items()}
                worst = max(st["spread"] for st in stats.values())
                attempts.append((worst, stats))
                if worst <= a.max_spread or len(attempts) > a.retries:
                    break
                if clock.left() < 60:
                    break
                print(f"{name}: spread {worst:.2f} > {a.max_spread}, measuring again",
                      file=sys.stderr)
        except CaseFailed as err:
            failed = True
            print(f"{name}: {err}", file=sys.stderr)
            rows.append((name, None, f"failed: {err}"[:300]))
            raw.append({"case": name, "failed": str(err)})
            continue
        worst, stats = min(attempts, key=lambda t: t[0])
        noisy = worst > a.max_spread
        kernels = kernels or stats["vqib"]["median_run"].get("kernels")
        note = ("noisy" if noisy else "") + (
            f"{'; ' if noisy else ''}{len(attempts)} attempts" if len(attempts) > 1 else "")
        rows.append((name, stats, note))
        raw.append({"case": name, "sides": {s: {k: v for k, v in st.items()}
                                            for s, st in stats.items()},
                    "noisy": noisy, "worst_spread": worst, "compile_priming_s": prime_s,
                    "attempts": [{s: st["runs"] for s, st in at.items()} for _, at in attempts]})
        line = ", ".join(f"{s} {cell(st)}" for s, st in stats.items())
        print(f"{name}: {line} [median (fastest, spread)]"
              f"{' NOISY' if noisy else ''}"
              f"{f', compile primed in {prime_s:.0f} s' if prime_s else ''}", file=sys.stderr)

    cpu = cpu_info()
    gpu = gpu_info() if a.gpu or torch_dev != "cpu" else None
    impl = next((st["eager"]["median_run"]["impl"] for _, st, _ in rows if st), "pytorch")
    shown = modes
    out = []
    cores = (f"{cpu.get('sockets', '?')} socket(s) x {cpu.get('cores_a_socket', '?')} cores, "
             f"{cpu.get('threads_a_core', '?')} thread(s) a core, {cpu.get('logical_cpus')} "
             f"logical CPUs")
    out.append(f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
               f"{cpu['model']} ({cores}; {'+'.join(cpu['simd']) or 'no AVX'}); "
               f"{kernels_line(kernels, cpu)}.")
    if a.gpu or torch_dev != "cpu":
        out.append(f"GPU: {gpu or 'nvidia-smi not found'}; vqib --device "
                   f"{a.gpu_device if a.gpu else 'cpu'}, PyTorch --device {torch_dev}.")
    out.append(f"{a.threads} threads a side; {impl}; each side run {repeat} times, alternating; "
               f"a cell is median (fastest, spread = fastest / slowest) in "
               f"units (images or vectors) a second; ratios are "
               f"vqib / PyTorch on the medians (on the fastest runs); a case spreading more "
               f"than {a.max_spread} on a side was measured again up to {a.retries} times and "
               f"is marked noisy if it still did. torch.compile: compiled once a case by an "
               f"untimed priming process into a fresh inductor cache, which the timed processes "
               f"load in their warm-up steps.")
    out.append("")
    head = "".join(f" PyTorch {m} | vqib / {m} |" for m in shown)
    out.append("| case | unit | vqib | PyTorch eager | vqib / eager |" + head +
               " vqib GFLOP/s | eager GFLOP/s | vqib peak MiB (over start) | eager peak MiB "
               "(over start) | note |")
    out.append("|---|---|---|---|---|" + "---|---|" * len(shown) + "---|---|---|---|---|")
    for name, st, note in rows:
        if st is None:
            out.append(f"| {name} |" + " - |" * (8 + 2 * len(shown)) + f" {note} |")
            continue
        v, p = st["vqib"], st["eager"]
        vr, pr = v["median_run"], p["median_run"]
        cols = "".join(f" {cell(st[m])} | {ratio(v, st[m])} |" if m in st else " - | - |"
                       for m in shown)
        mem = lambda r: f"{r['peak_rss_mib']:.0f} ({r['peak_rss_mib'] - r['base_rss_mib']:.0f})"
        out.append(f"| {name} | {vr['unit']} | {cell(v)} | {cell(p)} | {ratio(v, p)} |{cols} "
                   f"{vr['gflops']:.1f} | {pr['gflops']:.1f} | {mem(vr)} | {mem(pr)} | {note} |")
    out.append("")
    out.append(f"({time.monotonic() - t_start:.0f} s in all.)")
    table = "\n".join(out)
    print(table)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(table + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": cpu, "gpu": gpu, "kernels": kernels, "threads": a.threads,
                       "repeat": repeat, "max_spread": a.max_spread, "cases": raw}, f, indent=1)
    shutil.rmtree(inductor, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
