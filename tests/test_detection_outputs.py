"Detection and promptable outputs: non-finite predictions dropped and counted, predictions.json = what was scored, eval-only artifacts, weights checks, nothing to score."
import contextlib, io, json, logging, math, re, shutil
from copy import deepcopy
from pathlib import Path
import numpy as np, pytest, torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from safetensors.torch import save_file

from workbench.config import ExpConfig, apply_overrides, get_experiment
from workbench.detection.postprocess import (postprocess, NMS_PRESETS, pack_detections, pack_infos,
                                             coco_eval, STAT_NAMES)
from workbench.learner import Learner
from workbench.metrics import SegMetric
from workbench.models import create_model
from workbench.tasks.detection import DetMetric, DetectionTask, detect_file
from workbench.tasks.promptable import ObjectMetric, PromptableSegTask
import workbench.experiments  # noqa: F401 (registers the experiments)

pytestmark = pytest.mark.usefixtures("one_thread")
INF, NAN = float("inf"), float("nan")


# -- 1. non-finite predictions ------------------------------------------------------------------
def _preds(B=2, N=120, C=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy, wh = torch.rand(B, N, 2, generator=g) * 200, torch.rand(B, N, 2, generator=g) * 60 + 5
    return torch.cat([xy + wh / 2, wh, torch.rand(B, N, 1, generator=g) * 0.5 + 0.5,
                      torch.rand(B, N, C, generator=g)], -1)

# (row, column, value): an overflowed w, -inf cx, NaN h, NaN / inf objectness, NaN / inf class prob
BAD = [(0, 2, INF), (1, 0, -INF), (2, 3, NAN), (3, 4, NAN), (4, 4, INF), (5, 5, NAN), (6, 6, INF)]

@pytest.mark.parametrize("preset", sorted(NMS_PRESETS))
def test_postprocess_drops_and_counts_non_finite(preset):
    preds = _preds()
    bad, clean = preds.clone(), preds.clone()
    for r, c, v in BAD: bad[0, r, c] = v
    bad[1, 10, 2] = INF
    clean[0, [r for r, _, _ in BAD], 4] = 0  # the same rows, scoring 0: below every threshold
    clean[1, 10, 4] = 0
    infos = [{"image_id": i, "orig_size": (230, 250), "scale": 1.0, "pad": (0.0, 0.0)} for i in (1, 2)]
    got, want = postprocess(bad, **NMS_PRESETS[preset], infos=infos), postprocess(clean, **NMS_PRESETS[preset], infos=infos)
    assert got.non_finite == [len(BAD), 1]
    assert want.non_finite == [0, 0]
    for g, w in zip(got, want):
        assert torch.equal(g, w) and torch.isfinite(g).all()
    # without the drop, the Inf-width box (the highest score) would be kept and span the image width
    assert not ((got[0][:, 0] == 0) & (got[0][:, 2] == 250)).any()

def test_postprocess_half_precision_overflow():
    "A regression that overflows float16 (w = 70000 -> inf) is dropped, counted."
    preds = _preds(B=1)
    preds[0, 0, 2], preds[0, 0, 4] = 70000, 1.0
    half = postprocess(preds.half(), **NMS_PRESETS["yolox_eval"])
    assert half.non_finite == [1] and torch.isfinite(half[0]).all()
    assert postprocess(preds, **NMS_PRESETS["yolox_eval"]).non_finite == [0]  # float32: finite

def test_detect_file_warns_naming_the_file(tmp_path, caplog):
    from PIL import Image
    path = tmp_path/"img.png"
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(path)
    class Overflow(torch.nn.Module):
        def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.zeros(1))
        def forward(self, x):
            p = _preds(B=len(x), N=10, C=3)
            p[..., :4] = torch.tensor([20., 20., 6., 6.])
            p[..., 0] += torch.arange(10.) * 2  # small boxes side by side
            p[:, :3, 2] = INF  # 3 overflowed widths, which would span the image once clipped
            return p
    with caplog.at_level(logging.WARNING):
        d = detect_file(Overflow(), path, img_size=64)
    assert len(d) and torch.isfinite(d).all() and (d[:, 2] - d[:, 0] < 10).all()
    assert [r.getMessage() for r in caplog.records] == [f"{path}: dropped 3 non-finite predictions (NaN/Inf)"]


