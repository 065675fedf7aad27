"""Every `loss.*` field takes effect for each model family that accepts it and fails clearly for the others.

Tiny models and inputs, CPU, one thread; the losses are built the way the tasks build them (`create_loss`).
"""
import dataclasses
import pytest, torch
import torch.nn.functional as F
from workbench.config import LossConfig
from workbench.losses import (DiceLoss, OHEMPixelSampler, SamLoss, SegLoss, create_loss, get_loss_class, has_aux,
                              list_losses, pixel_ce, sam_loss)
from workbench.models import create_model, list_models, model_meta
from workbench.models.yolov3_loss import CFG_DIR, YOLOv3Loss, load_hyp
from workbench.models.yolox_loss import YOLOXLoss, yolox_loss

pytestmark = pytest.mark.usefixtures("one_thread")
TASK_DEFAULT = {"segmentation": "seg_ce", "detection": "yolox", "promptable_segmentation": "sam"}
SEG_AUX = {"deeplabv3_mobilenet_v3_large": 0.5, "fcn_resnet50": 0.5, "encdec_tiny": 0.4}  # model -> default aux weight

def loss_for(model_name, model, **fields):
    "The loss a task builds for registered model `name` with these `loss.*` fields."
    task = model_meta(model_name)["task"]
    return create_loss(LossConfig(**fields), model, model_name, default=TASK_DEFAULT[task], num_classes=3, ignore_index=255,
                       img_size=64)

@pytest.fixture(scope="module")
def seg_batch():
    "Segmentation targets [2, 32, 32] with ignored pixels, and confident random logits (so that OHEM keeps a subset)."
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (2, 32, 32), generator=g)
    y[:, :4] = 255
    logits = {k: 4 * torch.randn(2, 3, 32, 32, generator=g) for k in ("out", "aux")}
    return logits, y

@pytest.fixture(scope="module")
def seg_models():
    torch.manual_seed(0)
    return {n: create_model(n, num_classes=3) for n in SEG_AUX}

def model_outputs(model, y):
    "The model's own training-mode outputs on a random batch (so the loss sees what the model returns)."
    torch.manual_seed(1)
    return model.train()(torch.randn(2, 3, *y.shape[-2:]))

def ce(logits, y, **kw): return F.cross_entropy(logits, y, ignore_index=255, **kw)

# ---------------------------------------------------------------------------------------------------------------
# the registry and the field check

def test_every_field_is_read_by_some_loss_and_every_model_resolves_a_loss():
    fields = {f.name for f in dataclasses.fields(LossConfig)} - {"name"}
    read = set().union(*(get_loss_class(n).fields for n in list_losses()))
    assert read == fields, f"fields no loss reads: {fields - read}; unknown fields: {read - fields}"
    for name in list_models():
        meta = model_meta(name)
        assert (meta.get("loss") or TASK_DEFAULT[meta["task"]]) in list_losses(), name
    assert {model_meta(n)["loss"] for n in list_models("yolox*")} == {"yolox"}
    assert {model_meta(n)["loss"] for n in list_models("yolov3*")} == {"yolov3"}

def test_loss_name_and_unknown_name():
    m = create_model("simple_fcn", num_classes=3)
    assert isinstance(loss_for("simple_fcn", m), SegLoss)
    with pytest.raises(ValueError, match=r"unknown loss 'seg_cee'; did you mean \['seg_ce'\]"):
        loss_for("simple_fcn", m, name="seg_cee")
    with pytest.raises(ValueError, match="loss.assigner='simota' is set, but loss 'seg_ce' .* does not read it"):
        loss_for("simple_fcn", m, name="seg_ce", assigner="simota")

# ---------------------------------------------------------------------------------------------------------------
# segmentation: aux_weight, class_weights, dice_weight, ohem_thresh / ohem_min_kept

@pytest.mark.parametrize("name", list(SEG_AUX))
def test_aux_weight_default_and_explicit(name, seg_models, seg_batch):
    m, (_, y) = seg_models[name], seg_batch
    assert has_aux(m)
    out = model_outputs(m, y)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 3, 32, 32)
    default = loss_for(name, m)(out, y)
    torch.testing.assert_close(default["aux_ce"], SEG_AUX[name] * ce(out["aux"], y))
    torch.testing.assert_close(default["loss"], ce(out["out"], y) + SEG_AUX[name] * ce(out["aux"], y))
    L = loss_for(name, m, aux_weight=1.5)(out, y)
    torch.testing.assert_close(L["aux_ce"], 1.5 * ce(out["aux"], y))
    torch.testing.assert_close(L["ce"], default["ce"])

