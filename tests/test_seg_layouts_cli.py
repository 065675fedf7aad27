"Other dataset layouts, skip_bad, eval resize and slide inference, end to end through `workbench/train.py`."
import json, shutil
from pathlib import Path
import numpy as np
from PIL import Image
from conftest import train, tiny_args

def as_cityscapes(voc:Path, dst:Path) -> Path:
    "Copy the synthetic VOC splits into the Cityscapes layout (one city per split; masks as labelTrainIds)."
    for split in ("train", "val"):
        for i in (voc/"ImageSets/Segmentation"/f"{split}.txt").read_text().split():
            img, gt = dst/"leftImg8bit"/split/"synth"/f"synth_{i}_leftImg8bit.png", dst/"gtFine"/split/"synth"/f"synth_{i}_gtFine_labelTrainIds.png"
            img.parent.mkdir(parents=True, exist_ok=True); gt.parent.mkdir(parents=True, exist_ok=True)
            Image.open(voc/"JPEGImages"/f"{i}.jpg").save(img)
            Image.fromarray(np.asarray(Image.open(voc/"SegmentationClass"/f"{i}.png"))).save(gt)
    return dst

def test_cityscapes_layout_with_eval_resize_and_slide(shapes, tmp_path):
    cs = as_cityscapes(shapes/"voc", tmp_path/"cityscapes")
    args = tiny_args(cs, tmp_path/"runs", "cs", "data.name=cityscapes", "train.epochs=1", "data.eval_size=48",
                     "model.test_mode=slide", "model.test_crop=32", "model.test_stride=16", "data.cat_max_ratio=0.75", "data.photometric=true")
    train(*args)
    m = json.loads((tmp_path/"runs/seg_shapes/cs/metrics.json").read_text())
    assert len(m["IoU"]) == 19 and "road" in m["IoU"] and 0 <= m["mIoU"] <= 1  # Cityscapes names; absent classes are NaN

def test_folder_layout_skips_bad_pairs_when_asked(shapes, tmp_path):
    root = tmp_path/"folder"
    for split in ("train", "val"):
        for i in (shapes/"voc/ImageSets/Segmentation"/f"{split}.txt").read_text().split():
            for src, sub, ext in ((shapes/"voc/JPEGImages", "images", ".jpg"), (shapes/"voc/SegmentationClass", "masks", ".png")):
                (root/sub/split).mkdir(parents=True, exist_ok=True); shutil.copy(src/f"{i}{ext}", root/sub/split/f"{i}{ext}")
    shutil.copy(shapes/"manifest.json", root/"manifest.json")
    bad = sorted((root/"masks/train").glob("*.png"))[0]
    Image.fromarray(np.full((5, 5), 9, np.uint8), mode="L").save(bad)  # wrong size and class 9 of 6
    args = tiny_args(root, tmp_path/"runs", "f", "data.name=folder", "train.epochs=1")
    r = train(*args, check=False)
    assert r.returncode == 2 and bad.name in r.stderr and "Traceback" not in r.stderr, r.stderr
    args[args.index("f")] = "f2"  # a run of its own
    r = train(*args[:-1], "train.epochs=1", "data.skip_bad=true")
    assert r.returncode == 0 and "data (train):" in r.stdout and "data_report.txt" in r.stdout
    assert bad.name in (tmp_path/"runs/seg_shapes/f2/data_report.txt").read_text()
