"""`workbench.models.yolox` against the official Megvii YOLOX code kept in `tests/reference/yolox_official`
(0.3.0 model files + the main-branch head): state_dict layout both ways, decoded eval outputs, label assignment and
training losses for the same weights and batch, with both SimOTA variants."""
import warnings
import pytest, torch
from torch import nn
from torch.testing import assert_close
from workbench.models.registry import create_model
from workbench.models.yolox import _VARIANTS, load_official
from workbench.models.yolox_loss import decode_boxes, make_anchors, simota_assign, simota_assign_per_image
from reference.yolox_official import yolo_head as head_v0, yolo_head_main as head_main
from reference.yolox_official.yolo_fpn import YOLOFPN
from reference.yolox_official.yolo_pafpn import YOLOPAFPN
from reference.yolox_official.yolox import YOLOX

HEADS = {"simota": head_main, "simota_v0": head_v0}
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # the official head's torch.cuda.amp.autocast

def official(variant, assigner="simota", num_classes=80):
    "The official model as `exps/default/yolox_<variant>.py` (or `yolov3.py`) builds it."
    Head = HEADS[assigner].YOLOXHead
    depth, width, dw, _ = _VARIANTS[variant]
    if variant == "darknet53": m = YOLOX(YOLOFPN(), Head(num_classes, width, in_channels=[128, 256, 512], act="lrelu"))
    else: m = YOLOX(YOLOPAFPN(depth, width, in_channels=[256, 512, 1024], act="silu", depthwise=dw),
                    Head(num_classes, width, in_channels=[256, 512, 1024], act="silu", depthwise=dw))
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d): b.eps, b.momentum = 1e-3, 0.03
    m.head.initialize_biases(1e-2)
    return m

def randomise(model, seed=0):
    "Random weights and BN statistics (so that eval outputs depend on every tensor); returns the model."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("running_var"): v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            elif v.is_floating_point(): v.copy_(torch.randn(v.shape, generator=g) * (0.1 if v.dim() > 1 else 0.05))
    return model

def pair(variant, assigner="simota", num_classes=80, seed=0):
    "Ours and the official model with the same random weights."
    ours = randomise(create_model(f"yolox_{variant}", num_classes=num_classes, assigner=assigner), seed)
    theirs = official(variant, assigner, num_classes)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs

def targets(B=3, M=12, C=5, size=128, seed=0):
    "`[B, M, 5]` labels (class, cx, cy, w, h), padding rows at the end as the official loader pads; the last image is empty."
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(B, M, 5)
    for b in range(B - 1):
        n = int(torch.randint(2, M + 1, (1,), generator=g))
        wh = torch.rand(n, 2, generator=g) * size * 0.6 + 3
        t[b, :n] = torch.cat([torch.randint(0, C, (n, 1), generator=g).float(), wh / 2 + torch.rand(n, 2, generator=g) * (size - wh), wh], 1)
    return t

@pytest.mark.parametrize("variant", ["nano", "s", "darknet53"])
def test_state_dict_layout_and_cross_loading(variant):
    ours, theirs = create_model(f"yolox_{variant}"), official(variant)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    theirs.load_state_dict(ours.state_dict(), strict=True); ours.load_state_dict(theirs.state_dict(), strict=True)
    assert official(variant, "simota_v0").state_dict().keys() == ours.state_dict().keys()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert all(abs(a.eps - 1e-3) < 1e-12 and a.momentum == 0.03 for a in ours.modules() if isinstance(a, nn.BatchNorm2d))
    for a, b in zip([*ours.head.cls_preds, *ours.head.obj_preds], [*theirs.head.cls_preds, *theirs.head.obj_preds]): assert torch.equal(a.bias, b.bias)

@pytest.mark.parametrize("variant", ["nano", "s"])
def test_eval_outputs_match(variant, tmp_path):
    ours, theirs = pair(variant)
    x = torch.rand(2, 3, 128, 160) * 255
    with torch.no_grad(): a, b = ours.eval()(x), theirs.eval()(x)
    assert a.shape == (2, 16 * 20 + 8 * 10 + 4 * 5, 85)
    assert_close(a, b)
    torch.save({"start_epoch": 300, "model": theirs.state_dict()}, tmp_path/"ckpt.pth")  # the official checkpoint format
    fresh = create_model(f"yolox_{variant}").eval(); load_official(fresh, tmp_path/"ckpt.pth")
    with torch.no_grad(): assert_close(fresh(x), b)

