"""YOLOX forward+backward step time on CPU, and how much of it is the loss (SimOTA assignment included).

usage: python bench/bench_yolox_step.py [--model yolox_s] [--batch 4] [--size 640] [--objects 30] [--reps 3]
Prints median ms per step for the full train step and for the forward alone (eval decode), and the ratios.
"""
import argparse, statistics, time
import torch
from workbench.models import create_model
from workbench.models.yolox_loss import YOLOXLoss

def timed(fn, reps):
    fn(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

def main():
    p = argparse.ArgumentParser(); p.add_argument("--model", default="yolox_s"); p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=640); p.add_argument("--objects", type=int, default=30); p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    g = torch.Generator().manual_seed(0)
    m = create_model(a.model, num_classes=80)
    x = torch.rand(a.batch, 3, a.size, a.size, generator=g) * 255
    t = torch.zeros(a.batch, 120, 5)
    wh = 16 + torch.rand(a.batch, a.objects, 2, generator=g) * a.size / 4
    t[:, :a.objects, 0] = torch.randint(0, 80, (a.batch, a.objects), generator=g).float()
    t[:, :a.objects, 1:3] = wh / 2 + torch.rand(a.batch, a.objects, 2, generator=g) * (a.size - wh)
    t[:, :a.objects, 3:5] = wh
    loss = YOLOXLoss()
    def train_step():
        m.train()
        loss(m(x), t)["loss"].backward()
        m.zero_grad(set_to_none=True)
    def fwd_bwd_no_loss():  # the same forward + a trivial loss on the raw outputs: the network's share
        m.train()
        m(x)["raw"].float().mean().backward()
        m.zero_grad(set_to_none=True)
    @torch.no_grad()
    def eval_fwd():
        m.eval()
        m(x)
    s, n, e = timed(train_step, a.reps), timed(fwd_bwd_no_loss, a.reps), timed(eval_fwd, a.reps)
    print(f"{a.model}, batch {a.batch}×{a.size}², {a.objects} objects/image, {torch.get_num_threads()} threads, median of {a.reps}")
    print(f"train step (forward + YOLOX loss + backward)  {s*1e3:9.1f} ms")
    print(f"forward + backward without the loss           {n*1e3:9.1f} ms")
    print(f"eval forward (decoded outputs)                {e*1e3:9.1f} ms")
    print(f"loss share of the train step                  {(s - n)/s:9.2f}  (ratio step / network-only {s/n:.2f}x)")

if __name__ == "__main__": main()
