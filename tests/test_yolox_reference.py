"""`workbench.models.yolox` against the official Megvii YOLOX code (PyPI yolox==0.3.0 model files + the main-branch head).

- Always run, against what the official code produced (`tests/reference/yolox_official/official_outputs.pt`):
  state_dict layouts of nano / s / darknet53 (also `../shared/reference/yolox_{nano,s}_coco80.state_dict.txt` when
  present), parameter counts, the initial cls/obj biases; decoded eval outputs of nano and s for seeded random
  weights (also after `load_official` of an official-format checkpoint); training losses (total/iou/conf/cls/l1/num_fg;
  ours are `YOLOXLoss` on the model's raw outputs, its loss/iou/obj/cls/l1/num_fg mapped to the official keys)
  and gradients (per-parameter norms, the prediction convs in full) for both assigners (`simota` = main,
  `simota_v0` = 0.3.0) with use_l1 off and on; the empty batch; the per-image label assignment of 640² anchors.
  Our batched assignment against our per-image reference needs no official code.
- Live (when the official code is available, skipped otherwise): the same comparisons directly against the official
  modules (state_dict loading both ways, every gradient), and the recorded fixture against a fresh recording.
  The official code is not kept in this repository: put its files in `tests/reference/yolox_official/official/`
  (ignored by git) or point `YOLOX_OFFICIAL` at the folder that holds them (see the README there).
  `python tests/test_yolox_reference.py --make-fixture` re-records the fixture from it.
"""
import importlib, os, sys, types
from pathlib import Path
import pytest, torch
from torch import nn
from torch.testing import assert_close
from workbench.models.registry import create_model
from workbench.models.yolox import _VARIANTS, load_official
from workbench.models.yolox_loss import YOLOXLoss, decode_boxes, make_anchors, simota_assign, simota_assign_per_image

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = REPO.parent/"shared"/"reference"
HERE = REPO/"tests"/"reference"/"yolox_official"
FIXTURE = HERE/"official_outputs.pt"
OFFICIAL_DIR = Path(os.environ.get("YOLOX_OFFICIAL", HERE/"official"))  # holds the official .py files (see README.md)
OFFICIAL_FILES = ("network_blocks.py", "darknet.py", "yolo_pafpn.py", "yolo_fpn.py", "losses.py", "utils.py",
                  "yolo_head.py", "yolo_head_main.py", "yolox.py")
EXPS = {"nano": (0.33, 0.25, True), "s": (0.33, 0.50, False), "darknet53": (1.0, 1.0, False)}  # exps/default: depth, width, depthwise
ASSIGNERS = {"simota": "yolo_head_main", "simota_v0": "yolo_head"}
LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss", "num_fg")  # the official names
OURS = YOLOXLoss.names  # official key -> ours (total_loss -> loss, iou_loss -> iou, conf_loss -> obj, ...)
TRAIN_CASES = [(a, l1) for a in ASSIGNERS for l1 in (False, True)]
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),  # the official head's torch.cuda.amp.autocast
              pytest.mark.usefixtures("one_thread")]

# ---------------------------------------------------------------------------------------------------------------
# shared between the tests and the fixture recorder (deterministic weights and inputs: CPU `torch.Generator`s)

def randomise(model:nn.Module, seed:int=0) -> nn.Module:
    "Random weights and BN statistics (so that eval outputs depend on every tensor), in state_dict order; returns the model."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("running_var"): v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            elif v.is_floating_point(): v.copy_(torch.randn(v.shape, generator=g) * (0.1 if v.dim() > 1 else 0.05))
    return model

def checksum(model:nn.Module) -> float: return float(sum(v.double().sum() for v in model.state_dict().values() if v.is_floating_point()))

def images(shape, seed): return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 255

def targets(B=3, M=12, C=5, size=128, seed=0):
    "`[B, M, 5]` labels (class, cx, cy, w, h), padding rows at the end as the official loader pads; the last image is empty."
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(B, M, 5)
    for b in range(B - 1):
        n = int(torch.randint(2, M + 1, (1,), generator=g))
        wh = torch.rand(n, 2, generator=g) * size * 0.6 + 3
        t[b, :n] = torch.cat([torch.randint(0, C, (n, 1), generator=g).float(), wh / 2 + torch.rand(n, 2, generator=g) * (size - wh), wh], 1)
    return t

