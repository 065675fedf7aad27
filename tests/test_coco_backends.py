"""The two COCO evaluation backends (faster-coco-eval, pycocotools) give the same numbers.

Tolerance: 1e-12, absolute. Both libraries compute every stat, precision and recall in float64 with
the same formulas, but faster-coco-eval accumulates in C++, where a quotient or a sum taken in
another order may round its last bit differently (on the cocoapi demo: 2.2e-16 in one precision
entry, 1.1e-16 in AP50). 1e-12 is four orders of magnitude above such rounding and far below any
real disagreement: one detection matched differently moves a stat by at least ~1e-6 here (and
1e-3 is what pycocotools prints). Everything discrete (image and category ids, n_gt, summary lines,
NaN/-1 places) must be equal.
"""
import copy, gc, json, sys
from pathlib import Path
import numpy as np, pytest
from pycocotools.coco import COCO

from workbench.detection.postprocess import (COCO_BACKENDS, STAT_NAMES, as_coco, coco_backend,
                                             coco_eval, evaluate_coco, per_class_ap, pr_curve)

pytest.importorskip("faster_coco_eval")
ATOL = 1e-12
DEMO = Path(__file__).parent/"reference"/"coco_demo"
# pycocoEvalDemo.ipynb (cocodataset/cocoapi, PythonAPI), bbox, as printed
DEMO_STATS = "0.505 0.697 0.573 0.586 0.519 0.501 0.387 0.594 0.595 0.640 0.566 0.564".split()


def _box(rng, size):
    w, h = size
    return [float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h)), float(w), float(h)]

