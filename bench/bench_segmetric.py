"""SegMetric update throughput vs torchmetrics' MulticlassConfusionMatrix on 512×512 batches (CPU).

usage: python bench/bench_segmetric.py [--batch 8] [--classes 21] [--reps 7]
Prints the median time per update of each and the ratio (ours / torchmetrics; < 1 = ours faster).
"""
import argparse, statistics, time
import torch
from workbench.metrics import SegMetric

def median_time(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

def main():
    p = argparse.ArgumentParser(); p.add_argument("--batch", type=int, default=8); p.add_argument("--classes", type=int, default=21)
    p.add_argument("--size", type=int, default=512); p.add_argument("--reps", type=int, default=7); a = p.parse_args()
    from torchmetrics.classification import MulticlassConfusionMatrix
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, a.classes, (a.batch, a.size, a.size), generator=g)
    target[:, :16] = 255  # some ignored pixels, as VOC borders
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target.clamp(max=a.classes - 1), torch.randint(0, a.classes, target.shape, generator=g))
    ours, theirs = SegMetric(a.classes), MulticlassConfusionMatrix(a.classes, ignore_index=255)
    t_ours = median_time(lambda: ours.update(pred, target), a.reps)
    t_tm = median_time(lambda: theirs.update(pred, target), a.reps)
    assert torch.equal(ours.confusion, theirs.compute().long())  # same counts after the same updates
    mpix = a.batch*a.size*a.size/1e6
    print(f"batch {a.batch}×{a.size}², {a.classes} classes, {torch.get_num_threads()} threads, median of {a.reps}")
    print(f"SegMetric.update         {t_ours*1e3:8.1f} ms  ({mpix/t_ours:6.1f} Mpix/s)")
    print(f"torchmetrics confusion   {t_tm*1e3:8.1f} ms  ({mpix/t_tm:6.1f} Mpix/s)")
    print(f"ratio ours/torchmetrics  {t_ours/t_tm:8.2f}x")

if __name__ == "__main__": main()