EVAL_X = lambda: images((2, 3, 128, 160), 10)                         # nano: both images, s: the first
TRAIN_X = lambda: images((3, 3, 128, 128), 11)
EMPTY_X = lambda: images((2, 3, 128, 128), 12)

def assignment_inputs():
    "640² anchors, 4 images with up to 30 objects (the last one empty), random predictions."
    g = torch.Generator().manual_seed(3)
    grid, stride = make_anchors([(80, 80), (40, 40), (20, 20)], [8, 16, 32])
    raw = torch.randn(4, len(stride), 5 + 10, generator=g)
    raw[..., 2:4] += 1.0  # boxes of a few strides, so that they overlap the objects
    t = targets(B=4, M=30, C=10, size=640, seed=3)
    return grid, stride, decode_boxes(raw[..., :4], grid, stride), raw[..., 5:], raw[..., 4], t

def scalar(v) -> float: return float(torch.as_tensor(v).detach())
def layout(model:nn.Module) -> list: return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
def grad_norms(model:nn.Module) -> dict: return {k: 0.0 if p.grad is None else float(p.grad.double().norm()) for k, p in model.named_parameters()}
def pred_convs(model:nn.Module) -> dict: return {k: v for k, v in model.named_parameters() if k.startswith(("head.cls_preds", "head.reg_preds", "head.obj_preds"))}

# ---------------------------------------------------------------------------------------------------------------
# the official code (optional)

def official_package():
    "The official modules (imported under a private package name), or None when they are not here."
    if not all((OFFICIAL_DIR/f).is_file() for f in OFFICIAL_FILES): return None
    name = "_yolox_official"
    if name not in sys.modules:
        pkg = types.ModuleType(name); pkg.__path__ = [str(OFFICIAL_DIR)]; sys.modules[name] = pkg
    return types.SimpleNamespace(**{m: importlib.import_module(f"{name}.{m}") for m in ("yolox", "yolo_fpn", "yolo_pafpn", *ASSIGNERS.values())})

def official(variant, assigner="simota", num_classes=80):
    "The official model as `exps/default/yolox_<variant>.py` (or `yolov3.py`) builds it."
    pkg = official_package()
    Head, (depth, width, dw) = getattr(pkg, ASSIGNERS[assigner]).YOLOXHead, EXPS[variant]
    if variant == "darknet53": m = pkg.yolox.YOLOX(pkg.yolo_fpn.YOLOFPN(), Head(num_classes, width, in_channels=[128, 256, 512], act="lrelu"))
    else: m = pkg.yolox.YOLOX(pkg.yolo_pafpn.YOLOPAFPN(depth, width, in_channels=[256, 512, 1024], act="silu", depthwise=dw),
                              Head(num_classes, width, in_channels=[256, 512, 1024], act="silu", depthwise=dw))
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d): b.eps, b.momentum = 1e-3, 0.03
    m.head.initialize_biases(1e-2)
    return m

def official_assign(head, assigner, b, boxes, cls, obj, t, grid, stride):
    "The official per-image assignment of image `b` → (fg mask [A], matched GT rows, IoUs)."
    n = int((t[b].sum(-1) > 0).sum())
    gt, gc, xs, ys, es = t[b, :n, 1:5], t[b, :n, 0], grid[None, :, 0], grid[None, :, 1], stride[None]
    if assigner == "simota": r = head.get_assignments(b, n, gt, gc, boxes[b], es, xs, ys, cls, obj[..., None])
    else: r = head.get_assignments(b, n, len(stride), gt, gc, boxes[b], es, xs, ys, cls, boxes, obj[..., None], t, None)
    _, fg, ious, gt_inds, _ = r
    return fg, gt_inds, ious

