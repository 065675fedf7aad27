"""Test-time augmentation: the validation metric and time with and without it, one trained run.

    python bench/bench_tta.py RUN_DIR [--which best] [--repeats 2] [--set model.tta_scales=[1,1.5]]

RUN_DIR is a segmentation or detection run folder (config.yaml, weights/<which>.safetensors).
The plain and the TTA evaluation (`model.tta=true`, the task's default scales and the flip unless
--set says otherwise) alternate (plain, TTA, plain, TTA, ...) in one process on one thread; it
prints each one's headline metrics (segmentation mIoU / aAcc, detection AP / AP50), the median
seconds per evaluation and the TTA / plain time ratio. The metrics are deterministic, so they are
printed once.
"""
import argparse, copy, statistics, tempfile, time
from pathlib import Path
import torch
from workbench.config import load_config, apply_overrides, check_config
from workbench.core import load_weights
from workbench.learner import Learner
from workbench.models import load_pretrained
import workbench.experiments, workbench.tasks.segmentation, workbench.tasks.detection  # registries

HEADLINE = {"segmentation": ("mIoU", "aAcc", "mAcc"), "detection": ("AP", "AP50", "AP75")}

def learner(cfg, weights, run_dir):
    lr = Learner(cfg, run_dir, train=False)
    load_pretrained(lr.acc.unwrap_model(lr.model), load_weights(weights), strict=True)
    return lr

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run"); ap.add_argument("--which", default="best")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], help="TTA overrides, e.g. model.tta_scales=[1,1.5]")
    a = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(a.run)
    base = apply_overrides(load_config(run/"config.yaml"), ["train.cpu_threads=1"])
    plain = apply_overrides(copy.deepcopy(base), ["model.tta=false"])  # seg_shapes sets model.tta
    cfgs = {"plain": plain, "tta": check_config(apply_overrides(copy.deepcopy(base),
                                                              ["model.tta=true", *a.set]))}
    tmp, weights = Path(tempfile.mkdtemp(prefix="bench_tta_")), run/"weights"/f"{a.which}.safetensors"
    learners = {k: learner(c, weights, tmp/k) for k, c in cfgs.items()}
    times, metrics = {k: [] for k in cfgs}, {}
    for _ in range(a.repeats):
        for k, lr in learners.items():  # interleaved: plain, tta, plain, tta, ...
            t = time.perf_counter()
            metrics[k] = lr.evaluate(lr.model)
            times[k].append(time.perf_counter() - t)
    keys = HEADLINE[base.task]
    m = cfgs["tta"].model
    print(f"{run} ({base.model.name}, {len(learners['plain'].val_ds)} val images); TTA scales "
          f"{m.tta_scales or 'task default'}, flip {m.tta_flip}; {a.repeats} repeats, 1 thread")
    for k in cfgs:
        print(f"{k:<6}" + "".join(f"  {n} {metrics[k][n]:.4f}" for n in keys)
              + f"  {statistics.median(times[k]):.1f} s")
    print("delta " + "".join(f"  {n} {metrics['tta'][n] - metrics['plain'][n]:+.4f}" for n in keys)
          + f"  time ratio {statistics.median(times['tta']) / statistics.median(times['plain']):.2f}x")

if __name__ == "__main__":
    main()