@pytest.mark.parametrize("name,kw", [("simple_fcn", {}), ("deeplabv3_mobilenet_v3_large", {"aux": False}),
                                     ("encdec_tiny", {"aux": False})])
def test_aux_weight_fails_without_aux_head(name, kw):
    m = create_model(name, num_classes=3, **kw)
    assert not has_aux(m)
    with pytest.raises(ValueError, match=f"loss.aux_weight=0.4 is set, but model {name} has no auxiliary head.*"
                                         r"model.kwargs.aux=true"):
        loss_for(name, m, aux_weight=0.4)
    assert "aux_ce" not in loss_for(name, m)({"out": torch.randn(1, 3, 8, 8)}, torch.zeros(1, 8, 8, dtype=torch.long))

@pytest.mark.parametrize("name", list(SEG_AUX))
def test_class_weights(name, seg_models, seg_batch):
    m, (_, y) = seg_models[name], seg_batch
    out, cw = model_outputs(m, y), [0.5, 1.0, 3.0]
    L = loss_for(name, m, class_weights=cw)(out, y)
    w = torch.tensor(cw)
    torch.testing.assert_close(L["ce"], ce(out["out"], y, weight=w))
    torch.testing.assert_close(L["aux_ce"], SEG_AUX[name] * ce(out["aux"], y, weight=w))
    assert not torch.isclose(L["ce"], ce(out["out"], y))
    with pytest.raises(ValueError, match=r"loss.class_weights has 2 values, but num_classes=3"):
        loss_for(name, m, class_weights=[1.0, 2.0])

@pytest.mark.parametrize("name", list(SEG_AUX))
def test_dice_weight(name, seg_models, seg_batch):
    m, (_, y) = seg_models[name], seg_batch
    out = model_outputs(m, y)
    L = loss_for(name, m, dice_weight=2.0)(out, y)
    assert list(L) == ["loss", "ce", "dice", "aux_ce", "aux_dice"]
    torch.testing.assert_close(L["dice"], 2.0 * DiceLoss()(out["out"], y))
    torch.testing.assert_close(L["aux_dice"], SEG_AUX[name] * 2.0 * DiceLoss()(out["aux"], y))
    torch.testing.assert_close(L["loss"], sum(v for k, v in L.items() if k != "loss"))
    assert "dice" not in loss_for(name, m)(out, y)

@pytest.mark.parametrize("name", list(SEG_AUX))
@pytest.mark.parametrize("thresh,min_kept", [(0.7, 10), (0.0, 50)])
def test_ohem_on_the_main_head(name, thresh, min_kept, seg_models, seg_batch):
    m, (logits, y) = seg_models[name], seg_batch
    loss = loss_for(name, m, ohem_thresh=thresh, ohem_min_kept=min_kept)
    assert loss.sampler.thresh == (thresh or None) and loss.sampler.min_kept == min_kept
    mask = OHEMPixelSampler(thresh or None, min_kept)(logits["out"], y)
    assert 0 < mask.sum() < (y != 255).sum()
    L = loss(logits, y)
    torch.testing.assert_close(L["ce"], pixel_ce(logits["out"], y, weight=mask))
    torch.testing.assert_close(L["aux_ce"], SEG_AUX[name] * ce(logits["aux"], y))  # the aux head: every pixel
    assert not torch.isclose(L["ce"], ce(logits["out"], y))
    assert loss_for(name, m).sampler is None

@pytest.mark.parametrize("field,value", [("class_weights", [1, 2, 3]), ("dice_weight", 1.0), ("ohem_thresh", 0.7),
                                         ("ohem_min_kept", 10), ("aux_weight", 0.4)])
def test_segmentation_fields_fail_for_detection_and_sam(field, value):
    for name in ("yolox_nano", "yolov3_tiny", "efficient_sam_vitt"):
        with pytest.raises(ValueError, match=f"loss.{field}=.* is set, but loss '.*' \\(model {name}\\) does not read it"):
            loss_for(name, None, **{field: value})

def test_segmentation_all_ignored_and_autocast(seg_batch):
    logits, y = seg_batch
    loss = SegLoss(0.4, [1.0, 2.0, 3.0], dice_weight=1.0, ohem_thresh=0.7, ohem_min_kept=10)
    lg = {k: v.clone().requires_grad_() for k, v in logits.items()}
    L = loss(lg, torch.full_like(y, 255))
    assert all(v == 0 for v in L.values())
    L["loss"].backward()
    assert all(v.grad.isfinite().all() for v in lg.values())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        L = loss({k: v.bfloat16() for k, v in logits.items()}, y)
    assert all(v.dtype == torch.float32 for v in L.values())

