"""YOLOX training step: the workbench's against the official Megvii YOLOX, same weights, same batch.

    git clone https://github.com/Megvii-BaseDetection/YOLOX /tmp/yolox_src   # the reference
    pip install loguru          # its model files import it (a logging stand-in is used if absent)
    python bench/bench_yolox_step.py --yolox-src /tmp/yolox_src   # or YOLOX_SRC=...; 2 threads
    python bench/bench_yolox_step.py --reps 7 --other-layout      # + ours contiguous, interleaved
    python bench/bench_yolox_step.py --compile                    # + ours under torch.compile
    python bench/bench_yolox_step.py --device cuda --amp bf16     # untested: no GPU here

Run from the repository root with the package importable (`pip install -e .` or PYTHONPATH=.).
A step is `zero_grad` + forward + YOLOX loss (SimOTA) + backward (+ an SGD step with `--sgd`, the
same on both sides). Ours is what training runs: `create_model(--model)`, the loss as the
detection task builds it (`create_loss(LossConfig(), ...)`: "yolox"), and the model in
channels_last memory format as the Learner puts it with `train.channels_last` on (its default on
CUDA, a recipe's choice on CPU): `model.to(memory_format=torch.channels_last)` before the
optimizer is built; `--no-channels-last` times it contiguous, `--other-layout` both.
The reference is the official `YOLOX(YOLOPAFPN, YOLOXHead)` as its `Exp.get_model` builds it
(BN eps 1e-3, momentum 0.03, prior biases 0.01) with its own loss (`model(images, targets)`),
contiguous, as its trainer runs it. Both get the same state_dict and batch (`--batch` images of
`--size`², `--objects` boxes each, 80 classes).

Prints the loss and gradient differences of one fp32 step (max |diff|, worst per-tensor
||diff|| / ||g||), then the median wall and process-CPU ms per step of each side over `--reps`
interleaved rounds (one step of each side per round, in a new random order each round, after a
warm-up) and the ratios ours / official (`--show-times`: every repeat's wall time).
`--compile` compiles the model only (the assignment has data-dependent shapes) and prints the
compile time apart. Exits with a message when the official code is absent.
"""
import argparse, copy, logging, os, sys, time, types
from contextlib import nullcontext
from pathlib import Path
import torch
from workbench.config import LossConfig
from workbench.losses import create_loss
from workbench.models import create_model
from _step_common import compare, timed_interleaved  # bench/
from workbench.models.yolox import _VARIANTS

def official_modules(src:str):
    "Import `yolox.models` from the official checkout `src` (loguru stubbed when absent)."
    if not (Path(src)/"yolox"/"models"/"yolo_head.py").is_file():
        sys.exit(f"official YOLOX not found at {src!r}: git clone "
                 "https://github.com/Megvii-BaseDetection/YOLOX and pass --yolox-src")
    try: import loguru  # noqa: F401
    except ImportError: sys.modules["loguru"] = types.SimpleNamespace(logger=logging.getLogger())
    sys.path.insert(0, str(Path(src).resolve()))
    import yolox.models as ym
    return ym

def official_model(ym, variant:str, num_classes:int):
    "The official `Exp.get_model()` (yolox_base.py) for a CSPDarknet variant."
    depth, width, dw, _ = _VARIANTS[variant]
    backbone = ym.YOLOPAFPN(depth, width, in_channels=[256, 512, 1024], depthwise=dw)
    head = ym.YOLOXHead(num_classes, width, in_channels=[256, 512, 1024], depthwise=dw)
    model = ym.YOLOX(backbone, head)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d): m.eps, m.momentum = 1e-3, 0.03
    model.head.initialize_biases(1e-2)
    return model.train()

def make_batch(b:int, size:int, objects:int, num_classes:int, seed:int=0):
    "Images [b, 3, size, size] 0–255 and targets [b, objects + 10, 5] (valid rows first)."
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, size, size, generator=g) * 255
    t = torch.zeros(b, objects + 10, 5)
    wh = 16 + torch.rand(b, objects, 2, generator=g) * size / 4
    t[:, :objects, 0] = torch.randint(0, num_classes, (b, objects), generator=g).float()
    t[:, :objects, 1:3] = wh / 2 + torch.rand(b, objects, 2, generator=g) * (size - wh)
    t[:, :objects, 3:5] = wh
    return x, t

def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--yolox-src", default=os.environ.get("YOLOX_SRC", "/tmp/yolox_src"))
    p.add_argument("--model", default="yolox_s", choices=[f"yolox_{v}" for v in _VARIANTS
                                                          if v != "darknet53"])
    p.add_argument("--batch", type=int, default=4); p.add_argument("--size", type=int, default=640)
    p.add_argument("--objects", type=int, default=30); p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2); p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--other-layout", action="store_true",
                   help="also time ours in the other memory format")
    p.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
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
    ym, dev = official_modules(a.yolox_src), torch.device(a.device)
    torch.manual_seed(0)
    ours = create_model(a.model, num_classes=80).train()
    ref = official_model(ym, a.model.split("_", 1)[1], 80)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours, ref = ours.to(dev), ref.to(dev)
    other = copy.deepcopy(ours)
    if not a.channels_last: other.to(memory_format=torch.channels_last)
    if a.channels_last: ours.to(memory_format=torch.channels_last)  # as the Learner does
    loss = create_loss(LossConfig(), ours, a.model, default="yolox", num_classes=80,
                       img_size=a.size)
    x, t = (v.to(dev) for v in make_batch(a.batch, a.size, a.objects, 80))
    ours_loss = lambda m: loss(m(x), t)["loss"]
    ours_step = stepper(ours, ours_loss, a, dev)
    ref_step = stepper(ref, lambda m: m(x, t)["total_loss"], a, dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if not a.sgd and a.amp == "none": compare(ours_step, ref_step, ours, ref, "official")
    fns = {"ours": ours_step, "official": ref_step}
    if a.other_layout:
        fns[f"ours {layout(not a.channels_last)}"] = stepper(other, ours_loss, a, dev)
    if a.compile:
        fns["ours+compile"] = stepper(torch.compile(ours), ours_loss, a, dev)
        t0 = time.perf_counter(); fns["ours+compile"](); sync()
        print(f"torch.compile: first step (compile included) {time.perf_counter() - t0:.1f} s")
    med = timed_interleaved(fns, a.reps, sync, a.show_times)
    print(f"{a.model}, batch {a.batch}×{a.size}², {a.objects} objects/image, {a.device}, amp "
          f"{a.amp}, {torch.get_num_threads()} threads, ours {layout(a.channels_last)}, median "
          f"of {a.reps} interleaved steps{' + SGD' if a.sgd else ''}")
    report(med, "official")

def report(med:dict, ref:str):
    "Medians and ratios against `ref`."
    print("wall ms/step, process CPU ms/step (all threads; under load the CPU time moves less)")
    for k, (w, c) in med.items(): print(f"{k:<26} {w * 1e3:9.1f} {c * 1e3:9.1f}")
    for k in med:
        if k == ref: continue
        r = [med[k][i] / med[ref][i] for i in (0, 1)]
        print(f"ratio {k}/{ref}: wall {r[0]:.3f}x, CPU {r[1]:.3f}x")

if __name__ == "__main__": main()
