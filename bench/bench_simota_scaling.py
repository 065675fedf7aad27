"""How SimOTA's cost grows with the number of objects per image: time and peak memory of the
batched `simota_assign` against the per-image reference `simota_assign_per_image`.

    python bench/bench_simota_scaling.py                        # batch 8 at 640², 80 classes, CPU
    python bench/bench_simota_scaling.py --objects 10 30 100 --reps 5 --threads 2
    python bench/bench_simota_scaling.py --device cuda --out bench/out/simota_scaling_cuda.png

For each object count (images hold that many ± 5, as in `bench/bench_simota.py`, whose batch
builder this reuses) it checks once that both give the same assignment (that call is the
warm-up), then times them interleaved (batched, per-image, batched, ...) and takes the medians.

Peak memory. CPU (Linux): every (objects, method) runs once in a fresh subprocess, which builds
the inputs, hands freed heap back (`malloc_trim`), resets its peak RSS to the current RSS
(`echo 5 > /proc/self/clear_refs`), runs the method once and reports how far the peak RSS
(VmHWM in /proc/self/status) rose above the RSS before the call: the memory the call itself
needed, on top of the inputs. (`resource.getrusage(...).ru_maxrss` would not do: it keeps the
high-water mark the parent had when the subprocess was started, and cannot be reset.)
CUDA: `torch.cuda.max_memory_allocated()` above the memory allocated before the call (same
process, after `reset_peak_memory_stats`).

Prints a table (objects, batched ms, per-image ms, ratio, batched peak MiB, per-image peak MiB)
and writes a plot (time and memory against objects, log x) to `--out`.
"""
import argparse, ctypes, gc, json, os, statistics, subprocess, sys, time
from pathlib import Path
import torch
from workbench.models.yolox_loss import simota_assign, simota_assign_per_image
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/"bench"))
from bench_simota import batch  # noqa: E402  (the shared raw-output / padded-target builder)

METHODS = {"batched": simota_assign, "per-image": simota_assign_per_image}

def inputs(a, n_obj:int):
    "The `simota_assign` arguments for `n_obj` objects per image."
    return batch(a.batch, n_obj, a.size, a.classes, a.device)

def sync(device:str):
    if device.startswith("cuda"): torch.cuda.synchronize()

def interleaved(fns:dict, reps:int, device:str) -> dict:
    "Median seconds of each of `fns`, called in turn (A B A B ...); warm them up first."
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter(); f(); sync(device); times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}

def same(x, y) -> bool:
    return torch.equal(x.fg, y.fg) and torch.equal(x.gt_index, y.gt_index)

def status_mib(key:str) -> float:
    "A `/proc/self/status` size (VmRSS: resident now, VmHWM: peak), MiB."
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024

def child(a):
    "Subprocess: build the inputs, then one call of `a.child_method`; prints the RSS rise (MiB)."
    args = inputs(a, a.child_objects)
    gc.collect(); ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f: f.write("5")  # peak RSS := RSS now
    base = status_mib("VmRSS")
    METHODS[a.child_method](*args, assigner=a.assigner)
    print(json.dumps({"peak_mib": status_mib("VmHWM") - base}))

def cpu_peak(a, n_obj:int, method:str) -> float:
    "Peak RSS rise of one call of `method`, measured in a fresh subprocess."
    cmd = [sys.executable, __file__, "--child-objects", str(n_obj), "--child-method", method,
           *(f"--{k}={getattr(a, k)}" for k in ("batch", "size", "classes", "assigner", "threads"))]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"memory subprocess failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_mib"]

def cuda_peak(a, args, method:str) -> float:
    "Peak CUDA memory above what was allocated before one call of `method`, MiB."
    torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    METHODS[method](*args, assigner=a.assigner); torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20

def measure(a, n_obj:int) -> dict:
    "One row of the table for `n_obj` objects per image."
    args = inputs(a, n_obj)
    fast, ref = (f(*args, assigner=a.assigner) for f in METHODS.values())
    assert same(fast, ref), f"batched and per-image assignments differ at {n_obj} objects"
    sync(a.device)
    fns = {k: (lambda f=f: f(*args, assigner=a.assigner)) for k, f in METHODS.items()}
    t = interleaved(fns, a.reps, a.device)
    peak = ({k: cuda_peak(a, args, k) for k in METHODS} if a.device.startswith("cuda")
            else {k: cpu_peak(a, n_obj, k) for k in METHODS})
    return dict(objects=n_obj, gts=int(args[5].sum()), ms={k: v * 1e3 for k, v in t.items()},
                mib=peak)

def plot(rows:list, title:str, mem:str, out:Path):
    "Time and peak memory (`mem`: how measured) against objects per image (log x)."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.2))
    x = [r["objects"] for r in rows]
    for ax, key, label in zip(axs, ("ms", "mib"), ("median time (ms)", f"{mem} (MiB)")):
        for m, style in zip(METHODS, ("o-", "s--")):
            ax.plot(x, [max(r[key][m], 1e-3) for r in rows], style, label=m)
        ax.set(xscale="log", yscale="log", xlabel="objects per image", ylabel=label)
        ax.set_xticks(x, [str(v) for v in x]); ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3); ax.legend()
    fig.suptitle(title); fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True); fig.savefig(out, dpi=120)

def how(a) -> str:
    return "peak CUDA alloc" if a.device.startswith("cuda") else "peak RSS rise, own subprocess"

def report(a, rows:list) -> str:
    lines = [f"SimOTA ({a.assigner}) scaling, batch {a.batch} at {a.size}², {a.classes} classes, "
             f"{a.device}, {torch.get_num_threads()} thread(s), time: interleaved median of "
             f"{a.reps}; memory: {how(a)}",
             f"{'objects':>8} {'GTs':>6} {'batched ms':>11} {'per-image ms':>13} {'ratio':>7} "
             f"{'batched MiB':>12} {'per-image MiB':>14}"]
    for r in rows:
        ms, mib = r["ms"], r["mib"]
        lines.append(f"{r['objects']:>8} {r['gts']:>6} {ms['batched']:>11.1f} "
                     f"{ms['per-image']:>13.1f} {ms['per-image'] / ms['batched']:>6.1f}x "
                     f"{mib['batched']:>12.1f} {mib['per-image']:>14.1f}")
    return "\n".join(lines)

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, nargs="+", default=[10, 30, 100, 200, 500])
    p.add_argument("--batch", type=int, default=8); p.add_argument("--size", type=int, default=640)
    p.add_argument("--classes", type=int, default=80); p.add_argument("--reps", type=int, default=3)
    p.add_argument("--assigner", default="simota", choices=["simota", "simota_v0"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared machine: 1)")
    p.add_argument("--out", type=Path, default=Path("bench/out/simota_scaling.png"))
    p.add_argument("--child-objects", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-method", choices=list(METHODS), help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.child_method: return child(a)
    rows = []
    for n in a.objects:
        rows.append(measure(a, n)); print(f"  {n} objects done", file=sys.stderr, flush=True)
    text = report(a, rows); print(text, flush=True)
    plot(rows, text.splitlines()[0].split(", time:")[0], how(a), a.out); print(f"plot: {a.out}")

if __name__ == "__main__": main()