# ---------------------------------------------------------------------------------------------------------------
# detection: iou_type, assigner (YOLOX), hyp, iou_type (YOLOv3)

def det_targets():
    t = torch.zeros(2, 6, 5)
    t[0, :2] = torch.tensor([[1, 20., 24, 16, 20], [2, 44, 40, 24, 18]])
    t[1, 0] = torch.tensor([0, 32, 32, 40, 30])
    return t

@pytest.fixture(scope="module")
def yolox_out():
    torch.manual_seed(0)
    m = create_model("yolox_nano", num_classes=3).train()
    with torch.no_grad(): out = m(torch.rand(2, 3, 64, 64) * 255)
    return m, out

@pytest.mark.parametrize("assigner,iou_type", [("simota_v0", ""), ("", "giou"), ("simota_v0", "giou")])
def test_yolox_assigner_and_iou_type(assigner, iou_type, yolox_out):
    m, out = yolox_out
    loss = loss_for("yolox_nano", m, assigner=assigner, iou_type=iou_type)
    assert isinstance(loss, YOLOXLoss) and (loss.assigner, loss.iou_type) == (assigner or "simota", iou_type or "iou")
    L, t = loss(out, det_targets()), det_targets()
    ref = yolox_loss(out["raw"], t, out["grid"], out["stride"], assigner=assigner or "simota", iou_type=iou_type or "iou")
    for k, v in YOLOXLoss.names.items(): torch.testing.assert_close(L[v], ref[k])
    default = loss_for("yolox_nano", m)(out, t)
    assert not torch.isclose(L["loss"], default["loss"])
    torch.testing.assert_close(L["loss"], L["iou"] + L["obj"] + L["cls"] + L["l1"])

def test_yolox_use_l1_bad_values_and_hyp_fails(yolox_out, tmp_path):
    m, out = yolox_out
    loss = loss_for("yolox_nano", m)
    assert loss(out, det_targets())["l1"] == 0
    loss.use_l1 = True
    assert loss(out, det_targets())["l1"] > 0
    with pytest.raises(ValueError, match=r"loss.assigner='ota': expected one of \['simota', 'simota_v0'\]"):
        loss_for("yolox_nano", m, assigner="ota")
    with pytest.raises(ValueError, match=r"loss.iou_type='ciou': expected one of \['iou', 'giou'\]"):
        loss_for("yolox_nano", m, iou_type="ciou")
    with pytest.raises(ValueError, match=r"loss.hyp='h.yaml' is set, but loss 'yolox' \(model yolox_nano\) does not read"
                                         r" it; it reads \['assigner', 'iou_type'\]"):
        loss_for("yolox_nano", m, hyp="h.yaml")

@pytest.fixture(scope="module")
def yolov3_out():
    torch.manual_seed(0)
    m = create_model("yolov3_tiny", num_classes=3).train()
    with torch.no_grad(): out = m(torch.rand(2, 3, 64, 64))
    return m, out

def test_yolov3_iou_type(yolov3_out):
    m, out = yolov3_out
    default, ciou = loss_for("yolov3_tiny", m), loss_for("yolov3_tiny", m, iou_type="ciou")
    assert isinstance(default, YOLOv3Loss) and default.kw["iou_kind"] == "giou" and ciou.kw["iou_kind"] == "ciou"
    a, b = default(out, det_targets()), ciou(out, det_targets())
    assert not torch.isclose(a["box"], b["box"]) and torch.isclose(a["cls"], b["cls"])
    torch.testing.assert_close(b["loss"], b["box"] + b["obj"] + b["cls"])
    with pytest.raises(ValueError, match=r"loss.iou_type='eiou': expected one of \['iou', 'giou', 'diou', 'ciou'\]"):
        loss_for("yolov3_tiny", m, iou_type="eiou")

def test_yolov3_hyp(yolov3_out, tmp_path):
    import yaml
    m, out = yolov3_out
    default = loss_for("yolov3_tiny", m)
    assert default.hyp == load_hyp(None, 3, 64)
    hyp = {**yaml.safe_load((CFG_DIR/"hyp.yaml").read_text()), "obj": 1.0, "iou_t": 0.1}
    (tmp_path/"hyp.yaml").write_text(yaml.safe_dump(hyp))
    custom = loss_for("yolov3_tiny", m, hyp=str(tmp_path/"hyp.yaml"))
    assert custom.hyp["obj"] == 1.0 * 64 / 320 and custom.hyp["iou_t"] == 0.1
    assert not torch.isclose(custom(out, det_targets())["obj"], default(out, det_targets())["obj"])
    with pytest.raises(FileNotFoundError, match="hyp file not found"):
        loss_for("yolov3_tiny", m, hyp=str(tmp_path/"none.yaml"))

