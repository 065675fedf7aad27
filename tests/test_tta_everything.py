"""Test-time augmentation (`workbench.tta`) and EfficientSAM segment-everything (`workbench.everything`):
identities on toy models, hand-made boxes, the config switch, the generator's filters, RLE and NMS."""
import numpy as np, pytest, torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from workbench.config import ExpConfig, apply_overrides, check_config
from workbench.tta import (seg_tta_probs, seg_tta_logits, seg_tta_batch, det_tta_preds, det_tta,
                           unaugment_boxes, tta_passes, SEG_TTA_SCALES)
from workbench.everything import (segment_everything, point_grid, stability_score, mask_boxes,
                                  remove_small_regions, everything_coco, EVERYTHING_DEFAULTS, _dedup)

torch.set_num_threads(1)

def pointwise(seed=0): # 1×1 convolutions: flip-equivariant
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()

class Fcn(torch.nn.Module): # 3×3 convolutions: not flip-equivariant; {"out": logits}
    def __init__(self):
        super().__init__(); torch.manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 4, 3, padding=1))
    def forward(self, x): return {"out": self.net(x)}

@torch.no_grad()
def test_seg_flip_tta_of_equivariant_model_is_plain():
    m, x = pointwise(), torch.randn(2, 3, 17, 23)
    torch.testing.assert_close(seg_tta_probs(m, x, flip=True), m(x).softmax(1), atol=1e-6, rtol=0)
    torch.testing.assert_close(seg_tta_logits(m, x, flip=True), m(x).log_softmax(1), atol=1e-5, rtol=0)

@torch.no_grad()
def test_seg_scale_one_is_plain_and_flip_changes_a_non_equivariant_model():
    m, x = Fcn().eval(), torch.randn(1, 3, 20, 30)
    plain = m(x)["out"]
    torch.testing.assert_close(seg_tta_logits(m, x, scales=(1.0,), flip=False), plain.log_softmax(1),
                               atol=1e-5, rtol=0)
    flipped = seg_tta_probs(m, x, flip=True)
    want = (plain.softmax(1) + m(x.flip(-1))["out"].flip(-1).softmax(1)) / 2  # mmseg: mean softmax
    torch.testing.assert_close(flipped, want, atol=1e-6, rtol=0)
    # at an output size: each pass's logits resized there before the softmax (mmseg's order)
    up = seg_tta_probs(m, x, scales=(1.0,), flip=False, out_size=(40, 60))
    torch.testing.assert_close(up, F.interpolate(plain, (40, 60), mode="bilinear").softmax(1),
                               atol=1e-6, rtol=0)
    # one slide window over the whole image is whole inference, under TTA too
    torch.testing.assert_close(seg_tta_probs(m, x, (0.5, 1.0), mode="slide", crop=(64, 64), stride=32),
                               seg_tta_probs(m, x, (0.5, 1.0)), atol=1e-6, rtol=0)

def test_passes_and_bad_scales():
    assert len(tta_passes(SEG_TTA_SCALES, True)) == 12
    with pytest.raises(ValueError, match="numbers > 0"): tta_passes((1.0, 0.0))

@torch.no_grad()
def test_seg_tta_batch_crops_padding_and_averages_at_mask_size():
    m, x = pointwise(), torch.randn(2, 3, 24, 30)
    b = seg_tta_batch(m, x, [(24, 30), (12, 20)], [(24, 30), (36, 60)], scales=(1.0, 2.0))
    assert b.shape == (2, 4, 36, 60) and b[0, :, 24:].abs().sum() == 0
    torch.testing.assert_close(b[1], seg_tta_logits(m, x[1:, :, :12, :20], scales=(1.0, 2.0),
                                                    out_size=(36, 60))[0])

