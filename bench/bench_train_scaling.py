"""Training images/s with 1 and 2 CPU processes, through the real loop (`workbench/train.py`).

    python bench/bench_train_scaling.py                  # seg_shapes, steps 5..30 timed, 3 repeats
    python bench/bench_train_scaling.py --configs 1x2 2x1 1x1 --repeats 5   # also 1 x 1 thread
    python bench/bench_train_scaling.py --exp yolox_nano_shapes --omp-passive

Every run is a subprocess on the default synthetic data, into a temporary runs folder:

    python workbench/train.py --exp EXP --set train.iters=N+1 train.cpu_threads=2 ... # 1 process
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 workbench/train.py --exp EXP \\
        --set train.iters=N+1 train.cpu_threads=1 ...                                # 2 processes

(torchrun is run as `python -m torch.distributed.run`), with `train.eval_every=1000
train.val_loss=false`. `--configs` lists PROCESSESxTHREADS (default 1x2 2x1: both fill the 2
cores of a small machine); OMP_NUM_THREADS is set to the threads too.

What is timed. The Learner records no step time (results.csv and TensorBoard get one row per
epoch, after the evaluation), but its progress bar does see every batch: each run gets
TQDM_BAR_FORMAT / TQDM_MININTERVAL=0 (tqdm's environment defaults) so the bar prints the batch
count and the elapsed seconds (float) at every batch. images/s = images per batch ·
(N − W) / (t(N) − t(W)): batches W+1..N of the first epoch (`--warmup` W, `--steps` N, which must
fit in one epoch), each with its data loading, forward, backward and optimizer step; start-up,
data generation, the first W batches and the evaluation are outside. Once batch N is printed the
run is stopped (its process group is sent SIGTERM): the end-of-run evaluation is not needed.

Global batch: each process keeps `data.batch_size` (16 for seg_shapes), so 2 processes take twice
the images per optimizer step (global batch 32); images/s counts all processes' images.

`--omp-passive` adds OMP_WAIT_POLICY=PASSIVE: on a machine that other jobs keep busy, OpenMP
threads spinning while they wait made 1 process x 2 threads several times slower than 1 thread
on the 2-core dev machine, a cost of the busy machine more than of the loop.

Runs alternate (1x2, 2x1, 1x2, ...; the order flips every repeat). Prints each run, then a table:
processes, threads each, global batch, images/s median, spread (min–max), speed-up (median
against the first configuration's median).
"""
import argparse, os, re, signal, socket, statistics, subprocess, sys, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO/"workbench"/"train.py"
BAR = "|bench|{desc}|{n}|{total}|{elapsed_s:.4f}|\n"  # one line per batch
LINE = re.compile(r"\|bench\|epoch (\d+)/\d+\|(\d+)\|(\d+)\|([\d.]+)\|")

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def command(a, procs:int, threads:int, out:Path, name:str) -> list:
    "The `workbench/train.py` command line of one run (under torchrun when `procs` > 1)."
    launch = [sys.executable]
    if procs > 1:
        launch += ["-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                   f"--master_port={free_port()}"]
    # + 1: the bar prints batch n when the loop asks for batch n + 1 (the last one it never shows)
    sets = [f"train.iters={a.steps + 1}", f"train.cpu_threads={threads}",
            "train.eval_every=1000", "train.val_loss=false", *a.set]
    return [*launch, str(SCRIPT), "--exp", a.exp, "--output", str(out), "--name", name,
            "--set", *sets]

def environment(a, threads:int) -> dict:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": str(threads), "TQDM_BAR_FORMAT": BAR, "TQDM_MININTERVAL": "0",
            **({"OMP_WAIT_POLICY": "PASSIVE"} if a.omp_passive else {}),
            "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

def batch_times(a, procs:int, threads:int, out:Path, name:str) -> dict:
    "Run until the bar shows batch `a.steps` of epoch 1; {batch: elapsed seconds}."
    cmd, seen, tail = command(a, procs, threads, out, name), {}, []
    p = subprocess.Popen(cmd, cwd=out, env=environment(a, threads), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in p.stderr:
            tail = (tail + [line])[-40:]
            m = LINE.search(line)
            if m and m[1] == "1":
                n, total, t = int(m[2]), int(m[3]), float(m[4])
                if total < a.steps: raise RuntimeError(f"{a.steps} steps > {total} in an epoch")
                seen[n] = t
                if n >= a.steps: break
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGTERM)
        p.wait()
    if a.steps not in seen:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{''.join(tail)}")
    return seen

def images_per_s(a, procs:int, threads:int, out:Path, name:str) -> float:
    "Images/s over batches `a.warmup`+1 .. `a.steps` of one run (all processes' images)."
    t = batch_times(a, procs, threads, out, name)
    return a.batch * procs * (a.steps - a.warmup) / (t[a.steps] - t[a.warmup])

def per_process_batch(a) -> int:
    "`data.batch_size` of the experiment with `--set` applied (--print-config)."
    r = subprocess.run([sys.executable, str(SCRIPT), "--exp", a.exp, "--print-config",
                        *(["--set", *a.set] if a.set else [])], capture_output=True, text=True,
                       env=environment(a, 1), check=True)
    data = r.stdout.split("\ndata:\n", 1)[1]
    return int(re.search(r"^  batch_size: (\d+)$", data, re.M)[1])

def table(a, ips:dict) -> str:
    base = statistics.median(ips[a.configs[0]])
    lines = [f"{a.exp}: training images/s over batches {a.warmup + 1}-{a.steps}, "
             f"{a.repeats} repeats (alternated){', OMP_WAIT_POLICY=PASSIVE' * a.omp_passive}",
             f"{'processes':>9} {'threads each':>12} {'global batch':>12} {'images/s median':>15} "
             f"{'spread (min-max)':>17} {'speed-up':>8}"]
    for (p, th), v in ips.items():
        m = statistics.median(v)
        lines.append(f"{p:>9} {th:>12} {a.batch * p:>12} {m:>15.1f} "
                     f"{f'{min(v):.1f}-{max(v):.1f}':>17} {m / base:>7.2f}x")
    return "\n".join(lines)

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", default="seg_shapes", help="python workbench/train.py --list")
    p.add_argument("--steps", type=int, default=30, help="N: batches timed to (train.iters=N+1)")
    p.add_argument("--warmup", type=int, default=5, help="W: first batches left out")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=["1x2", "2x1"],
                   help="PROCESSESxTHREADS each; speed-up is against the first")
    p.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE overrides for every run")
    p.add_argument("--omp-passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE")
    a = p.parse_args()
    a.configs = [tuple(int(v) for v in c.split("x")) for c in a.configs]
    a.batch = per_process_batch(a)
    ips = {c: [] for c in a.configs}
    with tempfile.TemporaryDirectory(prefix="train_scaling_") as tmp:
        for r in range(a.repeats):
            for c in (a.configs if r % 2 == 0 else a.configs[::-1]):
                ips[c].append(images_per_s(a, *c, Path(tmp), f"p{c[0]}t{c[1]}_r{r}"))
                print(f"repeat {r + 1}: {c[0]} process(es) x {c[1]} thread(s): "
                      f"{ips[c][-1]:.1f} images/s", flush=True)
    print(table(a, ips))

if __name__ == "__main__": main()