@pytest.mark.parametrize("assigner", ["simota", "simota_v0"])
@pytest.mark.parametrize("use_l1", [False, True])
def test_training_losses_match(assigner, use_l1):
    ours, theirs = pair("nano", assigner, num_classes=5, seed=1)
    ours.train(); theirs.train()
    ours.head.use_l1 = theirs.head.use_l1 = use_l1
    x, t = torch.rand(3, 3, 128, 128) * 255, targets()
    a, b = ours(x, t), theirs(x, t)
    for k in ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss", "num_fg"):
        assert_close(a[k], torch.as_tensor(b[k], dtype=torch.float32), msg=lambda m: f"{k}: {m}")
    assert a["iou_loss"] > 0 and (a["l1_loss"] > 0) == use_l1
    a["total_loss"].backward(); b["total_loss"].backward()
    for (n, p), q in zip(ours.named_parameters(), theirs.parameters()): assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{n}: {m}")

def test_empty_batch_is_finite():
    ours, theirs = pair("nano", num_classes=5)
    x, t = torch.rand(2, 3, 128, 128) * 255, torch.zeros(2, 12, 5)
    a, b = ours.train()(x, t), theirs.train()(x, t)
    assert all(v.isfinite() for v in a.values()) and a["iou_loss"] == 0 and a["cls_loss"] == 0
    assert_close(a["total_loss"], b["total_loss"])
    a["total_loss"].backward()
    assert all(p.grad is None or p.grad.isfinite().all() for p in ours.parameters())

def _official_assign(head, assigner, b, boxes, cls, obj, t, grid, stride):
    "The official per-image assignment of image `b` → (fg mask [A], matched GT rows, IoUs)."
    n = int((t[b].sum(-1) > 0).sum())
    gt, gc, xs, ys, es = t[b, :n, 1:5], t[b, :n, 0], grid[None, :, 0], grid[None, :, 1], stride[None]
    if assigner == "simota": r = head.get_assignments(b, n, gt, gc, boxes[b], es, xs, ys, cls, obj[..., None])
    else: r = head.get_assignments(b, n, len(stride), gt, gc, boxes[b], es, xs, ys, cls, boxes, obj[..., None], t, None)
    _, fg, ious, gt_inds, _ = r
    return fg, gt_inds, ious

@pytest.mark.parametrize("assigner", ["simota", "simota_v0"])
def test_batched_assignment_equals_per_image_and_official(assigner):
    "640² anchors, 4 images with up to 30 objects (one empty): batched == per-image reference == official."
    g = torch.Generator().manual_seed(3)
    grid, stride = make_anchors([(80, 80), (40, 40), (20, 20)], [8, 16, 32])
    raw = torch.randn(4, len(stride), 5 + 10, generator=g)
    raw[..., 2:4] += 1.0  # boxes of a few strides, so that they overlap the objects
    t = targets(B=4, M=30, C=10, size=640, seed=3)
    boxes, cls, obj = decode_boxes(raw[..., :4], grid, stride), raw[..., 5:], raw[..., 4]
    args = (boxes, cls, obj, t[..., 1:5], t[..., 0].long(), t.sum(-1) > 0, grid, stride)
    res, ref = simota_assign(*args, assigner=assigner), simota_assign_per_image(*args, assigner=assigner)
    assert torch.equal(res.fg, ref.fg) and torch.equal(res.gt_index, ref.gt_index); assert_close(res.iou, ref.iou)
    assert torch.equal(simota_assign(*args, assigner=assigner, max_pairs=1).fg, res.fg)  # one image per chunk
    head = official("nano", assigner, num_classes=10).head
    for b in range(3):
        fg, gt_inds, ious = _official_assign(head, assigner, b, boxes, cls, obj, t, grid, stride)
        assert torch.equal(res.fg[b], fg) and torch.equal(res.gt_index[b][fg], gt_inds)
        assert_close(res.iou[b][fg], ious)
    assert not res.fg[3].any() and res.fg[:3].any(1).all()