class CentroidDetector(torch.nn.Module):
    "One box per image at the intensity centroid above the 114 grey: [B, 1, 6], one class."
    def forward(self, x):
        m = (x.mean(1) - 114.0).clamp_min(0)
        H, W = m.shape[-2:]
        tot = m.sum((1, 2))
        cx = (m.sum(1) * (torch.arange(W) + 0.5)).sum(1) / tot
        cy = (m.sum(2) * (torch.arange(H) + 0.5)).sum(1) / tot
        side, one = torch.full_like(cx, 8.0) * W / 64, torch.ones_like(cx)
        return torch.stack([cx, cy, side, side, one, one], -1)[:, None]

def test_detection_boxes_unflipped_and_unscaled():
    img = torch.full((1, 3, 64, 64), 114.0); img[..., 20:28, 40:48] = 255.0  # x 40..48, y 20..28
    preds = det_tta_preds(CentroidDetector(), img, scales=(1.0, 0.5, 0.75), flip=True)
    assert preds.shape == (1, 6, 6)
    torch.testing.assert_close(preds[0, :, :2], torch.tensor([[44.0, 24]]).expand(6, 2),
                               atol=1e-3, rtol=0)  # every pass: the centre back where it was
    # sides: scale 1 and 0.5 fill the input (no padding), so the toy's side rescales exactly
    torch.testing.assert_close(preds[0, :4, 2:4], torch.full((4, 2), 8.0), atol=1e-3, rtol=0)
    dets = det_tta(CentroidDetector(), img, scales=(1.0, 0.5))
    assert len(dets[0]) == 1  # four passes, one box after the single NMS
    torch.testing.assert_close(dets[0][0, :5], torch.tensor([40.0, 20, 48, 28, 1]), atol=1e-3, rtol=0)
    # by hand: a box at cx 10 of a flipped 32-wide half-scale image of a 64-wide input
    p = torch.tensor([[[10.0, 6, 4, 2, 1, 1]]])
    torch.testing.assert_close(unaugment_boxes(p, (16, 32), (32, 64), True)[0, 0, :4],
                               torch.tensor([44.0, 12, 8, 4]))

def test_tta_config_validation():
    ok = lambda *o: check_config(apply_overrides(ExpConfig(), list(o)))
    assert ok("model.tta=true").model.tta and ok("model.tta=true", "model.tta_scales=[1, 1.5]")
    assert not ok("model.tta_flip=false").model.tta  # a preset's TTA options, turned off by a run
    for o, msg in [(["model.tta=true", "model.tta_scales=[-1]"], "numbers in (0, 4]"),
                   (["model.tta=true", "model.tta_flip=false", "model.tta_scales=[1.0]"],
                    "augments nothing")]:
        with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace("]", r"\]")): ok(*o)

@torch.no_grad()
def test_tasks_evaluate_with_tta():
    from workbench.learner import StepContext, Parts
    from workbench.tasks.segmentation import SegmentationTask
    from workbench.tasks.detection import DetectionTask
    from workbench.transforms import seg_eval_transforms, pad_collate
    from torchvision import tv_tensors
    ctx = StepContext(0, 1, training=False)
    img = tv_tensors.Image(torch.randint(0, 255, (3, 32, 48), dtype=torch.uint8))
    b = pad_collate([seg_eval_transforms(16)(img, tv_tensors.Mask(torch.randint(0, 3, (32, 48))))] * 2)
    parts = Parts(None, None, None, None, ("a", "b", "c", "d"), None)
    m = pointwise()
    conf = lambda *o: SegmentationTask(apply_overrides(ExpConfig(), list(o))).eval_step(
        parts, m, b, ctx, with_loss=False)[0]
    assert torch.equal(conf("model.tta=true", "model.tta_scales=[1]"), conf())  # equivariant model
    assert conf("model.tta=true").sum() == 2 * 32 * 48
    task = DetectionTask(apply_overrides(ExpConfig(), ["task=detection", "model.name=yolox_nano",
                                                       "model.tta=true", "model.tta_scales=[1, 0.5]"]))
    from workbench.models import create_model
    yolox = create_model("yolox_nano", num_classes=2).eval()
    images = torch.rand(1, 3, 64, 64) * 255
    raw, decoded = task.forward(yolox, (images, None, None), ctx)
    assert raw is not None and decoded.shape == (1, 2 * (64 + 16 + 4) + 2 * (16 + 4 + 1), 7)

