"""TIDE error types (`workbench.tide`): hand-made cases with known errors, COCOeval's AP50, and
`tidecv` itself where importable (skipped otherwise; e.g. `pip install --target /tmp/tidecv_pkgs
--no-deps tidecv seaborn appdirs` and `PYTHONPATH=/tmp/tidecv_pkgs pytest tests/test_tide.py`)."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np, pytest, torch
from workbench.tide import ERROR_TYPES, tide_errors

torch.set_num_threads(1)
G, F = [10., 10, 50, 50], [100., 100, 140, 140]  # xyxy px

def case(pboxes, plabels, pscores, gboxes=(G,), glabels=(0,), ignore=None):
    gt = {"boxes": np.array(gboxes, float).reshape(-1, 4), "labels": np.array(glabels)}
    if ignore is not None:
        gt["ignore"] = np.array(ignore, bool)
    return ({"boxes": np.array(pboxes, float).reshape(-1, 4), "labels": np.array(plabels),
             "scores": np.array(pscores, float)}, gt)

CASES = { # error type -> one image with exactly that error (and its expected dAP, AP points)
    "cls": (case([G], [1], [.9]), 100.),
    "loc": (case([[30., 10, 70, 50]], [0], [.9]), 100.),  # IoU 1/3
    "both": (case([[30., 10, 70, 50]], [1], [.9]), 0.),  # and its GT is missed
    "dupe": (case([G, [12., 10, 50, 50]], [0, 0], [.9, .8]), 0.),
    "bkg": (case([[200., 200, 220, 220], G], [0, 0], [.95, .9]), 50.),
    "miss": (case([G], [0], [.9], [G, F], [0, 0]), 100 - 5100 / 101),
}
A, B, C, D, E = G, [100., 10, 140, 50], [10., 100, 50, 140], F, [200., 200, 240, 240]
MIXED = case([A, [12., 10, 50, 50], B, [30., 100, 70, 140], [120., 100, 160, 140],
              [300., 10, 320, 30]], [0, 0, 0, 0, 0, 1], [.9, .6, .8, .7, .5, .95],
             [A, B, C, D, E], [0, 1, 0, 1, 0])

@pytest.mark.parametrize("kind", list(CASES))
def test_one_error_per_case(kind):
    (p, g), dap = CASES[kind]
    s = tide_errors([p], [g]).summary()
    assert s.loc[kind, "count"] == 1
    assert s.loc[list(ERROR_TYPES), "count"].sum() == (2 if kind == "both" else 1)
    assert s.loc[kind, "dAP"] == pytest.approx(dap)

def test_mixed_image_and_tables():
    r = tide_errors([MIXED[0], case([], [], [])[0]], [MIXED[1], case([], [], [], [F], [1])[1]])
    assert r.errors.type.tolist() == ["bkg", "cls", "loc", "dupe", "both", "miss", "miss", "miss"]
    assert r.errors["gt"].tolist() == [-1, 1, 2, 0, 3, 3, 4, 0]
    assert r.errors.pred.tolist() == [5, 2, 3, 1, 4, -1, -1, -1]  # indices into the inputs
    row = r.per_image.set_index("image").loc[0]
    assert row[["n_preds", "n_gts", "tp", *ERROR_TYPES]].tolist() == [6, 5, 1, 1, 1, 1, 1, 1, 2]
    assert r.per_image.loc[1, "miss"] == 1 and r.per_image.loc[1, "n_preds"] == 0
    s = r.summary()
    assert s.loc["FP", "count"] == 5 and s.loc["FN", "count"] == 5  # 6 GTs, 1 TP
    assert (s.dAP.loc[list(ERROR_TYPES)] >= 0).all() and s.attrs["ap"] == pytest.approx(r.ap)

def test_cls_loc_fix_only_the_best_of_a_free_gt():
    # two loc errors on one GT: fixing makes the higher-scored one a TP and removes the other
    p, g = case([[30., 10, 70, 50], [25., 10, 65, 50]], [0, 0], [.6, .9])
    r = tide_errors([p], [g])
    assert r.errors.type.tolist() == ["loc", "loc"]
    assert r.rows.best.tolist() == [True, False]  # rows in score order: 0.9 first
    assert r.summary().loc["loc", "dAP"] == pytest.approx(100.)

def test_ignore_regions_and_empty_images():
    p, g = case([[0., 0, 20, 20], G], [0, 0], [.9, .8], [G, [0., 0, 30, 30]], [0, 0], [False, True])
    r = tide_errors([p], [g])
    assert r.errors[["type", "ignored"]].values.tolist() == [["bkg", True]]  # IoU 0.05 with G
    assert r.ap == pytest.approx(100.)  # the ignored box is out of the AP
    r = tide_errors([case([G], [0], [.5])[0]], [case([], [], [], [], [])[1]])
    assert r.errors.type.tolist() == ["bkg"] and r.ap == 0.0

def test_max_dets_keeps_the_highest_scores():
    boxes = [[x, 0., x + 5, 5] for x in range(0, 1010, 10)]
    p, g = case(boxes, [0] * 101, np.linspace(0.01, 1, 101), boxes[:1], [0])
    r = tide_errors([p], [g], max_dets=100)
    assert len(r.rows[r.rows.type != "miss"]) == 100 and 0 not in r.rows.pred.tolist()
    assert r.errors.type.tolist()[-1] == "miss"  # its only GT was the lowest-scored box's

def test_bad_inputs_are_named():
    p, g = case([G], [0], [.9])
    with pytest.raises(ValueError, match=r"preds\[0\]\['boxes'\] has shape \(1, 3\)"):
        tide_errors([{**p, "boxes": [[0, 0, 1]]}], [g])
    with pytest.raises(ValueError, match=r"gts\[1\] has no 'labels'"):
        tide_errors([p, p], [g, {"boxes": []}])
    with pytest.raises(ValueError, match="one dict per image"):
        tide_errors([p], [])
    with pytest.raises(ValueError, match="iou_bg"):
        tide_errors([p], [g], iou_fg=0.3, iou_bg=0.5)

def random_set(seed:int, n_img:int=60, n_cls:int=3, ignore:bool=False, tie_scores:bool=False):
    "Random GTs and predictions made from them by jitter, relabelling, duplicating, dropping."
    rng, preds, gts = np.random.default_rng(seed), [], []
    for _ in range(n_img):
        m = int(rng.integers(0, 6))
        xy, wh = rng.uniform(0, 200, (m, 2)), rng.uniform(10, 60, (m, 2))
        gb, gl = np.c_[xy, xy + wh], rng.integers(0, n_cls, m)
        pb, pl = [], []
        for b, l, s in zip(gb, gl, np.tile(wh, 2)):
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
                pb.append(b + rng.normal(0, rng.choice([0.03, 0.2, 0.45])) * s)
                pl.append(l if rng.random() > 0.2 else int(rng.integers(0, n_cls)))
        for _ in range(int(rng.integers(0, 3))):
            x0 = rng.uniform(0, 250, 2)
            pb.append(np.r_[x0, x0 + rng.uniform(5, 40, 2)]); pl.append(int(rng.integers(0, n_cls)))
        sc = rng.uniform(0, 1, len(pb))
        p, g = case(pb, pl, np.round(sc, 1) if tie_scores else sc, gb, gl,
                    rng.random(m) < 0.15 if ignore else None)
        preds.append(p); gts.append(g)
    return preds, gts

def test_ap_is_cocoeval_ap50():
    from workbench.detection.postprocess import coco_stats, evaluate_coco
    preds, gts = random_set(0, n_img=40)
    xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
    gt = {"images": [{"id": i, "height": 300, "width": 300} for i in range(len(gts))],
          "categories": [{"id": c + 1, "name": str(c)} for c in range(3)],
          "annotations": [{"id": 1000 * i + k + 1, "image_id": i, "category_id": int(l) + 1,
                           "bbox": xywh(b), "area": xywh(b)[2] * xywh(b)[3], "iscrowd": 0}
                          for i, g in enumerate(gts)
                          for k, (b, l) in enumerate(zip(g["boxes"], g["labels"]))]}
    res = [{"image_id": i, "category_id": int(l) + 1, "bbox": xywh(b), "score": float(s)}
           for i, p in enumerate(preds) for b, l, s in zip(p["boxes"], p["labels"], p["scores"])]
    ap50 = coco_stats(evaluate_coco(gt, res, backend="pycocotools"))["AP50"] * 100
    assert tide_errors(preds, gts).ap == pytest.approx(ap50, abs=1e-6)

def test_draw_styles_and_legend():
    r = tide_errors([MIXED[0]], [MIXED[1]])
    fig, ax = plt.subplots()
    r.draw(ax, np.zeros((260, 340, 3), np.uint8), 0, ["circle", "square"])
    assert len(ax.patches) == 5 + 6 + 2  # every GT, every prediction, missed GTs again
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["GT", "tp (1)", "cls (1)", "loc (1)", "both (1)", "dupe (1)", "bkg (1)",
                      "miss (2)"]
    styles = {p.get_linestyle() for p in ax.patches}
    assert len(styles) >= 4
    plt.close(fig)

# ---- against the reference implementation, when it is importable ----
_NAMES = {"Cls": "cls", "Loc": "loc", "Both": "both", "Dupe": "dupe", "Bkg": "bkg", "Miss": "miss",
          "FalsePos": "FP", "FalseNeg": "FN"}

def tidecv_numbers(preds, gts, fg=0.5, bg=0.1) -> tuple:
    "tidecv's (ap, counts, dAP, per-box errors {(kind, image, pred or gt index)}), our names."
    tidecv = pytest.importorskip("tidecv")
    gd, pd_, where = tidecv.Data("gt"), tidecv.Data("pred"), {"gt": [], "pred": []}
    xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
    for i, (p, g) in enumerate(zip(preds, gts)):
        gd.add_image(i, str(i))
        ig = g.get("ignore", np.zeros(len(g["labels"]), bool))
        for k, (b, l, x) in enumerate(zip(g["boxes"], g["labels"], ig)):
            (gd.add_ignore_region if x else gd.add_ground_truth)(i, int(l), box=xywh(b))
            where["gt"].append((i, k))
        for k, (b, l, s) in enumerate(zip(p["boxes"], p["labels"], p["scores"])):
            pd_.add_detection(i, int(l), float(s), box=xywh(b))
            where["pred"].append((i, k))
    run = tidecv.TIDE(pos_threshold=fg, background_threshold=bg).evaluate(gd, pd_, mode="bbox")
    counts = {_NAMES[e.short_name]: n for e, n in run.count_errors().items()}
    dap = {_NAMES[e.short_name]: v for e, v in
           {**run.fix_main_errors(), **run.fix_special_errors()}.items()}
    boxes = {(_NAMES[e.short_name], *where["pred" if hasattr(e, "pred") else "gt"][e.get_id()])
             for e in run.errors}
    return run.ap, counts, dap, boxes

SETS = {"cases": lambda: ([c[0][0] for c in CASES.values()] + [MIXED[0]],
                          [c[0][1] for c in CASES.values()] + [MIXED[1]]),
        "random": lambda: random_set(1, ignore=True),
        "ties": lambda: random_set(2, tie_scores=True)}

@pytest.mark.parametrize("name", list(SETS))
def test_matches_tidecv(name):
    preds, gts = SETS[name]()
    ap, counts, dap, boxes = tidecv_numbers(preds, gts)
    r = tide_errors(preds, gts)
    s = r.summary()
    assert s.attrs["ap"] == pytest.approx(ap, abs=1e-9)
    assert {t: int(s.loc[t, "count"]) for t in ERROR_TYPES} == counts
    assert s.dAP.to_dict() == pytest.approx(dap, abs=1e-9)
    e = r.errors
    assert set(zip(e.type, e.image, np.where(e.type == "miss", e["gt"], e.pred))) == boxes