@pytest.mark.parametrize("field,value", [("assigner", "simota"), ("aux_weight", 0.4), ("weights", {"dice": 2})])
def test_fields_yolov3_does_not_read(field, value, yolov3_out):
    with pytest.raises(ValueError, match=f"loss.{field}=.* is set, but loss 'yolov3' \\(model yolov3_tiny\\) does not read"
                                         r" it; it reads \['hyp', 'iou_type'\]"):
        loss_for("yolov3_tiny", yolov3_out[0], **{field: value})

def test_detection_losses_under_autocast(yolox_out, yolov3_out):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = loss_for("yolox_nano", yolox_out[0])({k: v.bfloat16() if v.is_floating_point() else v
                                                  for k, v in yolox_out[1].items()}, det_targets())
        b = loss_for("yolov3_tiny", yolov3_out[0])([p.bfloat16() for p in yolov3_out[1]], det_targets())
    assert all(v.dtype == torch.float32 for v in [*a.values(), *b.values()])

# ---------------------------------------------------------------------------------------------------------------
# promptable segmentation: weights, multimask

@pytest.fixture(scope="module")
def sam_out():
    torch.manual_seed(0)
    m = create_model("efficient_sam_vitt", image_size=32).train()
    pts, labels = torch.tensor([[[[4., 4], [20, 24]], [[2., 8], [30, 30]]]]), torch.tensor([[[2, 3], [2, 3]]])
    with torch.no_grad(): out = m(torch.rand(1, 3, 32, 32), pts, labels)
    masks = torch.zeros(1, 2, 32, 32)
    masks[0, 0, 4:24, 4:20] = 1
    masks[0, 1, 8:30, 2:30] = 1
    return m, out, (masks, torch.tensor([[True, True]]))

def test_sam_weights(sam_out):
    m, out, targets = sam_out
    assert out[0].shape == (1, 2, 3, 32, 32) and out[1].shape == (1, 2, 3)
    base = loss_for("efficient_sam_vitt", m)
    assert isinstance(base, SamLoss)
    a = base(out, targets)
    b = loss_for("efficient_sam_vitt", m, weights={"dice": 2.0, "iou": 0.0})(out, targets)
    torch.testing.assert_close(b["dice"], 2 * a["dice"])
    torch.testing.assert_close(b["bce"], a["bce"])
    assert b["iou"] == 0 and a["iou"] > 0
    for L in (a, b): torch.testing.assert_close(L["loss"], L["dice"] + L["bce"] + L["iou"])  # weighted terms
    torch.testing.assert_close(a["loss"], sam_loss(*out, *targets)["loss"])
    with pytest.raises(ValueError, match=r"loss.weights has unknown terms \['focal'\]"):
        loss_for("efficient_sam_vitt", m, weights={"focal": 1.0})

def test_sam_multimask(sam_out):
    m, out, targets = sam_out
    a = loss_for("efficient_sam_vitt", m)(out, targets)
    best = loss_for("efficient_sam_vitt", m, multimask="best")(out, targets)
    assert best["dice"] + best["bce"] < a["dice"] + a["bce"]
    torch.testing.assert_close(best["iou"], a["iou"])  # the IoU head always learns all 3
    with pytest.raises(ValueError, match=r"loss.multimask='first': expected one of \['all', 'best'\]"):
        loss_for("efficient_sam_vitt", m, multimask="first")

@pytest.mark.parametrize("field,value", [("weights", {"dice": 2.0}), ("multimask", "best")])
@pytest.mark.parametrize("name", ["simple_fcn", "encdec_tiny", "yolox_nano"])
def test_sam_fields_fail_for_other_models(field, value, name):
    with pytest.raises(ValueError, match=f"loss.{field}=.* is set, but loss '.*' \\(model {name}\\) does not read it"):
        loss_for(name, None, **{field: value})

def test_sam_fields_fail_for_segmentation_model():
    m = create_model("simple_fcn", num_classes=3)
    with pytest.raises(ValueError, match=r"loss.weights=\{'dice': 2.0\} is set, but loss 'seg_ce' \(model simple_fcn\) "
                                         r"does not read it; it reads \['aux_weight', 'class_weights', 'dice_weight', "
                                         r"'ohem_min_kept', 'ohem_thresh'\]"):
        loss_for("simple_fcn", m, weights={"dice": 2.0})