# -- segment everything --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from workbench.models.efficient_sam import EfficientSam
    torch.manual_seed(0)
    return EfficientSam(embed_dim=32, num_heads=2, image_size=64, depth=1).eval()

IMG = (torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
OPEN = dict(pred_iou_thresh=-1e9, stability_thresh=-1.0, min_area=0, nms_thresh=1.0)

def test_grid_and_defaults(tiny):
    assert EVERYTHING_DEFAULTS == dict(grid=32, pred_iou_thresh=0.7, stability_thresh=0.9,
                                       stability_offset=1.0, min_area=100, nms_thresh=0.7)
    g = point_grid(40, 56, 5)
    assert g.shape == (25, 2) and g[0].tolist() == [0.5, 0.5] and g[5].tolist() == pytest.approx([0.5 + 56 / 5, 0.5])
    r = segment_everything(tiny, IMG, grid=5, points_per_batch=7, **OPEN)  # batches of 7: 4 batches
    assert len(r) == 25 and r.masks.shape == (25, 40, 56) and r.masks.dtype == torch.bool
    assert sorted(r.points.tolist()) == sorted(g.tolist())

def test_thresholds_honoured(tiny):
    r = segment_everything(tiny, IMG, grid=4, **OPEN)
    t_iou, t_st = float(r.scores.median()), float(r.stability.median())
    a = segment_everything(tiny, IMG, grid=4, **{**OPEN, "pred_iou_thresh": t_iou})
    assert 0 < len(a) < len(r) and (a.scores > t_iou).all()
    s = segment_everything(tiny, IMG, grid=4, **{**OPEN, "stability_thresh": t_st})
    assert len(s) < len(r) and (s.stability > t_st).all()
    big = segment_everything(tiny, IMG, grid=4, **{**OPEN, "min_area": 30})
    for m in big.masks.numpy(): assert not remove_small_regions(m, 30, "islands")[1]
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['iou'\]"): segment_everything(tiny, IMG, iou=1)

def test_rle_decodes_to_masks(tiny):
    r = segment_everything(tiny, IMG, grid=4, **{**OPEN, "nms_thresh": 0.7})
    dec = mask_utils.decode(r.rles())
    assert torch.equal(torch.from_numpy(dec).permute(2, 0, 1).bool(), r.masks)
    recs = everything_coco(r, image_id=3)
    assert [x["area"] for x in recs] == r.masks.flatten(1).sum(1).tolist()
    assert recs[0]["bbox"] == mask_utils.toBbox(recs[0]["segmentation"]).tolist()

def test_nms_removes_duplicates_and_prefers_unchanged():
    a = torch.zeros(3, 30, 30, dtype=torch.bool)
    a[:, 5:20, 5:20] = True
    a[0, 27, 27] = True  # the same object plus a 1-px island: changed by the cleanup
    b = torch.zeros(30, 30, dtype=torch.bool); b[22:29, 0:8] = True
    masks = torch.cat([a, b[None]])  # [4, H, W]: 3 copies of one object, one other
    scores = torch.tensor([0.99, 0.8, 0.9, 0.5])
    out = _dedup(masks, scores, torch.ones(4), torch.zeros(4, 2), min_area=10, nms_thresh=0.7)
    assert len(out) == 2
    assert out.scores.tolist() == pytest.approx([0.9, 0.5])  # unchanged first, then the best score
    assert out.masks[0].sum() == 15 * 15 and mask_boxes(out.masks).tolist()[0] == [5, 5, 19, 19]
