"""The one-shot GPU benchmark (called by bench/gpu/run; see bench/gpu/README.md).

Steps, each with its own time limit inside --budget (default 540 s, for a 600 s call):
 1. unpack bench/gpu/payload/vqib.xz and point the Vulkan loader carried in payload/lib at the
    driver's ICD (NVIDIA's json from /usr/share/vulkan/icd.d, /etc/vulkan/icd.d, ..., or one
    written here for the driver's libGLX_nvidia.so.0; lavapipe's with --dry-run);
 2. a smoke step on wgpu under LD_DEBUG=libs, which shows which libvulkan.so.1 was loaded;
 3. the host-read check: `vqib train --device wgpu` for every quantizer, logging every few steps;
    each train record after the first must carry host_reads == 2 (a logging step's two reads,
    none on the steps between: README "The run directory");
 4. a per-kernel device-time profile of train steps from cubecl's profiling logger (timestamp
    queries; a cubecl.toml in the process's working directory turns it on), with nsys as the
    fallback where the timestamps resolve nothing and nsys is installed;
 5. the table: bench/compare.py --gpu (vqib wgpu against PyTorch CUDA eager and torch.compile),
    with the time left; cases it cannot start in time are listed as skipped.
Everything lands in the output folder (--out, else $OUT, else ./gpu-out): README.md (the report,
also printed), table.md, raw.json, hostreads.json, profile.md / profile.json, env.txt and logs.
"""
import argparse
import glob
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAY = os.path.join(ROOT, "bench", "gpu", "payload")
QUANTIZERS = ("vq", "vq-ema", "soft-em")
ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d",
            "/usr/local/etc/vulkan/icd.d", "/usr/share/glvnd/egl_vendor.d/../../vulkan/icd.d")
NVIDIA_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/nvidia/lib64",
                   "/usr/local/nvidia/lib", "/run/nvidia/driver/usr/lib/x86_64-linux-gnu")