# -- 2. DetMetric: each image once, the count once ----------------------------------------------
GT = {"images": [{"id": i, "height": 50, "width": 50} for i in (1, 2, 3)],
      "categories": [{"id": 7, "name": "box"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
                      {"id": 2, "image_id": 2, "category_id": 7, "bbox": [5, 5, 30, 30], "area": 900, "iscrowd": 0}]}

def _gathered(ids, dets, nf):
    infos = [{"image_id": i, "orig_size": (50, 50), "scale": 1.0, "pad": (0.0, 0.0)} for i in ids]
    return {"dets": pack_detections(dets), "infos": pack_infos(infos), "non_finite": torch.tensor(nf)}

def test_detmetric_each_image_once_and_logs_the_count_once(caplog):
    d1 = torch.tensor([[10., 10., 30., 30., 0.9, 0.], [0., 0., 5., 5., 0.3, 0.]])
    d2 = torch.tensor([[5., 5., 35., 35., 0.8, 0.]])
    m = DetMetric(GT, [7], ("box",), split="val2017")
    m.update(_gathered([1, 2], [d1, d2], [4, 1]))
    m.update(_gathered([2, 1], [d2 + 0.5, d1], [1, 4]))  # repeated samples (even shifted ones): ignored
    assert (len(m.results), m.repeated, m.non_finite, m.seen) == (3, 2, 5, {1, 2})
    with caplog.at_level(logging.WARNING):
        r = m.compute()
    assert [x.getMessage() for x in caplog.records] == ["dropped 5 non-finite predictions in val2017"]
    assert r["non_finite"] == 5 and r["AP50"] == pytest.approx(1.0)
    keys = [(p["image_id"], p["category_id"], tuple(p["bbox"]), p["score"]) for p in m.results]
    assert len(keys) == len(set(keys))
    # only the images seen are scored: image 3 (no box) was not evaluated and changes nothing
    assert r["AP"] == pytest.approx(coco_eval(GT, m.results, img_ids=[1, 2])["AP"])

def test_detmetric_without_count_is_zero_and_quiet(caplog):
    m = DetMetric(GT, [7], ("box",))
    out = _gathered([1], [torch.zeros(0, 6)], [0]); out.pop("non_finite")
    m.update(out)
    with caplog.at_level(logging.WARNING):
        assert m.compute()["non_finite"] == 0
    assert not caplog.records


# -- 3. through the Learner: eval only, predictions.json = what was scored -----------------------
@pytest.fixture(scope="module")
def det_data(tmp_path_factory):
    from workbench.data.synthetic import generate
    return generate(tmp_path_factory.mktemp("det_out")/"shapes", n_train=4, n_val=5, seed=3, formats="coco,yolo")

def det_cfg(root, *extra):
    return apply_overrides(get_experiment("yolox_nano_shapes"), [
        f"data.root={root}", "data.img_size=64", "data.batch_size=2", "data.eval_batch_size=2",
        "train.epochs=1", "train.val_loss=false", "train.cpu_threads=1", *extra])

class Confident(torch.nn.Module):
    "The wrapped model's decoded boxes with objectness 0.9 (so that random weights detect), rows 0 and 1 non-finite."
    def __init__(self, model): super().__init__(); self.model = model
    def forward(self, images):
        p = self.model(images).clone()
        p[..., 4] = 0.9
        p[:, 0, 2], p[:, 1, 0] = INF, NAN
        return p

def _pycocotools_stats(ann_file, preds):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        E = COCOeval(gt, gt.loadRes(preds), "bbox")
        E.evaluate(); E.accumulate(); E.summarize()
    return {k: (float(v) if v >= 0 else math.nan) for k, v in zip(STAT_NAMES, E.stats)}

def test_eval_only_predictions_json_is_what_was_scored(det_data, tmp_path, caplog):
    learn = Learner(det_cfg(det_data/"coco"), tmp_path/"run", train=False)
    model = Confident(learn.eval_model)
    with caplog.at_level(logging.WARNING):
        ev = learn.evaluate(model)
    n_val = len(learn.val_ds)
    assert ev["non_finite"] == 2 * n_val
    assert [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()] == \
        [f"dropped {2 * n_val} non-finite predictions in val"]
    learn.task.write_artifacts(learn.parts, ev, learn.run_dir)  # no fit ran
    preds = json.loads((tmp_path/"run/predictions.json").read_text())
    assert preds == ev.metric.results and len(preds) > 20
    assert all(all(math.isfinite(v) for v in p["bbox"]) for p in preds)
    keys = [(p["image_id"], p["category_id"], tuple(p["bbox"]), p["score"]) for p in preds]
    assert len(keys) == len(set(keys))
    got = _pycocotools_stats(learn.val_ds.dataset.ann_file, preds)
    assert got == pytest.approx({k: ev[k] for k in STAT_NAMES}, nan_ok=True)
    # the same batches gathered twice (repeated samples): the same results, the same numbers
    m, ctx = learn.parts.new_metric(), learn.ctx(training=False)
    with torch.no_grad():
        for batch in learn.val_dl:
            out, _ = learn.task.eval_step(learn.parts, model.eval(), batch, ctx, False)
            m.update(out); m.update(out)
    r = m.compute()
    assert m.results == ev.metric.results and r["non_finite"] == ev["non_finite"]
    assert {k: r[k] for k in STAT_NAMES} == pytest.approx({k: ev[k] for k in STAT_NAMES}, nan_ok=True)

def test_write_artifacts_without_evaluation(det_data, tmp_path):
    task = DetectionTask(det_cfg(det_data/"coco"))
    task.write_artifacts(None, None, tmp_path)
    task.write_artifacts(None, {"AP": 0.5}, tmp_path)  # metrics without a filled metric
    assert not (tmp_path/"predictions.json").exists()


# -- 4. weights ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fcn_weights(tmp_path_factory):
    p = tmp_path_factory.mktemp("w")/"fcn.safetensors"
    save_file(create_model("simple_fcn", num_classes=3).state_dict(), str(p))
    return p

def test_detection_weights_of_another_model_fail_naming_the_file(det_data, fcn_weights, capsys):
    cfg = det_cfg(det_data/"coco", f"model.weights={fcn_weights}")
    with pytest.raises(ValueError, match=f"{fcn_weights}: only .* tensors of YOLOX match .*weights_partial"):
        DetectionTask(cfg)._model(5)
    DetectionTask(apply_overrides(cfg, ["model.weights_partial=true"]))._model(5)
    assert f"loaded {fcn_weights}:" in capsys.readouterr().out

def test_detection_own_weights_load_fully(det_data, tmp_path, capsys):
    w = tmp_path/"yolox.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("yolox_nano", num_classes=5).state_dict().items()}, str(w))
    DetectionTask(det_cfg(det_data/"coco", f"model.weights={w}"))._model(5)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    loaded, total = re.fullmatch(f"loaded {re.escape(str(w))}: (\\d+)/(\\d+) tensors", line).groups()
    assert loaded == total and int(total) > 300  # every tensor of the model

def sam_cfg(root, *extra):
    cfg = ExpConfig(task="promptable_segmentation")
    return apply_overrides(cfg, ["data.name=coco", f"data.root={root}", "data.img_size=64",
                                 "data.batch_size=2", "data.eval_batch_size=2", "model.name=efficient_sam_vitt",
                                 "model.freeze=encoder", "prompts.flip=false", "train.cpu_threads=1", *extra])

def test_sam_weights_fail_naming_the_file(det_data, fcn_weights):
    cfg = sam_cfg(det_data/"coco", f"model.weights={fcn_weights}", "model.backbone_only=true")
    with pytest.raises(ValueError, match=f"{fcn_weights}: only 0 of .* PromptableSam image_encoder\\."):
        PromptableSegTask(cfg)._model()
    PromptableSegTask(apply_overrides(cfg, ["model.weights_partial=true"]))._model()
    with pytest.raises(ValueError, match=f"{fcn_weights}: weights do not match"):  # strict, all of it
        PromptableSegTask(sam_cfg(det_data/"coco", f"model.weights={fcn_weights}"))._model()


# -- 5. nothing to score ------------------------------------------------------------------------
def _coco_without_val_annotations(src, dst):
    (dst/"annotations").mkdir(parents=True)
    (dst/"images").symlink_to(src/"images")
    shutil.copy(src/"annotations/instances_train.json", dst/"annotations")
    j = json.loads((src/"annotations/instances_val.json").read_text())
    (dst/"annotations/instances_val.json").write_text(json.dumps({**j, "annotations": []}))
    return dst

def test_detection_val_without_boxes_fails(det_data, tmp_path):
    root = _coco_without_val_annotations(det_data/"coco", tmp_path/"coco")
    with pytest.raises(ValueError, match="val"):  # the split (or, from the dataset check, its file)
        DetectionTask(det_cfg(root)).build()
    with pytest.raises(ValueError, match="val2017: no ground-truth box"):
        m = DetMetric({**GT, "annotations": []}, [7], ("box",), split="val2017")
        m.update(_gathered([1], [torch.zeros(0, 6)], [0])); m.compute()
    with pytest.raises(ValueError, match="instances_val.json: no ground-truth box"):
        coco_eval(root/"annotations/instances_val.json", [])
    with pytest.raises(ValueError, match="val: no image was evaluated"):
        DetMetric(GT, [7], ("box",)).compute()

def test_yolo_val_without_boxes_fails(det_data, tmp_path):
    root = tmp_path/"yolo"
    shutil.copytree(det_data/"yolo", root)
    for f in (root/"labels"/"val").glob("*.txt"): f.write_text("")
    with pytest.raises(ValueError, match="val"):
        DetectionTask(det_cfg(root, "data.name=yolo")).build()

def test_promptable_nothing_to_score(det_data, tmp_path):
    root = _coco_without_val_annotations(det_data/"coco", tmp_path/"coco")
    with pytest.raises(ValueError, match="val"):
        PromptableSegTask(sam_cfg(root)).build()
    m = ObjectMetric("val2017")
    m.update({"dice": torch.full((2, 3), NAN), "iou": torch.full((2, 3), NAN)})  # padding only
    with pytest.raises(ValueError, match="val2017: no object was scored"):
        m.compute()

def test_promptable_eval_only_artifacts(det_data, tmp_path):
    learn = Learner(sam_cfg(det_data/"coco"), tmp_path/"run", train=False)
    ev = learn.evaluate()
    learn.task.write_artifacts(learn.parts, ev, learn.run_dir)
    assert json.loads((tmp_path/"run/preprocess.json").read_text()) == {"target_size": 64, "normalize": "minmax"}
    assert ev["count"] > 0 and 0 <= ev["dice"] <= 1

def test_segmetric_nothing_to_score():
    m = SegMetric(3, split="val2012")
    m.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.full((1, 4, 4), 255))
    with pytest.raises(ValueError, match="val2012: no pixel to score .*ignore_index=255"):
        m.compute()