def record() -> dict:
    "Everything the always-run tests compare against, from the official code only."
    torch.set_num_threads(1)
    out = {"about": "outputs of the official Megvii YOLOX code (PyPI yolox==0.3.0 yolox/models + the main-branch yolo_head) "
                    "for tests/test_yolox_reference.py; float32, CPU, torch " + torch.__version__}
    out["layouts"] = {v: layout(official(v)) for v in EXPS}
    for v in EXPS: assert layout(official(v, "simota_v0")) == out["layouts"][v], f"{v}: the 0.3.0 head has another layout"
    out["params"] = {v: sum(p.numel() for p in official(v).parameters()) for v in EXPS}
    m = official("nano")
    out["init_biases"] = {k: v.detach().clone() for k, v in m.state_dict().items() if k.startswith(("head.cls_preds", "head.obj_preds")) and k.endswith("bias")}
    out["eval"] = {}
    for variant, x in (("nano", EVAL_X()), ("s", EVAL_X()[:1])):
        m = randomise(official(variant)).eval()
        with torch.no_grad(): out["eval"][variant] = {"checksum": checksum(m), "output": m(x)}
    out["train"] = {}
    for assigner, use_l1 in TRAIN_CASES:
        m = randomise(official("nano", assigner, num_classes=5), seed=1).train(); m.head.use_l1 = use_l1
        c = checksum(m)  # before the forward pass updates the BN statistics
        r = m(TRAIN_X(), targets()); r["total_loss"].backward()
        out["train"][f"{assigner}_l1={use_l1}"] = {"checksum": c, "losses": {k: scalar(r[k]) for k in LOSS_KEYS},
            "grad_norms": grad_norms(m),
            "pred_grads": {k: p.grad.clone() for k, p in pred_convs(m).items()}}
    out["empty"] = {}
    for assigner in ASSIGNERS:
        m = randomise(official("nano", assigner, num_classes=5)).train()
        out["empty"][assigner] = {k: scalar(v) for k, v in m(EMPTY_X(), torch.zeros(2, 12, 5)).items()}
    grid, stride, boxes, cls, obj, t = assignment_inputs()
    out["assign"] = {}
    for assigner in ASSIGNERS:
        head = official("nano", assigner, num_classes=10).head
        rows = [official_assign(head, assigner, b, boxes, cls, obj, t, grid, stride) for b in range(3)]
        out["assign"][assigner] = {"fg": torch.stack([fg for fg, _, _ in rows]), "gt_index": [gi.clone() for _, gi, _ in rows],
                                   "iou": [iou.clone() for _, _, iou in rows]}
    return out

needs_official = pytest.mark.skipif(official_package() is None, reason=f"official YOLOX source not found in {OFFICIAL_DIR} "
                                    "(set YOLOX_OFFICIAL; see tests/reference/yolox_official/README.md)")

@pytest.fixture(scope="module")
def recorded(): return torch.load(FIXTURE, weights_only=True)

def ours_model(variant, num_classes=80, seed=0, rec=None):
    "Ours with the seeded random weights; `rec` (a recorded case) checks that they are the ones the fixture was made with."
    m = randomise(create_model(f"yolox_{variant}", num_classes=num_classes), seed)
    if rec is not None: assert abs(checksum(m) - rec["checksum"]) < 1e-6 * max(1.0, abs(rec["checksum"])), \
        "the seeded weights differ from the ones the fixture was recorded with (torch RNG changed?): re-record with --make-fixture"
    return m

def ours_losses(model, x, t, assigner="simota", use_l1=False) -> dict:
    "Our loss (`YOLOXLoss` on the model's raw outputs) under the official key names."
    loss = YOLOXLoss(assigner)
    loss.use_l1 = use_l1
    out = loss(model(x), t)
    return {k: out[v] for k, v in OURS.items()}

# ---------------------------------------------------------------------------------------------------------------
# against the recorded official outputs (always run)

def _shared_layout(variant):
    f = LAYOUTS/f"yolox_{variant}_coco80.state_dict.txt"
    if not f.is_file(): return None
    rows = [l.split("\t") for l in f.read_text().splitlines() if l and not l.startswith("#")]
    return [(k, tuple(int(n) for n in s.strip("()").split(",") if n.strip())) for k, s in rows]

@pytest.mark.parametrize("variant", ["nano", "s", "darknet53"])
def test_state_dict_layout_and_param_count(variant, recorded):
    ours = create_model(f"yolox_{variant}")
    mine = layout(ours)
    refs = {"official": recorded["layouts"][variant]}  # the same with either head (checked when recording)
    if (shared := _shared_layout(variant)) is not None: refs["../shared/reference"] = shared
    for src, ref in refs.items():
        ref = [(k, tuple(s)) for k, s in ref]
        for i, (a, b) in enumerate(zip(mine, ref)): assert a == b, f"line {i + 1} differs from the {src} layout: ours {a}, official {b}"
        assert len(mine) == len(ref), f"{len(mine)} keys, {src} {len(ref)}"
    assert sum(p.numel() for p in ours.parameters()) == recorded["params"][variant]
    assert _VARIANTS[variant][1:3] == EXPS[variant][1:] and (variant == "darknet53" or _VARIANTS[variant][0] == EXPS[variant][0])
    assert all(abs(a.eps - 1e-3) < 1e-12 and a.momentum == 0.03 for a in ours.modules() if isinstance(a, nn.BatchNorm2d))
    if variant == "nano":
        sd = ours.state_dict()
        for k, v in recorded["init_biases"].items(): assert torch.equal(sd[k], v), k

