"Run comparison (`workbench.compare`) and dataset statistics (`workbench.data_stats`) against the files."
import csv, json, math, subprocess, sys
from collections import Counter
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")

def _tiny_run(voc, out, lr):
    "A seconds-long segmentation run (2 epochs of 2 steps, evaluated after each) in `out`."
    import workbench.tasks.segmentation, workbench.experiments  # noqa: F401 (registrations)
    from workbench.config import apply_overrides, get_experiment
    from workbench.learner import Learner
    cfg = apply_overrides(get_experiment("seg_shapes"), [
        f"data.root={voc}", "model.name=simple_fcn", "data.batch_size=12", "data.base_size=48",
        "data.crop_size=48", "data.eval_size=0", "model.tta=false", "train.epochs=2",
        "train.eval_every=1", f"optim.lr={lr}"])
    Learner(cfg, out).fit()
    return out

@pytest.fixture(scope="module")
def two_runs(shapes, tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")/"seg_shapes"
    return [_tiny_run(shapes/"voc", d/"a", 0.01), _tiny_run(shapes/"voc", d/"b", 0.05)]

def test_comparison_tables_equal_the_files(two_runs, tmp_path):
    from workbench.compare import compare_runs
    c = compare_runs(two_runs)
    assert list(c.config.index) == ["optim.lr"] and c.config.loc["optim.lr"].tolist() == [0.01, 0.05]
    for run in two_runs:
        rows = list(csv.DictReader(open(run/"results.csv")))
        final = json.loads((run/"metrics.json").read_text())
        best = max(rows, key=lambda r: float(r["val/mIoU"]))  # first of the best, as the run saved it
        m = c.metrics.loc[run.name]
        assert m["best epoch"] == int(best["epoch"]) and m["epochs"] == 2
        for k in ("mIoU", "aAcc", "mDice"):
            assert m[f"{k} best"] == pytest.approx(float(best[f"val/{k}"]), rel=1e-5)
            assert m[f"{k} final"] == final[k]
        for k in ("IoU", "Acc", "Dice"):
            got = c.per_class[k].loc[run.name].to_dict()
            assert {n: None if math.isnan(v) else v for n, v in got.items()} == final[k]
    paths = c.save(tmp_path/"cmp")
    assert sorted(p.name for p in paths) == ["comparison.md", "losses.png", "metrics.png", "per_class.png"]
    md = (tmp_path/"cmp"/"comparison.md").read_text()
    assert "| optim.lr | 0.01 | 0.05 |" in md and "![per_class](per_class.png)" in md

def test_detection_metrics_json_gives_per_class_columns(tmp_path):
    "A detection run's metrics.json (12 stats, per_class dicts) read from a hand-written run folder."
    from workbench.config import get_experiment, save_config
    from workbench.compare import compare_runs
    import workbench.experiments  # noqa: F401
    run = tmp_path/"det"/"run1"
    run.mkdir(parents=True)
    save_config(get_experiment("yolox_nano_shapes"), run/"config.yaml")
    (run/"results.csv").write_text("epoch,step,lr,train/loss,val/AP,val/AP50\n1,5,0.01,3.0,0.1,0.2\n"
                                   "2,10,0.0,2.0,0.3,0.6\n3,15,0.0,1.5,0.25,0.5\n")
    pc = {"circle": {"category_id": 3, "AP": 0.4, "AP50": 0.7, "n_gt": 5},
          "square": {"category_id": 7, "AP": 0.1, "AP50": None, "n_gt": 0}}
    (run/"metrics.json").write_text(json.dumps({"AP": 0.25, "AP50": 0.5, "per_class": pc, "summary": "x"}))
    c = compare_runs([run])
    assert list(c.per_class) == ["AP", "AP50"] and c.per_class["AP"].loc["run1"].tolist() == [0.4, 0.1]
    assert math.isnan(c.per_class["AP50"].loc["run1", "square"])
    m = c.metrics.loc["run1"]
    assert m["best by"] == "AP50 (max)"  # the preset's train.best_metric
    assert (m["best epoch"], m["AP best"], m["AP final"], m["AP50 best"]) == (2, 0.3, 0.25, 0.6)

def test_cli_names_a_folder_that_is_not_a_run(two_runs, tmp_path):
    r = subprocess.run([sys.executable, "-m", "workbench.compare", str(two_runs[0]), str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip() == (f"error: {tmp_path}: not a run folder "
                                                      "(no results.csv and no config.yaml)"), r.stderr

def test_a_run_writes_its_data_statistics(two_runs, shapes):
    from workbench.data_stats import dataset_stats
    from workbench.data.voc import VOCSegmentation
    plots = two_runs[0]/"plots"
    for f in ("data_stats.png", "data_stats.csv", "data_stats.json"):
        assert (plots/f).is_file(), f
    rows = [r for r in csv.DictReader(open(plots/"data_stats.csv")) if r["split"] == "train"]
    want = dataset_stats(VOCSegmentation(shapes/"voc", "train")).per_class
    assert [int(r["objects"]) for r in rows] == want["objects"].tolist()
    assert json.loads((plots/"data_stats.json").read_text())["val"]["n_images"] == 9

def _masks(voc, split):
    ids = (voc/"ImageSets"/"Segmentation"/f"{split}.txt").read_text().split()
    return [np.asarray(Image.open(voc/"SegmentationClass"/f"{i}.png")) for i in ids]

def test_segmentation_counts_equal_the_masks(shapes):
    from workbench.data_stats import dataset_stats, MIN_REGION_AREA
    from workbench.data.voc import VOCSegmentation
    s = dataset_stats(VOCSegmentation(shapes/"voc", "train"))
    masks = _masks(shapes/"voc", "train")
    assert s.per_class["pixels"].tolist() == [sum(int((m == c).sum()) for m in masks) for c in range(6)]
    assert s.per_class["images"].tolist() == [sum(bool((m == c).any()) for m in masks) for c in range(6)]
    ndimage = pytest.importorskip("scipy.ndimage")  # regions by another implementation
    regions = Counter()
    for m in masks:
        for c in range(1, 6):
            lab, n = ndimage.label(m == c, structure=np.ones((3, 3)))
            regions[c] += int((np.bincount(lab.ravel())[1:] >= MIN_REGION_AREA).sum())
    assert s.per_class["objects"].tolist() == [0] + [regions[c] for c in range(1, 6)]
    capped = dataset_stats(VOCSegmentation(shapes/"voc", "train"), max_images=5)
    assert (capped.n_read, capped.n_images, capped.capped) == (5, 24, True)
    assert capped.describe() == "labels of 5 of 24 images (spread evenly)"

def test_detection_and_promptable_counts_equal_the_annotations(shapes):
    from workbench.data_stats import dataset_stats
    from workbench.data.coco import COCODetection
    from workbench.data.yolo import YOLODataset
    from workbench.data.prompts import CocoInstances
    from workbench.data.medsam import MedSAMDataset
    js = json.loads((shapes/"coco"/"annotations"/"instances_train.json").read_text())
    by_cat = Counter(a["category_id"] for a in js["annotations"])
    det = dataset_stats(COCODetection(shapes/"coco", "instances_train.json"))
    assert det.per_class["objects"].tolist() == [by_cat[c] for c in (3, 7, 11, 20, 42)]
    assert det.per_class["images"].tolist() == [
        len({a["image_id"] for a in js["annotations"] if a["category_id"] == c}) for c in (3, 7, 11, 20, 42)]
    assert det.objects["h"].sum() == pytest.approx(sum(a["bbox"][3] for a in js["annotations"]), rel=1e-6)
    data_file = next((shapes/"yolo").glob("*.data"))
    yolo = dataset_stats(YOLODataset.from_data_file(data_file, "train"))
    rows = Counter(int(l.split()[0]) for f in (shapes/"yolo"/"labels"/"train").glob("*.txt")
                   for l in f.read_text().splitlines() if l.strip())
    assert yolo.per_class["objects"].tolist() == [rows[c] for c in range(5)]
    prm = dataset_stats(CocoInstances.from_split(shapes/"coco", "train"))
    assert prm.kind == "promptable" and len(prm.objects) == len(js["annotations"])
    assert prm.objects["area"].sum() == pytest.approx(sum(a["area"] for a in js["annotations"]))
    med = dataset_stats(MedSAMDataset(shapes/"medsam"/"train"))
    gts = sorted((shapes/"medsam"/"train"/"gts").glob("*.npy"))
    assert len(med.objects) == sum(len(np.unique(np.load(g))) - 1 for g in gts)
    assert med.per_class["images"].tolist() == [len(gts)]

def test_the_figure_names_classes_and_what_was_read(shapes):
    from workbench.data_stats import dataset_stats, plot_dataset_stats
    from workbench.data.voc import VOCSegmentation
    s = dataset_stats(VOCSegmentation(shapes/"voc", "train"), max_images=10)
    fig = plot_dataset_stats({"train": s}, title="shapes")
    assert "labels of 10 of 24 images" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == list(s.classes)