def test_predict_file_non_finite_logits_fail(tmp_path):
    from PIL import Image
    from workbench.inference import predict_file
    path = tmp_path/"a.png"
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(path)
    net = create_model("simple_fcn", num_classes=2)
    with torch.no_grad():
        for p in net.parameters(): p.fill_(NAN)
    with pytest.raises(ValueError, match=f"{path}: the model gave .* non-finite logits"):
        predict_file(net, path)


def test_ground_truth_without_area_is_scored_like_with_w_times_h(caplog):
    "COCOeval reads `area` for its size ranges: a GT without it scores as with area = w*h."
    from workbench.detection.postprocess import evaluate_coco, coco_stats
    gt = dict(images=[dict(id=1, height=50, width=50)], categories=[dict(id=1, name="a")],
              annotations=[dict(id=1, image_id=1, category_id=1, bbox=[5, 5, 20, 10], iscrowd=0)])
    res = [dict(image_id=1, category_id=1, bbox=[5, 5, 20, 10], score=0.9)]
    with_area = {**gt, "annotations": [{**gt["annotations"][0], "area": 200.0}]}
    a = coco_stats(evaluate_coco(gt, res))
    assert "without 'area'" in caplog.text
    b = coco_stats(evaluate_coco(with_area, res))
    assert a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)
    assert a["AP"] == pytest.approx(1.0) and a["APs"] == pytest.approx(1.0)  # area 200: small
