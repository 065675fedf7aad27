"""Forward+backward step time of our registered DeepLabV3 vs torchvision's own model on the same batch (CPU).

usage: python bench/bench_deeplabv3_step.py [--model deeplabv3_mobilenet_v3_large] [--batch 4] [--size 256] [--reps 5]
The two are timed alternately (A B A B ...) so machine noise hits both alike; prints medians and ours/torchvision.
"""
import argparse, statistics, time
import torch
from torchvision.models import segmentation as tvseg
from workbench.models import create_model

def step(model, x, y):
    out = model(x); loss = torch.nn.functional.cross_entropy(out["out"], y, ignore_index=255) + 0.5*torch.nn.functional.cross_entropy(out["aux"], y, ignore_index=255)
    loss.backward(); model.zero_grad(set_to_none=True)

def main():
    p = argparse.ArgumentParser(); p.add_argument("--model", default="deeplabv3_mobilenet_v3_large"); p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=256); p.add_argument("--reps", type=int, default=5); a = p.parse_args()
    torch.manual_seed(0)
    ref = getattr(tvseg, a.model)(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).train()
    ours = create_model(a.model, num_classes=21).train(); ours.load_state_dict(ref.state_dict())
    x, y = torch.randn(a.batch, 3, a.size, a.size), torch.randint(0, 21, (a.batch, a.size, a.size))
    times = {"ours": [], "torchvision": []}
    for m in (ours, ref): step(m, x, y)  # warm-up
    for _ in range(a.reps):
        for name, m in (("ours", ours), ("torchvision", ref)):
            t = time.perf_counter(); step(m, x, y); times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.model}, batch {a.batch}×{a.size}², {torch.get_num_threads()} threads, median of {a.reps}")
    for k, v in med.items(): print(f"{k:<12} {v*1e3:8.1f} ms/step")
    print(f"ratio ours/torchvision {med['ours']/med['torchvision']:.3f}x")

if __name__ == "__main__": main()
