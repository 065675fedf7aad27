"End to end through `workbench/train.py` as a script: outputs, bad input, non-finite loss."
import csv, json, math
from pathlib import Path
import pytest
from conftest import REPO, train, tiny_args

def test_help_and_list_run_as_script_from_anywhere(tmp_path):
    r = train("--help", cwd=tmp_path)  # not the repo root: imports must not depend on the cwd
    assert "--resume" in r.stdout and "--eval-only" in r.stdout
    r = train("--list", cwd=tmp_path)
    assert "seg_shapes" in r.stdout and "deeplabv3_resnet50" in r.stdout

def test_train_writes_the_run_folder(shapes, tmp_path):
    r = train(*tiny_args(shapes/"voc", tmp_path/"runs", "a"))
    run = tmp_path/"runs"/"seg_shapes"/"a"
    for f in ("config.yaml", "results.csv", "metrics.json", "weights/best.safetensors", "weights/last.safetensors",
              "state/custom_checkpoint_0.pkl", "plots/history.png", "plots/lr.png", "plots/predictions.png", "plots/confusion.png"):
        assert (run/f).is_file(), f
    assert list((run/"tb").rglob("events.out.tfevents*")), "no TensorBoard events"
    rows = list(csv.DictReader((run/"results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and float(rows[-1]["lr"]) == 0.0  # poly ends at 0
    m = json.loads((run/"metrics.json").read_text())
    assert 0 <= m["mIoU"] <= 1 and 0 <= m["aAcc"] <= 1 and set(m["IoU"]) == {"background", "circle", "square", "triangle", "star", "cross"}
    assert "mIoU" in r.stdout and "background" in r.stdout  # per-class table printed

def test_eval_only_reads_weights(shapes, tmp_path):
    train(*tiny_args(shapes/"voc", tmp_path/"runs", "a", "train.epochs=1"))
    w = tmp_path/"runs"/"seg_shapes"/"a"/"weights"/"best.safetensors"
    train(*tiny_args(shapes/"voc", tmp_path/"runs", "e"), "--eval-only", "--weights", str(w))
    a = json.loads((tmp_path/"runs/seg_shapes/a/metrics.json").read_text())
    e = json.loads((tmp_path/"runs/seg_shapes/e/metrics.json").read_text())
    assert a == e  # best weights of a 1-epoch run = the weights its final evaluation used

def test_eval_only_with_weights_of_another_model_fails_clearly(shapes, tmp_path):
    from workbench.core import save_weights
    from workbench.models import create_model
    w = save_weights(create_model("simple_fcn", num_classes=3).state_dict(), tmp_path/"other.safetensors")
    r = train(*tiny_args(shapes/"voc", tmp_path/"runs", "e"), "--eval-only", "--weights", str(w), check=False)
    assert r.returncode == 2 and "weights do not match" in r.stderr and "Traceback" not in r.stderr, r.stderr

@pytest.mark.parametrize("extra,expect", [
    (["data.root=/nonexistent/voc"], "data.root='/nonexistent/voc': no such folder"),
    (["optim.lrr=0.1"], "did you mean ['lr']"),
    (["model.name=deeplabv3_resnet5"], "did you mean"),
])
def test_bad_config_is_one_clear_line(shapes, tmp_path, extra, expect):
    r = train(*tiny_args(shapes/"voc", tmp_path/"runs", "bad"), *extra, check=False)
    assert r.returncode == 2 and expect in r.stderr and "Traceback" not in r.stderr, r.stderr

def test_bad_mask_names_the_file(shapes, tmp_path):
    import shutil, numpy as np
    from PIL import Image
    voc = shutil.copytree(shapes, tmp_path/"shapes")/"voc"  # with manifest.json: the 6 class names
    bad = sorted((voc/"SegmentationClass").glob("*.png"))[0]
    h, w = np.asarray(Image.open(bad)).shape
    Image.fromarray(np.full((h, w), 9, np.uint8), mode="L").save(bad)  # right size, class 9 of 6
    r = train(*tiny_args(voc, tmp_path/"runs", "bad", "train.epochs=1", "data.batch_size=24"), check=False)
    assert r.returncode == 2 and bad.name in r.stderr and "values [9]" in r.stderr and "Traceback" not in r.stderr, r.stderr

def test_nonfinite_loss_stops_with_step_and_batch(shapes, tmp_path):
    r = train(*tiny_args(shapes/"voc", tmp_path/"runs", "nan", "loss.class_weights=[.nan, 1, 1, 1, 1, 1]"), check=False)
    assert r.returncode == 2 and "non-finite loss" in r.stderr and "epoch 1, optimizer step 0, batch 0" in r.stderr, r.stderr
