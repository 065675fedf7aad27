"YOLOv3-SPP pieces against the seed code (verbatim copy in tests/reference/yolov3_seed): layout, outputs, loss, .weights."
import contextlib, io
from pathlib import Path
from types import SimpleNamespace
import numpy as np
import pytest, torch
from torch.testing import assert_close
from workbench.models.darknet import Darknet, cfg_path, load_darknet_weights, save_darknet_weights
from workbench.models.yolov3_loss import (YOLOv3Loss, build_targets, compute_loss, load_hyp, padded_to_yolo_targets,
                                          paired_iou, rescale_hyp)
from workbench.models.registry import create_model
from reference.yolov3_seed import models as seed_models, utils as seed_utils

LAYOUT = Path(__file__).parent/"reference"/"yolov3_seed"/"yolov3_spp_coco80.state_dict.txt"

def _seed_darknet(name):
    with contextlib.redirect_stdout(io.StringIO()): return seed_models.Darknet(str(cfg_path(name)))  # it prints a summary

def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g); m.bias.normal_(0, 0.1, generator=g)
                m.running_mean.normal_(0, 0.1, generator=g); m.running_var.uniform_(0.5, 1.5, generator=g)

@pytest.fixture(scope="module")
def spp_pair():
    "The seed's YOLOv3-SPP (random weights, random BN statistics) and ours loaded strictly from its state_dict."
    torch.manual_seed(0)
    seed = _seed_darknet("yolov3-spp"); _randomise_bn(seed)
    ours = create_model("yolov3_spp", num_classes=80)
    ours.load_state_dict(seed.state_dict(), strict=True)
    return seed.eval(), ours.eval()

def test_layout_matches_reference_line_by_line(spp_pair):
    _, ours = spp_pair
    header, *lines = LAYOUT.read_text().splitlines()
    assert "params=62998749" in header and sum(p.numel() for p in ours.parameters()) == 62_998_749
    mine = [f"{k}\t{tuple(v.shape)}" for k, v in ours.state_dict().items()]
    assert mine == lines, next(f"line {i + 2}: {a!r} != {b!r}" for i, (a, b) in enumerate(zip(mine + [""], lines + [""])) if a != b)

def test_both_directions_load_strictly(spp_pair):
    seed, ours = spp_pair
    seed.load_state_dict(ours.state_dict(), strict=True)

def test_eval_output_equals_seed(spp_pair):
    seed, ours = spp_pair
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(): ref, mine = seed(x)[0], ours(x)
    assert mine.shape == ref.shape == (1, 3 * (3 * 4 + 6 * 8 + 12 * 16), 85)
    assert_close(mine, ref, rtol=1e-5, atol=1e-4)

def test_train_output_equals_seed(spp_pair):
    seed, ours = spp_pair
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    try:
        seed.train(); ours.train()
        with torch.no_grad(): ref, mine = seed(x), ours(x)
    finally: seed.eval(); ours.eval()
    assert [tuple(m.shape) for m in mine] == [(2, 3, 2, 2, 85), (2, 3, 4, 4, 85), (2, 3, 8, 8, 85)]
    for a, b in zip(mine, ref): assert_close(a, b, rtol=1e-5, atol=1e-4)

def test_weights_files_identical_to_seed_and_round_trip(tmp_path):
    torch.manual_seed(3)
    seed = _seed_darknet("yolov3-tiny"); _randomise_bn(seed, 3)  # the seed builds tiny (its forward needs a pad it lacks)
    seed.version, seed.seen = np.array([0, 2, 5], dtype=np.int32), np.array([64000], dtype=np.int64)
    seed_models.save_weights(seed, str(tmp_path/"seed.weights"))
    ours = Darknet("yolov3-tiny"); ours.load_state_dict(seed.state_dict())
    ours.seen = 64000; save_darknet_weights(ours, tmp_path/"ours.weights")
    assert (tmp_path/"ours.weights").read_bytes() == (tmp_path/"seed.weights").read_bytes()
    fresh = Darknet("yolov3-tiny")
    assert load_darknet_weights(fresh, tmp_path/"seed.weights") == dict(version=(0, 2, 5), seen=64000, layers=13)
    for k, v in seed.state_dict().items():
        if not k.endswith("num_batches_tracked"): assert torch.equal(fresh.state_dict()[k], v), k
    seed2 = _seed_darknet("yolov3-tiny"); seed_models.load_darknet_weights(seed2, str(tmp_path/"ours.weights"))
    for k, v in seed2.state_dict().items():
        if not k.endswith("num_batches_tracked"): assert torch.equal(fresh.state_dict()[k], v), k
    (tmp_path/"cut.weights").write_bytes((tmp_path/"ours.weights").read_bytes()[:1000])
    with pytest.raises(ValueError, match="cut.weights: truncated"): load_darknet_weights(fresh, tmp_path/"cut.weights")

@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_paired_iou_matches_seed_bbox_iou(kind):
    g = torch.Generator().manual_seed(4)
    b1 = torch.cat((torch.rand(200, 2, generator=g) * 4, torch.rand(200, 2, generator=g) * 3 + 0.05), 1).requires_grad_()
    b2 = torch.cat((torch.rand(200, 2, generator=g) * 4, torch.rand(200, 2, generator=g) * 3 + 0.05), 1)
    flags = dict(GIoU=kind == "giou", DIoU=kind == "diou", CIoU=kind == "ciou")
    ref = seed_utils.bbox_iou(b1.t(), b2, x1y1x2y2=False, **flags)
    (g_ref,) = torch.autograd.grad(ref.sum(), b1)
    from torchvision.ops import box_convert
    mine = paired_iou(box_convert(b1, "cxcywh", "xyxy"), box_convert(b2, "cxcywh", "xyxy"), kind)
    (g_mine,) = torch.autograd.grad(mine.sum(), b1)
    assert_close(mine, ref, rtol=1e-5, atol=1e-6); assert_close(g_mine, g_ref, rtol=1e-4, atol=1e-5)