def synthetic(seed=0):
    """Ground truth and results with crowd boxes, images without ground truth / without detections,
    boxes in every area range and on its edges (32², 96²), a category without ground truth, 130
    detections in one image and ties in score."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 3, 7, 9)]  # 9: no ground truth
    images = [{"id": i, "height": 480, "width": 640} for i in range(1, 15)]
    sizes = [(12, 20), (32, 32), (31, 33), (50, 60), (96, 96), (97, 96), (200, 150), (400, 300)]
    anns = []
    def add(img, cat, bbox, crowd=0):
        anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat, "bbox": bbox,
                     "area": bbox[2] * bbox[3], "iscrowd": crowd})
    for img in range(1, 12):  # 12: detections only; 13, 14: nothing at all
        for _ in range(int(rng.integers(2, 9))):
            add(img, int(rng.choice([1, 3, 7])), _box(rng, sizes[rng.integers(len(sizes))]))
    add(2, 1, [0.0, 0.0, 300.0, 200.0], crowd=1)
    add(5, 3, [100.0, 100.0, 200.0, 200.0], crowd=1)
    res = []
    for a in anns:
        if a["image_id"] == 4: continue  # an image with ground truth and no detection
        for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 jittered copies, sometimes mislabelled
            x, y, w, h = a["bbox"]; j = rng.normal(0, 0.08, 4)
            cat = a["category_id"] if rng.random() < 0.85 else int(rng.choice([1, 3, 7, 9]))
            res.append({"image_id": a["image_id"], "category_id": cat,
                        "bbox": [x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3])],
                        "score": float(np.round(rng.uniform(0.05, 1), 1))})  # ties: 10 values
    for img in (2, 12):  # inside the crowd box / on an image without ground truth
        res += [{"image_id": img, "category_id": 1, "bbox": _box(rng, (40, 30)), "score": 0.5}
                for _ in range(5)]
    x, y, w, h = next(a["bbox"] for a in anns if a["image_id"] == 1 and a["category_id"] == 1)
    res += [{"image_id": 1, "category_id": 1, "score": float(s),  # 130 in one image and class
             "bbox": [x + dx, y + dy, w, h]}
            for s, dx, dy in zip(np.repeat([0.9, 0.6, 0.3], [40, 50, 40]),
                                 rng.normal(0, 0.1 * w, 130), rng.normal(0, 0.1 * h, 130))]
    return {"images": images, "annotations": anns, "categories": cats}, res

def both(gt, res, **kw): # (faster-coco-eval's COCOeval, pycocotools')
    return tuple(evaluate_coco(copy.deepcopy(gt), res, backend=b, **kw)
                 for b in ("faster_coco_eval", "pycocotools"))

def assert_same(F, P):
    "Every reader of an evaluation gives the same with either backend."
    assert (F.backend, P.backend) == ("faster_coco_eval", "pycocotools")
    np.testing.assert_allclose(F.stats, P.stats, rtol=0, atol=ATOL)
    assert F.summary_text == P.summary_text and len(P.summary_text.splitlines()) == 12
    assert list(F.params.imgIds) == list(P.params.imgIds)
    assert list(F.params.catIds) == list(P.params.catIds)
    np.testing.assert_array_equal(F.params.iouThrs, P.params.iouThrs)
    np.testing.assert_array_equal(F.params.recThrs, P.params.recThrs)
    for k in ("precision", "recall", "scores"):
        assert F.eval[k].shape == P.eval[k].shape
        np.testing.assert_array_equal(F.eval[k] == -1, P.eval[k] == -1)
        np.testing.assert_allclose(F.eval[k], P.eval[k], rtol=0, atol=ATOL)
    pf, pp = per_class_ap(F), per_class_ap(P)
    assert list(pf) == list(pp)
    for n in pp:
        assert (pf[n]["category_id"], pf[n]["n_gt"]) == (pp[n]["category_id"], pp[n]["n_gt"])
        np.testing.assert_allclose([pf[n]["AP"], pf[n]["AP50"]], [pp[n]["AP"], pp[n]["AP50"]],
                                   rtol=0, atol=ATOL)
    for iou in (0.5, 0.75):
        for a, b in zip(pr_curve(F, iou), pr_curve(P, iou)):
            np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)  # NaNs in the same places


def test_synthetic_covers_the_cases():
    gt, res = synthetic()
    areas = [a["area"] for a in gt["annotations"] if not a["iscrowd"]]
    assert min(areas) < 32**2 < max(areas) and 96**2 in areas and 32**2 in areas
    assert any(a > 96**2 for a in areas) and any(32**2 < a < 96**2 for a in areas)
    per_img = np.bincount([r["image_id"] for r in res])
    assert per_img.max() > 100 and per_img[4] == 0 and per_img[12] > 0  # >100 / none / no GT
    assert len({r["score"] for r in res}) < len(res) / 10  # ties
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 2

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backends_agree_on_synthetic(seed):
    gt, res = synthetic(seed)
    F, P = both(gt, res)
    assert_same(F, P)
    s = F.stats
    assert 0 < s[0] < s[1] < 1 and all(v > 0 for v in s)  # a real evaluation, every range scored
    assert np.isnan(per_class_ap(P)["c9"]["AP"])  # no ground truth: undefined, with both

def test_backends_agree_on_image_subsets_and_empty_results():
    gt, res = synthetic(3)
    half = [2, 4, 6, 8, 12, 13]
    assert_same(*both(gt, [r for r in res if r["image_id"] in half], img_ids=half))
    assert_same(*both(gt, []))
    assert_same(*both(gt, res[:1]))

def test_maxdets_and_ties_are_cut_alike():
    "130 detections of one class in one image with three score values: the same 100 kept."
    gt, res = synthetic(4)
    one = [r for r in res if r["image_id"] == 1 and r["category_id"] == 1]
    assert len(one) > 100
    F, P = both(gt, one, img_ids=[1])
    assert_same(F, P)

def test_demo_pair_gives_the_published_numbers():
    gt, res = DEMO/"instances_val2014_100.json", DEMO/"instances_val2014_fakebbox100_results.json"
    results = json.loads(res.read_text())
    for b in COCO_BACKENDS:
        m = coco_eval(gt, results, backend=b)
        assert [f"{m[k]:.3f}" for k in STAT_NAMES] == DEMO_STATS, b
    assert_same(*both(json.loads(gt.read_text()), results))

def test_auto_prefers_faster_coco_eval_and_falls_back(monkeypatch):
    gt, res = synthetic()
    assert coco_backend()[0] == "faster_coco_eval"
    assert evaluate_coco(copy.deepcopy(gt), res).backend == "faster_coco_eval"
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # `import faster_coco_eval` fails
    assert coco_backend()[0] == "pycocotools"
    assert evaluate_coco(copy.deepcopy(gt), res).backend == "pycocotools"
    with pytest.raises(ImportError):
        coco_backend("faster_coco_eval")

def test_unknown_backend_lists_the_choices():
    gt, res = synthetic()
    for f in (lambda: coco_backend("detectron2"), lambda: coco_eval(gt, res, backend="mmdet")):
        with pytest.raises(ValueError, match=r"expected 'auto' or one of \['faster_coco_eval', "
                                             r"'pycocotools'\]"):
            f()

def test_either_librarys_coco_is_accepted_and_results_are_left_alone():
    gt, res = synthetic(5)
    before = copy.deepcopy(res)
    py_gt = as_coco(copy.deepcopy(gt), "pycocotools")
    assert isinstance(py_gt, COCO) and as_coco(py_gt, "pycocotools") is py_gt
    F = evaluate_coco(py_gt, res, backend="faster_coco_eval")  # pycocotools' COCO, other backend
    P = evaluate_coco(as_coco(copy.deepcopy(gt), "faster_coco_eval"), res, backend="pycocotools")
    assert_same(F, P)
    assert res == before  # no keys added to the caller's dicts (loadRes would add id, area...)

def test_the_garbage_collector_is_left_as_it_was():
    "The evaluation pauses the cyclic collector; it comes back on, also after an error."
    gt, res = synthetic()
    with pytest.raises(ValueError, match="contiguous labels"):
        evaluate_coco(copy.deepcopy(gt), [{**res[0], "category_id": 99}])
    assert gc.isenabled()
    gc.disable()
    try:
        evaluate_coco(copy.deepcopy(gt), res)
        assert not gc.isenabled()
    finally:
        gc.enable()
