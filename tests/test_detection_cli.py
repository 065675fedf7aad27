"Detection end to end through `workbench/train.py`: YOLOX and YOLOv3 in the one loop, COCO eval, 2 processes = 1."
import csv, json
from conftest import train

def det_args(root, out, name, exp="yolox_nano_shapes", *extra):
    "Seconds-long CPU detection run on the small shapes fixture."
    return ["--exp", exp, "--output", str(out), "--name", name, "--set", f"data.root={root}", "data.img_size=64",
            "data.batch_size=8", "data.eval_batch_size=4", "train.epochs=2", "train.eval_every=1", "detection.no_aug_epochs=1", *extra]

def test_yolox_trains_evaluates_and_switches_stage(shapes, tmp_path):
    r = train(*det_args(shapes/"coco", tmp_path/"runs", "x", "yolox_nano_shapes", "detection.multiscale=[32, 96]", "detection.multiscale_every=1"))
    run = tmp_path/"runs/yolox_nano_shapes/x"
    m = json.loads((run/"metrics.json").read_text())
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"} <= set(m)
    assert set(m["per_class"]) == {"circle", "square", "triangle", "star", "cross"}
    rows = list(csv.DictReader((run/"results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(r["val/AP50"] != "" for r in rows)
    assert float(rows[0]["train/l1"]) == 0 and float(rows[1]["train/l1"]) > 0  # L1 only in the last (no-aug) epoch
    preds = json.loads((run/"predictions.json").read_text())
    assert all({"image_id", "category_id", "bbox", "score"} <= set(p) for p in preds[:5])
    assert {p["category_id"] for p in preds} <= {3, 7, 11, 20, 42}  # the dataset's own category ids
    assert "AP50" in r.stdout and "circle" in r.stdout

def test_yolov3_tiny_on_yolo_txt(shapes, tmp_path):
    train(*det_args(shapes/"yolo", tmp_path/"runs", "t", "yolov3_tiny_shapes", "train.epochs=1", "detection.no_aug_epochs=0"))
    m = json.loads((tmp_path/"runs/yolov3_tiny_shapes/t/metrics.json").read_text())
    assert 0 <= m["AP50"] <= 1

def test_detection_two_processes_score_like_one(shapes, tmp_path):
    train(*det_args(shapes/"coco", tmp_path/"runs", "t", "yolox_nano_shapes", "train.epochs=1", "detection.no_aug_epochs=0"))
    w = str(tmp_path/"runs/yolox_nano_shapes/t/weights/best.safetensors")
    # 9 val images, batches of 4 over 2 processes: padding samples must be dropped before COCO eval
    train(*det_args(shapes/"coco", tmp_path/"runs", "e1", "yolox_nano_shapes"), "--eval-only", "--weights", w)
    r = train(*det_args(shapes/"coco", tmp_path/"runs", "e2", "yolox_nano_shapes"), "--eval-only", "--weights", w, nproc=2)
    assert "2 process(es)" in r.stdout
    m1, m2 = (json.loads((tmp_path/f"runs/yolox_nano_shapes/{n}/metrics.json").read_text()) for n in ("e1", "e2"))
    drop = lambda m: {k: v for k, v in m.items() if k != "summary"}
    assert drop(m1) == drop(m2)

def test_rect_eval_two_processes(tmp_path):
    "Rect batches on 2 processes: 9 images in batches of 4, so Accelerate completes the short last batch with images of another shape."
    from workbench.data.synthetic import generate
    root = generate(tmp_path/"wide", n_train=16, n_val=9, seed=2, min_size=64, max_size=160, formats="yolo")/"yolo"  # aspect 0.4-2.5
    args = lambda name, *extra: det_args(root, tmp_path/"runs", name, "yolov3_tiny_shapes", "data.img_size=128", *extra)
    train(*args("t", "train.epochs=1", "detection.no_aug_epochs=0"))
    w = str(tmp_path/"runs/yolov3_tiny_shapes/t/weights/best.safetensors")
    for name, n in (("r1", 1), ("r2", 2)):
        r = train(*args(name, "detection.rect=true"), "--eval-only", "--weights", w, nproc=n)
        assert f"{n} process(es)" in r.stdout and "AP50" in r.stdout
