"""What the training-step benches (`bench_yolox_step.py`, `bench_deeplabv3_step.py`) share: the
one-step loss/gradient check against the reference, and interleaved timing. Not a bench itself."""
import random, statistics, time
import torch

def grads(model) -> dict:
    return {k: p.grad.detach().float().contiguous() for k, p in model.named_parameters()}

def compare(ours_step, ref_step, ours, ref, ref_name:str="reference"):
    "Loss and gradients of one step on each side, dropout off: max abs and relative difference."
    drops = [m for net in (ours, ref) for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    for m in drops: m.eval()  # channels_last draws its masks in another order
    lo, lr = ours_step(), ref_step()
    for m in drops: m.train()
    go, gr = grads(ours), grads(ref)
    d = {k: (go[k] - gr[k]).norm().item() for k in gr}
    floor = 1e-4 * max(g.norm().item() for g in gr.values())  # grads ~0 (a bias before a BN)
    rel = {k: d[k] / max(gr[k].norm().item(), floor) for k in gr}
    worst = max(rel, key=rel.get)
    dmax = max((go[k] - gr[k]).abs().max().item() for k in gr)
    print(f"loss ours {lo:.6f} {ref_name} {lr:.6f} |diff| {abs(lo - lr):.2e} "
          f"(rel {abs(lo - lr) / abs(lr):.2e})")
    print(f"gradients of {len(gr)} tensors: max |diff| {dmax:.2e}; worst ||diff||/||g|| "
          f"{rel[worst]:.2e} ({worst})")

def timed_interleaved(fns:dict, reps:int, sync, show:bool=False) -> dict:
    """Median (wall, process CPU) seconds of each fn over `reps` rounds of one call each, after a
    warm-up; each round in a new random order, so a periodic neighbour load hits no side alone."""
    for f in fns.values(): f(); sync()
    ts, rng = {k: [] for k in fns}, random.Random(0)
    for _ in range(reps):
        for k in rng.sample(list(fns), len(fns)):
            t0, c0 = time.perf_counter(), time.process_time()
            fns[k](); sync()
            ts[k].append((time.perf_counter() - t0, time.process_time() - c0))
    if show:
        for k, v in ts.items(): print(f"{k:<26} wall s: " + " ".join(f"{w:.2f}" for w, _ in v))
    return {k: tuple(statistics.median(t[i] for t in v) for i in (0, 1)) for k, v in ts.items()}
