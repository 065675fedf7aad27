"""Error analysis (`workbench.interpret`): the table's order against per-image mIoU computed independently,
the command line's files, promptable rows against numpy Dice/IoU, filters, bad input as one line."""
import os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from conftest import REPO

import workbench.experiments, workbench.tasks.segmentation, workbench.tasks.promptable  # noqa: F401
from workbench.config import get_experiment, apply_overrides
from workbench.learner import Learner
from workbench.interpret import interpret, interpret_run, main

pytestmark = pytest.mark.usefixtures("one_thread")
SEG = ["model.name=simple_fcn", "model.tta=false", "data.batch_size=4", "data.eval_batch_size=1",
       "data.base_size=64", "data.crop_size=64", "data.eval_size=0", "train.epochs=1", "optim.lr=0.01",
       "train.cpu_threads=1"]

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from workbench.data.synthetic import generate
    return generate(tmp_path_factory.mktemp("interp")/"shapes", n_train=8, n_val=6, seed=2, formats="voc,coco")

@pytest.fixture(scope="module")
def seg_run(data, tmp_path_factory):
    "A deliberately weak run: simple_fcn after two optimizer steps (its images fail to different degrees)."
    cfg = apply_overrides(get_experiment("seg_shapes"), [f"data.root={data/'voc'}", *SEG])
    run = tmp_path_factory.mktemp("runs")/"seg"
    metrics = Learner(cfg, run).fit()
    return run, metrics

def numpy_miou(pred, gt, n, ignore=255):
    "Mean IoU over the classes in the ground truth or the prediction, from a plain numpy confusion matrix."
    keep = gt != ignore
    cm = np.bincount(n*gt[keep].astype(np.int64) + pred[keep], minlength=n*n).reshape(n, n)
    tp = np.diag(cm); union = cm.sum(0) + cm.sum(1) - tp
    return float((tp[union > 0]/union[union > 0]).mean())

def independent_mious(run):
    "Per-image mIoU of the run's best weights: its own model forward on each val image, numpy metric."
    from workbench.config import load_config
    from workbench.core import load_weights
    from workbench.models import create_model
    cfg = load_config(run/"config.yaml")
    model = create_model(cfg.model.name, num_classes=6, **cfg.model.kwargs)
    model.load_state_dict(load_weights(run/"weights"/"best.safetensors"))
    learner = Learner(cfg, run, train=False)  # only for its val dataset (images normalised as in training)
    out = []
    with torch.no_grad():
        for i in range(len(learner.val_ds)):
            x, m = learner.val_ds[i]
            y = model.eval()(x.as_subclass(torch.Tensor)[None])
            y = y["out"] if isinstance(y, dict) else y
            assert y.shape[-2:] == m.shape[-2:], (y.shape, m.shape)
            out.append(numpy_miou(y.argmax(1)[0].numpy(), m.numpy(), 6))
    return out

def test_order_is_worst_first_by_independent_miou(seg_run):
    run, metrics = seg_run
    it = interpret_run(run)
    ref = independent_mious(run)
    assert len(set(np.round(ref, 6))) >= 3, f"the degraded model should separate the images: {ref}"
    assert list(it.table["index"]) == sorted(range(len(ref)), key=lambda i: (ref[i], i))
    np.testing.assert_allclose(it.table["mIoU"], np.sort(ref), atol=1e-9)
    assert it.table["mIoU"].mean() == pytest.approx(metrics["mIoU_image"], abs=1e-6)  # the run's own number
    files = set(it.table["file"])
    assert len(files) == 6 and all(f.endswith(".jpg") for f in files), files
    # the kept confusion matrix of each image gives its per-class IoU columns
    r = it.table.iloc[0]
    cm = it.analysis.confusion[r["index"]].double()
    iou = cm.diag()/(cm.sum(0) + cm.sum(1) - cm.diag())
    for c, v in zip(it.analysis.classes, iou.tolist()):
        assert (np.isnan(v) and np.isnan(r[f"IoU_{c}"])) or r[f"IoU_{c}"] == pytest.approx(v)

def test_filters_and_panels(seg_run):
    it = interpret_run(seg_run[0], max_items=4)
    assert len(it.table) == 4
    sq = it.rows(cls="square")
    assert sq["IoU_square"].notna().all() and sq["IoU_square"].is_monotonic_increasing
    with pytest.raises(ValueError, match=r"did you mean \['square'"): it.rows(cls="sqare")
    with pytest.raises(ValueError, match="error types are for detection"): it.rows(kind="miss")
    fig = it.show(0)
    assert len(fig.axes) == 4 and "mIoU" in fig.axes[2].get_title() and fig.legends
    fig = it.browse(live=False, n_static=2)  # the static fallback: a grid of the two worst
    assert len(fig.axes) == 2 and it.table["file"].iloc[0] in fig.axes[0].get_title()

