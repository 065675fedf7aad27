"""DeepLabV3 training step: the workbench's against torchvision's own model, same weights and batch.

    python bench/bench_deeplabv3_step.py                  # mobilenet_v3_large, 4×256², 2 threads
    python bench/bench_deeplabv3_step.py --reps 9 --other-layout    # + ours contiguous
    python bench/bench_deeplabv3_step.py --compile                  # + ours under torch.compile
    python bench/bench_deeplabv3_step.py --dense-atrous   # + ours with every dilated conv in full
    python bench/bench_deeplabv3_step.py --device cuda --amp bf16   # untested: no GPU here

Run from the repository root with the package importable (`pip install -e .` or PYTHONPATH=.).
A step is `zero_grad` + forward + loss + backward (+ an SGD step with `--sgd`, the same on both
sides). Ours is what training runs by default: `create_model(--model, num_classes=21)` with its
aux head, the loss as the segmentation task builds it (`create_loss(LossConfig(), ...)`:
"seg_ce", CE on out + 0.5·CE on aux, ignore_index 255), and the model in channels_last memory
format as the Learner puts it with `train.channels_last` on (default on CUDA; `seg_shapes` sets it
on CPU too): `model.to(memory_format=torch.channels_last)` before the optimizer is built;
`--no-channels-last` to time it without, its dilated convolutions
`AtrousConv2d` (`workbench.models.segmentation`: the taps that only see the zero padding skipped;
`--dense-atrous` also times ours with them in full, as torchvision computes them). The
reference is torchvision's `segmentation.<model>(num_classes=21, aux_loss=True)`, contiguous,
with plain
`cross_entropy(out) + 0.5·cross_entropy(aux)`. Both get the same state_dict and batch.

Prints the loss and gradient differences of one fp32 step with dropout off (max |diff|, worst
per-tensor ||diff|| / ||g||), then the median wall and process-CPU ms per step of each side over
`--reps` interleaved rounds (one step of each side per round, in a new random order each round,
after a warm-up) and the ratios ours / torchvision (`--show-times`: every repeat's wall time).
`--compile` prints the compile time apart.
"""
import argparse, copy, sys, time
from contextlib import nullcontext
import torch
import torch.nn.functional as F
from torchvision.models import segmentation as tvseg
from workbench.config import LossConfig
from workbench.losses import create_loss
from workbench.models import create_model
from workbench.models.segmentation import dense_atrous
from _step_common import compare, timed_interleaved  # bench/

def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="deeplabv3_mobilenet_v3_large")
    p.add_argument("--batch", type=int, default=4); p.add_argument("--size", type=int, default=256)
    p.add_argument("--reps", type=int, default=7); p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--other-layout", action="store_true",
                   help="also time ours in the other memory format")
    p.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    p.add_argument("--dense-atrous", action="store_true",
                   help="also time ours with every dilated convolution in full (dense_atrous)")
    p.add_argument("--sgd", action="store_true", help="add an SGD step on both sides")
    p.add_argument("--show-times", action="store_true", help="print every repeat's wall time")
    return p.parse_args()

def stepper(model, loss_of, a, dev):
    "A training step of `model`: zero_grad, forward + loss under `--amp`, backward (+ SGD)."
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9) if a.sgd else None
    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype) if dtype else nullcontext():
            L = loss_of(model)
        L.backward()
        if opt: opt.step()
        return L.item()
    return step

def layout(cl:bool) -> str: return "channels_last" if cl else "contiguous"

def main():
    a = parse()
    torch.set_num_threads(a.threads)
    if not hasattr(tvseg, a.model): sys.exit(f"torchvision has no segmentation.{a.model}")
    dev = torch.device(a.device)
    torch.manual_seed(0)
    ref = getattr(tvseg, a.model)(weights=None, weights_backbone=None, num_classes=21,
                                  aux_loss=True).train()
    ours = create_model(a.model, num_classes=21).train()
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours, ref = ours.to(dev), ref.to(dev)
    other = copy.deepcopy(ours)
    if not a.channels_last: other.to(memory_format=torch.channels_last)
    if a.channels_last: ours.to(memory_format=torch.channels_last)  # as the Learner does
    loss = create_loss(LossConfig(), ours, a.model, default="seg_ce", num_classes=21,
                       ignore_index=255)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=g).to(dev)
    y = torch.randint(0, 21, (a.batch, a.size, a.size), generator=g).to(dev)
    y[:, :8] = 255  # some unlabelled pixels
    ce = lambda o: F.cross_entropy(o, y, ignore_index=255)
    ours_loss = lambda m: loss(m(x), y)["loss"]
    ours_step = stepper(ours, ours_loss, a, dev)
    ref_step = stepper(ref, lambda m: (lambda o: ce(o["out"]) + 0.5 * ce(o["aux"]))(m(x)), a, dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if not a.sgd and a.amp == "none": compare(ours_step, ref_step, ours, ref, "torchvision")
    fns = {"ours": ours_step, "torchvision": ref_step}
    if a.other_layout:
        fns[f"ours {layout(not a.channels_last)}"] = stepper(other, ours_loss, a, dev)
    if a.dense_atrous:
        def dense_loss(m):
            with dense_atrous(): return ours_loss(m)
        fns["ours dense atrous"] = stepper(ours, dense_loss, a, dev)
    if a.compile:
        fns["ours+compile"] = stepper(torch.compile(ours), ours_loss, a, dev)
        t0 = time.perf_counter(); fns["ours+compile"](); sync()
        print(f"torch.compile: first step (compile included) {time.perf_counter() - t0:.1f} s")
    med = timed_interleaved(fns, a.reps, sync, a.show_times)
    print(f"{a.model}, batch {a.batch}×{a.size}², {a.device}, amp {a.amp}, "
          f"{torch.get_num_threads()} threads, ours {layout(a.channels_last)}, median of "
          f"{a.reps} interleaved steps{' + SGD' if a.sgd else ''}")
    report(med, "torchvision")

def report(med:dict, ref:str):
    "Medians and ratios against `ref`."
    print("wall ms/step, process CPU ms/step (all threads; under load the CPU time moves less)")
    for k, (w, c) in med.items(): print(f"{k:<26} {w * 1e3:9.1f} {c * 1e3:9.1f}")
    for k in med:
        if k == ref: continue
        r = [med[k][i] / med[ref][i] for i in (0, 1)]
        print(f"ratio {k}/{ref}: wall {r[0]:.3f}x, CPU {r[1]:.3f}x")

if __name__ == "__main__": main()