# ---- loss: same predictions, targets and hyp through the seed's compute_loss and ours ----
SPP_ANCHORS = [[(116, 90), (156, 198), (373, 326)], [(30, 61), (62, 45), (59, 119)], [(10, 13), (16, 30), (33, 23)]]

def _seed_model(anchors_px, strides, hyp, nc):
    "What the seed's loss reads from a model: yolo_layers, module_list[j].anchor_vec, hyp, gr, nc."
    mods = [SimpleNamespace(anchor_vec=torch.tensor(a, dtype=torch.float32) / s) for a, s in zip(anchors_px, strides)]
    return SimpleNamespace(yolo_layers=list(range(len(mods))), module_list=mods, hyp=hyp, gr=1.0, nc=nc)

def _targets(n, nb, nc, g):
    t = torch.cat((torch.randint(0, nb, (n, 1), generator=g).float(), torch.randint(0, nc, (n, 1), generator=g).float(),
                   torch.rand(n, 2, generator=g), torch.rand(n, 2, generator=g) * 0.6 + 0.02), 1)
    t[0, 2:4] = torch.tensor([1.0, 0.0]); t[1, 2:4] = torch.tensor([0.999, 1.0])  # centres on the edges: clamped cells
    return t

@pytest.mark.parametrize("nc,fl_gamma,n", [(80, 0.0, 30), (20, 1.5, 30), (1, 0.0, 12), (3, 0.0, 0)])
def test_compute_loss_equals_seed(nc, fl_gamma, n):
    g = torch.Generator().manual_seed(nc + n)
    hyp = {**load_hyp(nc=nc, img_size=128), "fl_gamma": fl_gamma}
    strides, grids = (32, 16, 8), [(4, 3), (8, 6), (16, 12)]  # a 128 x 96 input
    preds = [torch.randn(2, 3, gh, gw, 5 + nc, generator=g).requires_grad_() for gh, gw in grids]
    t = _targets(n, 2, nc, g) if n else torch.zeros(0, 6)
    ref = seed_utils.compute_loss(preds, t, _seed_model(SPP_ANCHORS, strides, hyp, nc))
    g_ref = torch.autograd.grad(sum(ref.values()).sum(), preds)
    mine = compute_loss(preds, t, [torch.tensor(a) / s for a, s in zip(SPP_ANCHORS, strides)], hyp)
    g_mine = torch.autograd.grad(sum(mine.values()), preds)
    for k, kr in zip(("box", "obj", "cls"), ("box_loss", "obj_loss", "class_loss")): assert_close(mine[k], ref[kr][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(g_mine, g_ref): assert_close(a, b, rtol=1e-4, atol=1e-7)

def test_build_targets_equals_seed():
    g = torch.Generator().manual_seed(5)
    hyp = load_hyp(nc=80, img_size=416); t = _targets(40, 3, 80, g)
    preds = [torch.zeros(3, 3, s, s, 85) for s in (13, 26, 52)]
    ref = seed_utils.build_targets(preds, t, _seed_model(SPP_ANCHORS, (32, 16, 8), hyp, 80))
    mine = build_targets(preds, t, [torch.tensor(a) / s for a, s in zip(SPP_ANCHORS, (32, 16, 8))], hyp["iou_t"])
    for i, lt in enumerate(mine):
        for a, b in zip((lt.b, lt.a, lt.gj, lt.gi), ref[2][i]): assert torch.equal(a, b)
        assert torch.equal(lt.tcls, ref[0][i]); assert_close(lt.tbox, ref[1][i]); assert_close(lt.anchors, ref[3][i])

def test_yolov3loss_on_padded_batch_equals_seed():
    torch.manual_seed(6)
    model = Darknet("yolov3-tiny", num_classes=3).train()
    hyp = load_hyp(nc=3, img_size=128)
    preds = model(torch.rand(2, 3, 128, 96))
    tp = torch.zeros(2, 5, 5)
    tp[0, :3] = torch.tensor([[0, 20, 30, 16, 24], [2, 90, 100, 40, 50], [1, 48, 64, 90, 120]]); tp[1, 0] = torch.tensor([1, 95, 127, 8, 8])
    mine = YOLOv3Loss(model, hyp)(preds, tp)
    t = padded_to_yolo_targets(tp, (128, 96))
    ref = seed_utils.compute_loss(preds, t, _seed_model([m.anchors.tolist() for m in model.yolo_modules], (32, 16), hyp, 3))
    for k, kr in zip(("box", "obj", "cls"), ("box_loss", "obj_loss", "class_loss")): assert_close(mine[k], ref[kr][0])
    assert_close(mine["loss"], sum(ref.values())[0])

def test_hyp_rescaled_exactly_once():
    hyp = load_hyp(nc=20, img_size=512)
    assert (round(hyp["cls"], 4), round(hyp["obj"], 4)) == (9.35, 102.88)
    assert rescale_hyp(rescale_hyp(hyp, 20, 512), 20, 512) == hyp
    with pytest.raises(ValueError, match="already rescaled"): rescale_hyp(hyp, 80, 512)