def test_command_line_writes_its_files(seg_run, tmp_path):
    out = tmp_path/"interp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "ACCELERATE_USE_CPU": "1"}
    r = subprocess.run([sys.executable, "-m", "workbench.interpret", str(seg_run[0]), "--which", "last",
                        "--out", str(out), "--max-items", "3"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("table.csv", "summary.md", "worst.png", "score_hist.png", "per_class_iou.png", "confusion.png"):
        assert (out/f).is_file() and (out/f).stat().st_size > 0, f
    t = pd.read_csv(out/"table.csv")
    assert len(t) == 3 and t["mIoU"].is_monotonic_increasing and {"index", "file", "IoU_circle"} <= set(t.columns)
    assert "# Error analysis" in (out/"summary.md").read_text() and "wrote" in r.stdout

def test_bad_input_is_one_line_naming_the_path(seg_run, tmp_path, capsys):
    nocfg, noweights = tmp_path/"empty", tmp_path/"noweights"
    nocfg.mkdir(); (noweights/"weights").mkdir(parents=True)
    (noweights/"config.yaml").write_text((seg_run[0]/"config.yaml").read_text())
    for argv, says in (([str(tmp_path/"missing")], "no such run folder"), ([str(nocfg)], "no config.yaml"),
                       ([str(noweights)], "best.safetensors: no such weights file")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err and str(Path(argv[0]).resolve()) in err, err
        assert "Traceback" not in err

def test_promptable_rows_match_numpy_dice_and_iou(data, tmp_path):
    cfg = apply_overrides(get_experiment("efficient_sam_shapes"), [
        f"data.root={data/'coco'}", "data.img_size=64", "data.batch_size=2", "data.eval_batch_size=1",
        "prompts.prompt=box+points", "prompts.n_neg=1", "prompts.bbox_shift=3", "train.cpu_threads=1"])
    learner = Learner(cfg, tmp_path/"sam", train=False)  # random weights: a poor model
    it = interpret(learner)
    an, t = it.analysis, it.table
    n_objects = sum(int(learner.val_ds[i]["valid"].sum()) for i in range(len(learner.val_ds)))
    assert len(t) == n_objects and t["IoU"].is_monotonic_increasing
    assert set(t["prompt"]) == {"box+points"} and t["pred_IoU"].notna().all()
    for r in t.itertuples():
        gt = np.asarray(learner.val_ds[r.index]["masks_orig"][r.object], bool)
        pr = an.masks[r.index][r.object].numpy()
        inter, union, total = (gt & pr).sum(), (gt | pr).sum(), gt.sum() + pr.sum()
        assert r.Dice == pytest.approx(2*inter/total if total else 1.0, abs=1e-6)
        assert r.IoU == pytest.approx(inter/union if union else 1.0, abs=1e-6)
        assert r.area == gt.sum()
    ev = learner.evaluate()
    assert t["Dice"].mean() == pytest.approx(ev["dice"], abs=1e-5) and len(t) == ev["count"]
    fig = it.show(0)
    assert [x.get_text() for x in fig.legends[0].get_texts()] == [
        "mask (ground truth / prediction)", "box prompt", "positive point", "negative point"]
    cal = an.figures(t)["calibration"].axes[0]
    assert len(cal.collections[0].get_offsets()) == len(t) and "identity" in cal.get_legend_handles_labels()[1][0]
    c = t["class"].iloc[0]
    assert set(it.rows(cls=c)["class"]) == {c}
    with pytest.raises(ValueError, match="no object with that class"): it.rows(cls="hexagon")

def test_detection_rows_are_tide_counts(data, tmp_path):
    from workbench.tide import ERROR_TYPES, tide_errors
    import workbench.tasks.detection  # noqa: F401
    cfg = apply_overrides(get_experiment("yolox_nano_shapes"), [
        f"data.root={data/'coco'}", "data.img_size=64", "data.eval_batch_size=1", "model.ema=false",
        "train.cpu_threads=1"])
    learner = Learner(cfg, tmp_path/"det", train=False)  # random weights: every box an error of some type
    it = interpret(learner)
    an, t = it.analysis, it.table
    assert len(t) == len(learner.val_ds) and t["correct"].dropna().is_monotonic_increasing
    again = tide_errors(an.preds, an.gts).per_image.set_index("image")
    for r in t.itertuples():
        for k in ERROR_TYPES: assert getattr(r, k) == again.loc[r.index, k]
        gt = learner.val_ds.dataset.load(r.index)[1]
        assert r.n_gts == len(gt["boxes"])
    k = t[list(ERROR_TYPES)].sum().idxmax()
    assert len(it.rows(kind=k)) and (it.rows(kind=k)[k] > 0).all()
    with pytest.raises(ValueError, match="not a TIDE error type"): it.rows(kind="localisation")
    files = it.save(tmp_path/"out")
    assert {"tide", "worst", "table", "summary"} <= set(files) and "TIDE AP50" in files["summary"].read_text()