class Run:
    def __init__(self, out, budget):
        self.out, self.t0, self.budget = out, time.monotonic(), budget
        self.log = open(os.path.join(out, "run.log"), "a")
        self.report = []

    def left(self):
        return self.budget - (time.monotonic() - self.t0)

    def say(self, msg):
        line = f"[{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, file=sys.stderr, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def sh(self, cmd, limit, env=None, cwd=None, log=None):
        """Runs cmd for at most min(limit, time left - 15 s); (returncode or None, stdout, stderr)."""
        t = min(limit, self.left() - 15)
        if t < 5:
            self.say(f"no time left for: {' '.join(cmd)}")
            return None, "", "skipped: time budget spent"
        self.say(f"$ {' '.join(cmd)}  (limit {t:.0f} s)")
        try:
            p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=t)
            rc, so, se = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc = None
            so = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            se = ((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")) + f"\ntimed out after {t:.0f} s"
        except OSError as e:
            rc, so, se = 127, "", str(e)
        if log:
            with open(os.path.join(self.out, log), "w") as f:
                f.write(f"$ {' '.join(cmd)}\nexit: {rc}\n--- stdout\n{so}\n--- stderr\n{se}\n")
        return rc, so, se


def find_icd(r, dry, work):
    """The ICD json to give the loader: lavapipe's for a dry run, else NVIDIA's."""
    if dry:
        found = sorted(glob.glob("/usr/share/vulkan/icd.d/lvp_icd*.json"))
        return (found[0], "lavapipe (dry run)") if found else (None, "no lavapipe ICD json")
    for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES"):
        v = os.environ.get(var)
        if v and all(os.path.exists(p) for p in v.split(":")):
            return v, f"from ${var}"
    for d in ICD_DIRS:
        found = sorted(glob.glob(os.path.join(d, "*nvidia*.json")))
        if found:
            return found[0], f"found in {d}"
    # No json: write one for the driver's Vulkan library where it can be found.
    libs = []
    try:
        ld = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        libs += re.findall(r"libGLX_nvidia\.so\.0 .*=> (\S+)", ld)
    except OSError:
        pass
    for d in NVIDIA_LIB_DIRS:
        libs += glob.glob(os.path.join(d, "libGLX_nvidia.so.0"))
    if not libs:
        return None, ("no NVIDIA Vulkan ICD: no *nvidia*.json in " + ", ".join(ICD_DIRS) +
                      " and no libGLX_nvidia.so.0 (the container may lack the driver's "
                      "'graphics' capability: NVIDIA_DRIVER_CAPABILITIES=all)")
    path = os.path.join(work, "nvidia_icd.json")
    with open(path, "w") as f:
        json.dump({"file_format_version": "1.0.1",
                   "ICD": {"library_path": libs[0], "api_version": "1.3.0"}}, f)
    return path, f"written for {libs[0]} (the driver ships no ICD json here)"


def gpu_env(r):
    info = {}
    rc, so, _ = r.sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                      "--format=csv,noheader"], 30)
    info["nvidia_smi"] = so.strip() if rc == 0 else None
    r.sh(["nvidia-smi"], 30, log="nvidia-smi.txt")
    code = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': "
            "torch.__version__, 'cuda': c, 'cuda_version': torch.version.cuda, 'device': "
            "torch.cuda.get_device_name(0) if c else None}))")
    rc, so, se = r.sh([sys.executable, "-c", code], 120)
    try:
        info["torch"] = json.loads(so.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        info["torch"] = {"error": se[-500:]}
    info["nsys"] = shutil.which("nsys")
    info["python"] = sys.executable
    return info


def smoke(r, wrapper, env, dry):
    """One tiny train step on wgpu under LD_DEBUG=libs: does the adapter work, and which
    libvulkan.so.1 and which driver library got loaded?"""
    e = dict(env, LD_DEBUG="libs")
    rc, so, se = r.sh([wrapper, "bench", "--case", "train", "--model", "mnist", "--batch", "8",
                       "--iters", "1", "--warmup", "0", "--device", "wgpu"],
                      600 if dry else 150, env=e, log="smoke.log")
    inits = re.findall(r"calling init: (\S+)", se)
    loader = [p for p in inits if "libvulkan.so" in p]
    driver = [p for p in inits if re.search(r"vulkan_lvp|GLX_nvidia|nvidia-glcore|libnvidia", p)]
    return {"ok": rc == 0, "exit": rc, "loader": loader[:1], "driver_libs": sorted(set(driver)),
            "loader_is_carried": bool(loader) and all(p.startswith(PAY) or "/payload/lib/" in p
                                                      for p in loader),
            "json": so.strip().splitlines()[-1] if rc == 0 and so.strip() else None}


def host_reads(r, vqib_env, wrapper, dry, work):
    """`vqib train --device wgpu` a few logging periods a quantizer; every train record after the
    first must say host_reads == 2."""
    steps, every = (5, 2) if dry else (21, 5)
    res = {}
    for q in QUANTIZERS:
        run = os.path.join(work, f"hostreads-{q}")
        rc, so, se = r.sh([wrapper, "train", "--dataset", "shapes", "--shapes-train", "512",
                           "--shapes-test", "64", "--quantizer", q, "--device", "wgpu",
                           "--log-every", str(every), "--max-steps", str(steps), "--epochs", "1",
                           "--no-progress", "--out", run],
                          400 if dry else 60, env=vqib_env, log=f"hostreads-{q}.log")
        recs = []
        try:
            with open(os.path.join(run, "metrics.jsonl")) as f:
                recs = [json.loads(l) for l in f if l.strip()]
        except OSError:
            pass
        train = [(x.get("step"), x.get("host_reads")) for x in recs if x.get("kind") == "train"]
        later = train[1:]
        ok = rc == 0 and len(later) >= 1 and all(h == 2 for _, h in later)
        res[q] = {"ok": ok, "exit": rc, "records": train,
                  "why": None if ok else ("the run failed or timed out" if rc != 0 else
                                          "fewer than two train records" if not later else
                                          "a record with host_reads != 2")}
        r.say(f"host reads {q}: {'ok' if ok else 'FAILED'} {train}")
        if os.path.exists(os.path.join(run, "metrics.jsonl")):
            shutil.copy(os.path.join(run, "metrics.jsonl"),
                        os.path.join(r.out, f"hostreads-{q}.metrics.jsonl"))
    return res


DUR = re.compile(r"^\|\s*([0-9.]+)(ns|µs|us|ms|s)\s*\|\s*(.+?)\s*$")
SCALE = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_profile(path):
    """cubecl's profiling lines `| DURATION | KERNEL` -> {kernel: [count, seconds]}, and the count
    of `not measured` lines."""
    kernels, unmeasured = {}, 0
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = DUR.match(line)
                if m:
                    k = kernels.setdefault(m.group(3)[:160], [0, 0.0])
                    k[0] += 1
                    k[1] += float(m.group(1)) * SCALE[m.group(2)]
                elif line.startswith("| not measured"):
                    unmeasured += 1
    except OSError:
        pass
    return kernels, unmeasured


def profile(r, wrapper, env, dry, work, info):
    cases = [("mnist", "vq")] if dry else [("cifar", "vq"), ("mnist", "soft-em")]
    iters, warmup = (1, 0) if dry else (10, 3)
    batch = ["--batch", "8"] if dry else []
    os.makedirs(os.path.join(r.out, "profile"), exist_ok=True)
    res = {}
    for i, (m, q) in enumerate(cases):
        name = f"train-{m}-{q}"
        if i > 0 and not dry and r.left() < 360:
            r.say(f"profile {name}: skipped, the table needs the time left")
            continue
        # Under the repository, so that cubecl finds the same autotune cache (target/environment
        # of the outermost Cargo.toml above the working directory) as the table's processes.
        cwd = os.path.join(ROOT, "target", "gpu-profile", name)
        os.makedirs(cwd, exist_ok=True)
        log = os.path.join(r.out, "profile", f"cubecl-{name}.log")
        with open(os.path.join(cwd, "cubecl.toml"), "w") as f:
            f.write(f'[profiling.logger]\nlevel = "basic"\nfile = "{log}"\nappend = false\n')
        base = [wrapper, "bench", "--case", "train", "--model", m, "--quantizer", q, "--device",
                "wgpu"] + batch
        cmd = base + ["--iters", str(iters), "--warmup", str(warmup)]
        if not dry:
            # The same case once without the logger first: its autotuning (and the driver's
            # shader compilation) lands in the caches instead of in the profile.
            r.sh(base + ["--iters", "1", "--warmup", "1"], 45, env=env, cwd=ROOT)
        rc, so, se = r.sh(cmd, 400 if dry else 60, env=env, cwd=cwd,
                          log=os.path.join("profile", f"{name}.out"))
        kernels, unmeasured = parse_profile(log)
        entry = {"exit": rc, "kernels": kernels, "not_measured": unmeasured,
                 "steps": iters + warmup}
        if not kernels and info.get("nsys") and not dry:
            rep = os.path.join(r.out, "profile", f"nsys-{name}")
            rc2, so2, _ = r.sh([info["nsys"], "profile", "--trace=vulkan,cuda,osrt",
                                "--force-overwrite=true", "--stats=true", "-o", rep] + cmd, 120,
                               env=env, log=os.path.join("profile", f"nsys-{name}.txt"))
            entry["nsys"] = {"exit": rc2, "report": rep}
        res[name] = entry
        r.say(f"profile {name}: {len(kernels)} kernels timed, {unmeasured} lines not measured")
    return res


def profile_md(prof, info):
    out = []
    for name, e in prof.items():
        ks = sorted(e["kernels"].items(), key=lambda kv: -kv[1][1])
        total = sum(v[1] for _, v in ks)
        out.append(f"### {name} ({e['steps']} steps, warm-up included; exit {e['exit']})\n")
        if not ks:
            why = ("every kernel line was `not measured`: the adapter resolved no timestamp "
                   "queries" if e["not_measured"] else "no profiling lines were written")
            nsys = e.get("nsys")
            out.append(f"No per-kernel times: {why}. " + (
                f"nsys ran (exit {nsys['exit']}): see profile/{os.path.basename(nsys['report'])}*"
                if nsys else "nsys: " + ("not tried (dry run)" if info.get("dry") else
                                         "not installed") + ".") + "\n")
            continue
        out.append(f"Device time of all kernels: {total * 1e3:.1f} ms "
                   f"({total / e['steps'] * 1e3:.2f} ms a step).\n")
        out.append("| kernel | launches | total ms | share |")
        out.append("|---|---|---|---|")
        for k, (n, s) in ks[:25]:
            k = k if len(k) <= 90 else k[:87] + "..."
            out.append(f"| `{k.replace('|', '/')}` | {n} | {s * 1e3:.2f} | {s / total:.1%} |")
        if len(ks) > 25:
            rest = sum(v[1] for _, v in ks[25:])
            out.append(f"| ({len(ks) - 25} more) | | {rest * 1e3:.2f} | {rest / total:.1%} |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="lavapipe, tiny counts, PyTorch on the CPU without CUDA, a subset of the "
                         "table's cases")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-out")
    ap.add_argument("--budget", type=float, help="seconds in all (default 540; dry run 3000)")
    ap.add_argument("--only", help="the table's cases (bench/compare.py --only; default: all, "
                                   "dry run: 'train mnist vq,eval cifar soft-em')")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs a side and case in the table (default 2: the budget)")
    ap.add_argument("--table-only", action="store_true",
                    help="the smoke step and the table only (a second call for the cases the "
                         "first one skipped, with --only)")
    ap.add_argument("--threads", type=int, default=8,
                    help="CPU threads a side (RAYON_NUM_THREADS, torch.set_num_threads)")
    a = ap.parse_args()
    dry = a.dry_run
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    r = Run(out, a.budget or (3000 if dry else 540))
    r.say(f"bench/gpu/run{' --dry-run' if dry else ''} -> {out}, budget {r.budget:.0f} s")
    if not os.path.exists(os.path.join(PAY, "vqib.xz")):
        r.say(f"no payload at {PAY}: run bench/gpu/prepare first and carry bench/gpu/payload")
        return 2
    work = tempfile.mkdtemp(prefix="vqib-gpu-")
    binary = os.path.join(work, "vqib")
    with lzma.open(os.path.join(PAY, "vqib.xz")) as src, open(binary, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.chmod(binary, 0o755)
    shutil.copy(os.path.join(PAY, "BUILD.txt"), os.path.join(out, "BUILD.txt"))
    icd, icd_why = find_icd(r, dry, work)
    r.say(f"Vulkan ICD: {icd} ({icd_why})")
    lib = os.path.join(PAY, "lib")
    vqib_env = dict(os.environ, LD_LIBRARY_PATH=lib + (
        ":" + os.environ["LD_LIBRARY_PATH"] if os.environ.get("LD_LIBRARY_PATH") else ""),
        XDG_RUNTIME_DIR=work)
    if icd:
        vqib_env.update(VK_ICD_FILENAMES=icd, VK_DRIVER_FILES=icd)
    # compare.py runs vqib through this wrapper, so that PyTorch's processes keep their own
    # library path.
    wrapper = os.path.join(work, "vqib-wgpu")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n" + "".join(
            f"export {k}='{vqib_env[k]}'\n" for k in
            ("LD_LIBRARY_PATH", "XDG_RUNTIME_DIR", "VK_ICD_FILENAMES", "VK_DRIVER_FILES")
            if k in vqib_env) + f'exec "{binary}" "$@"\n')
    os.chmod(wrapper, 0o755)

    info = gpu_env(r)
    info.update(dry=dry, icd=icd, icd_why=icd_why, build=open(os.path.join(PAY, "BUILD.txt")).read())
    with open(os.path.join(out, "env.txt"), "w") as f:
        json.dump(info, f, indent=1)
    cuda = bool(info.get("torch", {}).get("cuda"))
    r.say(f"GPU: {info['nvidia_smi']}; torch {info.get('torch')}; nsys {info['nsys']}")

    sm = smoke(r, wrapper, dict(os.environ), dry)
    r.say(f"smoke on wgpu: {'ok' if sm['ok'] else 'FAILED'}; libvulkan loaded: {sm['loader']} "
          f"(carried: {sm['loader_is_carried']}); driver: {sm['driver_libs']}")
    hr, prof = {}, {}
    if sm["ok"] and not a.table_only:
        hr = host_reads(r, dict(os.environ), wrapper, dry, work)
        with open(os.path.join(out, "hostreads.json"), "w") as f:
            json.dump(hr, f, indent=1)
        prof = profile(r, wrapper, dict(os.environ), dry, work, info)
        with open(os.path.join(out, "profile.json"), "w") as f:
            json.dump(prof, f, indent=1)
        with open(os.path.join(out, "profile.md"), "w") as f:
            f.write(profile_md(prof, info))

    table = None
    if sm["ok"]:
        cmp = [sys.executable, os.path.join(ROOT, "bench", "compare.py"), "--gpu",
               "--vqib", wrapper, "--python", sys.executable,
               "--json", os.path.join(out, "raw.json"),
               "--markdown", os.path.join(out, "table.md"),
               "--budget", str(max(10.0, r.left() - 25)), "--torch-modes", "compile"]
        if dry:
            cmp += ["--threads", "2", "--iters", "1", "--warmup", "1", "--batch", "8",
                    "--repeat", "1", "--retries", "0", "--case-timeout", "900",
                    "--only", a.only or "train mnist vq,eval cifar soft-em"]
        else:
            cmp += ["--threads", str(a.threads), "--repeat", str(a.repeat), "--retries", "0",
                    "--case-timeout", "150"] + (["--only", a.only] if a.only else [])
        if not cuda:
            cmp += ["--torch-device", "cpu"]
        rc, so, se = r.sh(cmp, r.left() - 10, log="compare.log")
        table = so.strip() or None
        r.say(f"table: exit {rc}")

    lines = [f"# bench/gpu/run{' --dry-run (lavapipe; not a measurement)' if dry else ''}", ""]
    lines.append(f"GPU: {info['nvidia_smi'] or 'nvidia-smi: none'}; PyTorch: {info.get('torch')}")
    lines.append(f"vqib binary: {info['build'].strip().replace(chr(10), '; ')}")
    lines.append(f"Vulkan: ICD {icd} ({icd_why}); libvulkan.so.1 loaded from {sm['loader'] or '?'}"
                 f" (the carried copy: {sm['loader_is_carried']}); driver libraries: "
                 f"{sm['driver_libs'] or '?'}")
    lines.append(f"Smoke step on wgpu: {'ok' if sm['ok'] else 'FAILED, exit %s: see smoke.log' % sm['exit']}")
    lines.append("")
    lines.append("## Host reads of the resident step (`vqib train --device wgpu`)\n")
    if hr:
        lines.append("| quantizer | result | (step, host_reads) of the train records |")
        lines.append("|---|---|---|")
        for q, x in hr.items():
            lines.append(f"| {q} | {'ok' if x['ok'] else 'FAILED: ' + str(x['why'])} | "
                         f"{x['records']} |")
        lines.append("\nA train record's host_reads counts the reads since the previous record: "
                     "2 means the logging step's two reads and none on the steps between.")
    else:
        lines.append("Not run (the smoke step failed).")
    lines.append("\n## Per-kernel profile (cubecl's profiling logger)\n")
    lines.append(profile_md(prof, info) if prof else "Not run.")
    lines.append("\n## Table (bench/compare.py --gpu)\n")
    lines.append(table or "Not run.")
    lines.append("\nNot covered: --device vulkan (SPIR-V kernels; no binary built with "
                 "--features vulkan is carried). The wgpu binary runs burn's fusion already "
                 "(ElemwiseFuse kernels in the profile).")
    lines.append(f"\n({time.monotonic() - r.t0:.0f} s in all; files in {out})")
    rep = "\n".join(lines)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(rep + "\n")
    print(rep)
    shutil.rmtree(work, ignore_errors=True)
    ok = sm["ok"] and all(x["ok"] for x in hr.values()) and table is not None and (
        a.table_only or bool(hr))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