@pytest.mark.parametrize("variant", ["nano", "s"])
def test_eval_outputs_match_recorded(variant, recorded, tmp_path):
    rec = recorded["eval"][variant]
    ours, x = ours_model(variant, rec=rec).eval(), EVAL_X()[:2 if variant == "nano" else 1]
    with torch.no_grad(): a, raw = ours(x), ours(x, raw=True)
    assert a.shape == (len(x), 16 * 20 + 8 * 10 + 4 * 5, 85)
    assert_close(a, rec["output"], rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.decode(raw), a)  # raw outputs (for a validation loss) decode to the same
    torch.save({"start_epoch": 300, "model": ours.state_dict()}, tmp_path/"ckpt.pth")  # the official checkpoint format
    fresh = create_model(f"yolox_{variant}").eval(); load_official(fresh, tmp_path/"ckpt.pth")
    with torch.no_grad(): assert_close(fresh(x), rec["output"], rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("assigner,use_l1", TRAIN_CASES)
def test_training_losses_and_grads_match_recorded(assigner, use_l1, recorded):
    rec = recorded["train"][f"{assigner}_l1={use_l1}"]
    ours = ours_model("nano", num_classes=5, seed=1, rec=rec).train()
    a = ours_losses(ours, TRAIN_X(), targets(), assigner, use_l1)
    for k in LOSS_KEYS: assert_close(scalar(a[k]), rec["losses"][k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")
    assert a["iou_loss"] > 0 and (a["l1_loss"] > 0) == use_l1
    a["total_loss"].backward()
    norms = grad_norms(ours)
    assert norms.keys() == rec["grad_norms"].keys()
    for k, v in rec["grad_norms"].items(): assert_close(norms[k], v, rtol=1e-3, atol=1e-6, msg=lambda m: f"|grad {k}|: {m}")
    for k, v in pred_convs(ours).items(): assert_close(v.grad, rec["pred_grads"][k], rtol=1e-4, atol=1e-6, msg=lambda m: f"grad {k}: {m}")

@pytest.mark.parametrize("assigner", list(ASSIGNERS))
def test_empty_batch_is_finite_and_matches_recorded(assigner, recorded):
    ours = ours_model("nano", num_classes=5).train()
    a = ours_losses(ours, EMPTY_X(), torch.zeros(2, 12, 5), assigner)
    assert all(v.isfinite() for v in a.values()) and a["iou_loss"] == 0 and a["cls_loss"] == 0
    for k in LOSS_KEYS: assert_close(scalar(a[k]), recorded["empty"][assigner][k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")
    a["total_loss"].backward()
    assert all(p.grad is None or p.grad.isfinite().all() for p in ours.parameters())

@pytest.mark.parametrize("assigner", list(ASSIGNERS))
def test_batched_assignment_equals_per_image_and_recorded(assigner, recorded):
    "640² anchors, 4 images with up to 30 objects (one empty): batched == per-image reference == official (recorded)."
    grid, stride, boxes, cls, obj, t = assignment_inputs()
    args = (boxes, cls, obj, t[..., 1:5], t[..., 0].long(), t.sum(-1) > 0, grid, stride)
    res, ref = simota_assign(*args, assigner=assigner), simota_assign_per_image(*args, assigner=assigner)
    assert torch.equal(res.fg, ref.fg) and torch.equal(res.gt_index, ref.gt_index); assert_close(res.iou, ref.iou)
    assert torch.equal(simota_assign(*args, assigner=assigner, max_pairs=1).fg, res.fg)  # one image per chunk
    rec = recorded["assign"][assigner]
    assert torch.equal(res.fg[:3], rec["fg"])
    for b in range(3):
        fg = rec["fg"][b]
        assert torch.equal(res.gt_index[b][fg], rec["gt_index"][b]); assert_close(res.iou[b][fg], rec["iou"][b])
    assert not res.fg[3].any() and res.fg[:3].any(1).all()

# ---------------------------------------------------------------------------------------------------------------
# live comparison with the official code (skipped without it)

def pair(variant, assigner="simota", num_classes=80, seed=0):
    "Ours and the official model with the same random weights."
    ours = ours_model(variant, num_classes, seed)
    theirs = official(variant, assigner, num_classes)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs

@needs_official
@pytest.mark.parametrize("variant", ["nano", "s", "darknet53"])
def test_live_state_dict_layout_and_cross_loading(variant):
    ours, theirs = create_model(f"yolox_{variant}"), official(variant)
    assert layout(ours) == layout(theirs)
    theirs.load_state_dict(ours.state_dict(), strict=True); ours.load_state_dict(theirs.state_dict(), strict=True)
    assert official(variant, "simota_v0").state_dict().keys() == ours.state_dict().keys()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    fresh = create_model(f"yolox_{variant}")
    for a, b in zip([*fresh.head.cls_preds, *fresh.head.obj_preds], [*theirs.head.cls_preds, *theirs.head.obj_preds]): assert torch.equal(a.bias, b.bias)

@needs_official
@pytest.mark.parametrize("variant", ["nano", "s"])
def test_live_eval_outputs_match(variant):
    ours, theirs = pair(variant)
    x = EVAL_X()
    with torch.no_grad(): assert_close(ours.eval()(x), theirs.eval()(x))

@needs_official
@pytest.mark.parametrize("assigner,use_l1", TRAIN_CASES)
def test_live_training_losses_match(assigner, use_l1):
    ours, theirs = pair("nano", assigner, num_classes=5, seed=1)
    ours.train(); theirs.train()
    theirs.head.use_l1 = use_l1
    x, t = TRAIN_X(), targets()
    a, b = ours_losses(ours, x, t, assigner, use_l1), theirs(x, t)
    for k in LOSS_KEYS: assert_close(a[k], torch.as_tensor(b[k], dtype=torch.float32), msg=lambda m: f"{k}: {m}")
    a["total_loss"].backward(); b["total_loss"].backward()
    for (n, p), q in zip(ours.named_parameters(), theirs.parameters()): assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{n}: {m}")

@needs_official
def test_live_empty_batch_matches():
    ours, theirs = pair("nano", num_classes=5)
    x, t = EMPTY_X(), torch.zeros(2, 12, 5)
    assert_close(ours_losses(ours.train(), x, t)["total_loss"], theirs.train()(x, t)["total_loss"])

@needs_official
@pytest.mark.parametrize("assigner", list(ASSIGNERS))
def test_live_assignment_matches_official(assigner):
    grid, stride, boxes, cls, obj, t = assignment_inputs()
    res = simota_assign(boxes, cls, obj, t[..., 1:5], t[..., 0].long(), t.sum(-1) > 0, grid, stride, assigner=assigner)
    head = official("nano", assigner, num_classes=10).head
    for b in range(3):
        fg, gt_inds, ious = official_assign(head, assigner, b, boxes, cls, obj, t, grid, stride)
        assert torch.equal(res.fg[b], fg) and torch.equal(res.gt_index[b][fg], gt_inds)
        assert_close(res.iou[b][fg], ious)

@needs_official
def test_live_fixture_is_current(recorded):
    "The recorded fixture is what the official code gives now (else: re-record with --make-fixture)."
    def same(a, b, path="fixture"):
        if isinstance(a, dict):
            assert a.keys() == b.keys(), path
            for k in a: same(a[k], b[k], f"{path}[{k!r}]")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b)): same(x, y, f"{path}[{i}]")
        elif isinstance(a, torch.Tensor): assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{path}: {m}")
        elif isinstance(a, float): assert_close(a, b, rtol=1e-4, atol=1e-6, msg=lambda m: f"{path}: {m}")
        elif path != "fixture['about']": assert a == b, path
    same(record(), recorded)

# ---------------------------------------------------------------------------------------------------------------

def make_fixture():
    "Record the official outputs (needs the official source, see the module docstring)."
    if official_package() is None: sys.exit(f"official YOLOX source not found in {OFFICIAL_DIR}")
    out = record()
    for k, v in out["train"].items(): print(k, {n: round(x, 4) for n, x in v["losses"].items()})
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, FIXTURE); print("wrote", FIXTURE, f"{FIXTURE.stat().st_size / 1e3:.0f} kB")

if __name__ == "__main__":
    if "--make-fixture" in sys.argv: make_fixture()
    else: print(__doc__)
