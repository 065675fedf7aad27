"""SimOTA label assignment time: the batched `simota_assign` against the straightforward per-image loop
(`simota_assign_per_image`, one image and one GT at a time as in the official YOLOX code).

    python bench/bench_simota.py                  # batch 16 at 640², ~30 objects per image, 80 classes, CPU
    python bench/bench_simota.py --reps 5 --device cuda --assigner simota_v0

Prints the median time of each over `--reps` repeats (after one warm-up) and their ratio; both must give the same
assignment (checked once).
"""
import argparse, statistics, time
import torch
from workbench.models.yolox_loss import decode_boxes, make_anchors, simota_assign, simota_assign_per_image

def batch(n_img:int, n_obj:int, size:int, num_classes:int, device:str, seed:int=0):
    "Random raw head outputs and `[B, n_obj + 10, 5]` padded targets with n_obj ± 5 objects per image."
    g = torch.Generator().manual_seed(seed)
    grid, stride = make_anchors([(size // s, size // s) for s in (8, 16, 32)], [8, 16, 32])
    raw = torch.randn(n_img, len(stride), 5 + num_classes, generator=g)
    raw[..., 2:4] += 1.0  # boxes a few strides wide, overlapping the objects
    t = torch.zeros(n_img, n_obj + 10, 5)
    for b in range(n_img):
        n = n_obj + int(torch.randint(-5, 6, (1,), generator=g))
        wh = torch.rand(n, 2, generator=g) * size / 4 + 8
        t[b, :n] = torch.cat([torch.randint(0, num_classes, (n, 1), generator=g).float(), wh / 2 + torch.rand(n, 2, generator=g) * (size - wh), wh], 1)
    raw, t, grid, stride = (v.to(device) for v in (raw, t, grid, stride))
    return decode_boxes(raw[..., :4], grid, stride), raw[..., 5:], raw[..., 4], t[..., 1:5], t[..., 0].long(), t.sum(-1) > 0, grid, stride

def timed(fn, reps:int, device:str) -> float:
    "Median wall time of `fn()` over `reps` runs, after one warm-up."
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn(); sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); sync(); times.append(time.perf_counter() - t0)
    return statistics.median(times)

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3); p.add_argument("--batch", type=int, default=16)
    p.add_argument("--objects", type=int, default=30); p.add_argument("--size", type=int, default=640)
    p.add_argument("--classes", type=int, default=80); p.add_argument("--assigner", default="simota", choices=["simota", "simota_v0"])
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    args = batch(a.batch, a.objects, a.size, a.classes, a.device)
    fast, ref = simota_assign(*args, assigner=a.assigner), simota_assign_per_image(*args, assigner=a.assigner)
    assert torch.equal(fast.fg, ref.fg) and torch.equal(fast.gt_index, ref.gt_index), "batched and per-image assignments differ"
    t_batched = timed(lambda: simota_assign(*args, assigner=a.assigner), a.reps, a.device)
    t_loop = timed(lambda: simota_assign_per_image(*args, assigner=a.assigner), a.reps, a.device)
    print(f"SimOTA ({a.assigner}), batch {a.batch} at {a.size}², {int(args[5].sum())} objects, {a.classes} classes, "
          f"{a.device}, {torch.get_num_threads()} threads, median of {a.reps}:")
    print(f"  batched  {t_batched * 1e3:8.1f} ms   ({int(fast.fg.sum())} positives)")
    print(f"  per-image loop {t_loop * 1e3:8.1f} ms")
    print(f"  ratio (loop / batched): {t_loop / t_batched:.1f}x")

if __name__ == "__main__": main()
