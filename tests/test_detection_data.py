"Detection data: YOLO label checks and cache, COCO crowd/degenerate/empty handling, converter round trips, validate_dataset."
import json, os, shutil
from collections import defaultdict
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from workbench.data.coco import COCODetection
from workbench.data.core import DatasetError
from workbench.data.convert import (coco_to_voc, coco_to_yolo, read_coco, read_voc, read_yolo, validate_dataset, voc_to_coco,
                                    voc_to_yolo, yolo_to_coco)
from workbench.data.synthetic import CLASSES, COCO_CATEGORY_IDS
from workbench.data.yolo import YOLODataset, label_path, parse_data_file

# ---------------------------------------------------------------- fixtures

def _img(path, size=(40, 60), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)

def write_yolo(root, rows, names=("zero", "one", "two")):
    "images/train/<stem>.png + labels/train/<stem>.txt (None: no label file), train.txt, data.names, data.data."
    for k, (stem, text) in enumerate(rows.items()):
        _img(root/f"images/train/{stem}.png", seed=k)
        if text is not None:
            lbl = label_path(root/f"images/train/{stem}.png"); lbl.parent.mkdir(parents=True, exist_ok=True); lbl.write_text(text)
    (root/"train.txt").write_text("".join(f"images/train/{s}.png\n" for s in rows))
    (root/"data.names").write_text("".join(n + "\n" for n in names))
    (root/"data.data").write_text(f"classes={len(names)}\ntrain=train.txt\nvalid=train.txt\nnames=data.names\n")
    return root/"data.data"

BAD_ROWS = {"cols": "0 0.5 0.5 0.2\n", "cls": "3 0.5 0.5 0.2 0.2\n", "coord": "0 1.2 0.5 0.2 0.2\n", "size": "1 0.5 0.5 0.2 0\n",
            "dup": "1 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n1 0.5 0.5 0.2 0.2\n", "ok": "2 0.5 0.5 0.5 0.5\n", "empty": "",
            "nolabel": None, "unreadable": "0 0.5 0.5 0.2 0.2\n"}

@pytest.fixture
def bad_yolo(tmp_path):
    data = write_yolo(tmp_path/"yolo", BAD_ROWS)
    (tmp_path/"yolo/images/train/unreadable.png").write_bytes(b"\x89PNG but not really")
    return data

@pytest.fixture
def coco_fixture(tmp_path):
    "3 images 20x30: (normal, crowd, sticking out, 1 px sliver, unknown category), empty, one full-image box."
    root = tmp_path/"coco"
    images = [dict(id=10 + k, file_name=f"im{k}.png", height=20, width=30) for k in range(3)]
    for k, im in enumerate(images): _img(root/"images/train"/im["file_name"], (20, 30), k)
    anns = [dict(id=1, image_id=10, category_id=9, bbox=[2, 3, 10, 5], iscrowd=0),
            dict(id=2, image_id=10, category_id=4, bbox=[1, 1, 8, 8], iscrowd=1),
            dict(id=3, image_id=10, category_id=4, bbox=[25, 15, 10, 10], iscrowd=0),
            dict(id=4, image_id=10, category_id=9, bbox=[5, 5, 1, 12], iscrowd=0),
            dict(id=5, image_id=10, category_id=77, bbox=[5, 5, 5, 5], iscrowd=0),
            dict(id=6, image_id=12, category_id=4, bbox=[0, 0, 30, 20], iscrowd=0)]
    (root/"annotations").mkdir(parents=True)
    (root/"annotations/instances_train.json").write_text(json.dumps(dict(
        images=images, annotations=anns, categories=[dict(id=9, name="cat"), dict(id=4, name="dog")])))
    return root

def boxes_by_file(coco):
    "file name -> sorted rows (category_id, x, y, w, h)."
    names, out = {im["id"]: im["file_name"] for im in coco["images"]}, defaultdict(list)
    for a in coco["annotations"]: out[names[a["image_id"]]].append((a["category_id"], *a["bbox"]))
    return {k: np.array(sorted(v)) for k, v in out.items()}

# ---------------------------------------------------------------- YOLO: .data, label rows, report

@pytest.mark.parametrize("text, exc, msg", [
    ("classes=3\ntrain=train.txt\nvalid=train.txt\n", ValueError, "missing key 'names'"),
    ("classes=3\nnames=data.names\n", ValueError, "missing key 'train'"),
    ("classes=3\ntrain=nope.txt\nvalid=train.txt\nnames=data.names\n", FileNotFoundError, "train=nope.txt not found"),
    ("classes=3\ntrain=train.txt\nvalid=train.txt\nnames=nope.names\n", FileNotFoundError, "names=nope.names not found"),
    ("classes=three\ntrain=train.txt\nvalid=train.txt\nnames=data.names\n", ValueError, "classes='three' is not an integer"),
    ("classes=4\ntrain=train.txt\nvalid=train.txt\nnames=data.names\n", ValueError, "classes=4 but names="),
    ("classes=3\ntrain train.txt\n", ValueError, "broken.data:2: expected key=value"),
])
def test_broken_data_file_names_file_and_key(bad_yolo, text, exc, msg):
    f = bad_yolo.parent/"broken.data"; f.write_text(text)
    with pytest.raises(exc) as e: parse_data_file(f)
    assert msg in str(e.value) and "broken.data" in str(e.value), str(e.value)

def test_data_file_paths_resolve_against_its_folder(bad_yolo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the .data folder
    d = parse_data_file(os.path.relpath(bad_yolo, tmp_path))
    assert d["train"] == bad_yolo.parent/"train.txt" and d["names"] == ["zero", "one", "two"] and d["classes"] == 3
    (bad_yolo.parent/"train_only.data").write_text("train=train.txt\nnames=data.names\n")
    with pytest.raises(ValueError, match="train_only.data: missing key 'valid'"): YOLODataset.from_data_file(bad_yolo.parent/"train_only.data", "val")
    with pytest.raises(FileNotFoundError, match="missing.data"): parse_data_file(tmp_path/"missing.data")

def test_label_report_on_bad_fixtures(bad_yolo):
    ds = YOLODataset.from_data_file(bad_yolo)
    r = ds.report
    assert dict(r.counts) == dict(images=9, found=7, missing=1, empty=1, duplicate=1, corrupt=5)
    assert sorted(Path(f).name for f in r.files("corrupt")) == ["cls.txt", "cols.txt", "coord.txt", "size.txt", "unreadable.png"]
    assert [Path(f).name for f in r.files("missing")] == ["nolabel.txt"] and [Path(f).name for f in r.files("duplicate")] == ["dup.txt"]
    reasons = dict((Path(f).stem, why) for f, why in r.entries["corrupt"])
    assert reasons["cols"] == "row 1: 4 columns, expected 5 (class cx cy w h)"
    assert reasons["cls"] == "row 1: class 3 not in 0..2"
    assert reasons["coord"] == "row 1: cx cy w h = 1.2 0.5 0.2 0.2 not in [0, 1]"
    assert reasons["size"] == "row 1: size w=0.2 h=0 is not positive"
    assert "cannot read image" in reasons["unreadable"]
    # corrupt files are left out; duplicates removed; missing/empty label files are background images
    assert [f.stem for f in ds.image_files] == ["dup", "ok", "empty", "nolabel"]
    assert ds.labels[0].tolist() == [1, 0] and ds[2][1]["boxes"].shape == (0, 4) and ds[3][1]["labels"].shape == (0,)
    with pytest.raises(DatasetError) as e: YOLODataset.from_data_file(bad_yolo, strict=True)
    assert "cols.txt: row 1: 4 columns" in str(e.value) and e.value.report.counts["corrupt"] == 5

def test_validate_dataset_yolo_kinds(bad_yolo):
    r = validate_dataset(bad_yolo, split="train")
    assert r.problems == dict(duplicate=1, unreadable_image=1, unknown_class=1, out_of_range=1, zero_area=1, bad_row=1)
    assert r.counts["background"] == 2 and r.counts["images"] == 9
    with pytest.raises(DatasetError, match="class 3 not in 0..2"): validate_dataset(bad_yolo, strict=True)
    assert validate_dataset(bad_yolo.parent/"images/train", classes=3).problems == r.problems  # a folder works too

def test_yolo_boxes_are_absolute_xyxy_pixels(tmp_path):
    data = write_yolo(tmp_path/"y", {"a": "0 0.5 0.5 0.2 0.4\n1 0.95 0.1 0.2 0.2\n"})
    img, t = YOLODataset.from_data_file(data, cache=False)[0]
    assert isinstance(img, tv_tensors.Image) and img.shape == (3, 40, 60) and img.dtype == torch.uint8
    assert isinstance(t["boxes"], tv_tensors.BoundingBoxes) and t["boxes"].format.name == "XYXY" and t["boxes"].canvas_size == (40, 60)
    assert t["boxes"].tolist() == [[24, 12, 36, 28], [51, 0, 60, 8]]  # the second is clipped to the image
    assert t["labels"].tolist() == [0, 1] and t["labels"].dtype == torch.int64 and t["image_id"] == 1 and t["orig_size"] == (40, 60)

def test_label_path_rule():
    assert label_path("/d/images/train/images/x.jpeg") == Path("/d/images/train/labels/x.txt")  # the last `images` only
    assert label_path("/d/images/x.JPG") == Path("/d/labels/x.txt") and label_path("/d/pics/x.png") == Path("/d/pics/x.txt")

# ---------------------------------------------------------------- YOLO: the cache

def test_cache_follows_the_files(tmp_path):
    data = write_yolo(tmp_path/"y", {"a": "0 0.5 0.5 0.2 0.2\n", "b": None})
    cache, lbl = tmp_path/"y/train.cache", tmp_path/"y/labels/train"
    load = lambda **kw: YOLODataset.from_data_file(data, **kw)
    assert not load().from_cache and cache.is_file()
    ds = load(); assert ds.from_cache and ds.labels[0].tolist() == [0]
    (lbl/"a.txt").write_text("2 0.5 0.5 0.2 0.2\n")                         # edited label file
    ds = load(); assert not ds.from_cache and ds.labels[0].tolist() == [2]
    st = os.stat(lbl/"a.txt"); os.utime(lbl/"a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, newer mtime
    assert not load().from_cache and load().from_cache
    (lbl/"b.txt").write_text("1 0.5 0.5 0.2 0.2\n")                         # a label file appears
    ds = load(); assert not ds.from_cache and ds.labels[1].tolist() == [1]
    _img(tmp_path/"y/images/train/a.png", (50, 60), seed=5)                 # image replaced
    ds = load(); assert not ds.from_cache and ds.sizes[0].tolist() == [50, 60]
    cache.write_text("{ truncated")                                         # damaged cache: rebuilt
    assert not load().from_cache and load().from_cache
    assert not YOLODataset(tmp_path/"y/train.txt", ("a", "b", "c", "d")).from_cache  # another class count
    assert not load(cache=False).from_cache and not load(cache=tmp_path/"other.cache").from_cache and (tmp_path/"other.cache").is_file()

def test_unwritable_cache_only_warns(tmp_path, caplog):
    data = write_yolo(tmp_path/"y", {"a": "0 0.5 0.5 0.2 0.2\n"})
    blocker = tmp_path/"blocker"; blocker.write_text("a file, not a folder")
    ds = YOLODataset.from_data_file(data, cache=blocker/"c.cache")
    assert len(ds) == 1 and "label cache not written" in caplog.text

# ---------------------------------------------------------------- COCO

def test_coco_crowd_degenerate_empty(coco_fixture):
    ds = COCODetection(coco_fixture, "instances_train.json")
    assert ds.cat_ids == [4, 9] and ds.classes == ("dog", "cat") and ds.image_ids == [10, 11, 12] and len(ds) == 3
    img, t = ds[0]
    assert img.shape == (3, 20, 30) and t["image_id"] == 10 and t["orig_size"] == (20, 30)
    assert t["boxes"].tolist() == [[2, 3, 12, 8], [25, 15, 30, 20]]  # xywh -> xyxy, clipped; crowd, sliver, unknown left out
    assert t["labels"].tolist() == [1, 0] and ds.to_category_ids(t["labels"]) == [9, 4] and "crowd_boxes" not in t
    assert dict(ds.stats) == dict(images=3, boxes=3, crowd=1, degenerate=1, unknown_category=1)
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)  # images without objects are kept
    assert COCODetection(coco_fixture, "instances_train.json", min_size=0).stats["degenerate"] == 0
    flip = COCODetection(coco_fixture, "annotations/instances_train.json", transforms=v2.RandomHorizontalFlip(1.), keep_crowd=True)
    _, t = flip[0]
    assert t["crowd_boxes"].tolist() == [[21, 1, 29, 9]] and t["crowd_labels"].tolist() == [0]  # crowd boxes move with the image
    assert t["boxes"].tolist() == [[18, 3, 28, 8], [0, 15, 5, 20]]

def test_coco_bad_images(coco_fixture):
    os.remove(coco_fixture/"images/train/im1.png")
    with pytest.raises(FileNotFoundError, match="im1.png"): COCODetection(coco_fixture, "instances_train.json")
    _img(coco_fixture/"images/train/im1.png", (20, 30))
    (coco_fixture/"images/train/im2.png").write_bytes(b"garbage")
    ds = COCODetection(coco_fixture, "instances_train.json")
    with pytest.raises(ValueError, match="cannot read image .*im2.png"): ds[2]
    ds = COCODetection(coco_fixture, "instances_train.json", skip_bad=True)
    assert ds.image_ids == [10, 11] and len(ds.skipped) == 1 and "im2.png" in ds.skipped[0]
    _img(coco_fixture/"images/train/im2.png", (21, 30))
    with pytest.raises(ValueError, match="annotations say 20x30"): COCODetection(coco_fixture, "instances_train.json")[2]
    with pytest.raises(FileNotFoundError, match="instances_val.json"): COCODetection(coco_fixture, "instances_val.json")

def test_datasets_load_in_worker_processes(shapes):
    coco = COCODetection(shapes/"coco", "instances_val.json")
    yolo = YOLODataset.from_data_file(shapes/"yolo/shapes.data", "val", cache=False)
    for ds in (coco, yolo):
        batches = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=list))
        assert sum(map(len, batches)) == len(ds) == 9

# ---------------------------------------------------------------- converters

def test_synthetic_coco_and_yolo_give_the_same_samples(shapes):
    coco = COCODetection(shapes/"coco", "instances_train.json")
    yolo = YOLODataset.from_data_file(shapes/"yolo/shapes.data", "train", cache=False)
    assert coco.classes == yolo.classes == CLASSES[1:] and coco.cat_ids == sorted(COCO_CATEGORY_IDS.values())
    assert [f.name for f in coco.image_files] == [f.name for f in yolo.image_files]
    for a, b, la, lb in zip(coco.boxes, yolo.boxes, coco.labels, yolo.labels):
        assert (la == lb).all() and np.abs(a - b).max() < 1e-3

def test_roundtrip_coco_yolo_coco(shapes, tmp_path):
    data = coco_to_yolo(shapes/"coco/annotations/instances_train.json", tmp_path/"yolo", "train")
    coco_to_yolo(shapes/"coco/annotations/instances_val.json", tmp_path/"yolo", "val")
    d = parse_data_file(data)
    assert d["names"] == list(CLASSES[1:]) and d["category_ids"] == sorted(COCO_CATEGORY_IDS.values())
    for split in ("train", "val"):
        gt, _ = read_coco(shapes/f"coco/annotations/instances_{split}.json")
        out = yolo_to_coco(data, tmp_path/f"back_{split}.json", split)
        back, _ = read_coco(out, tmp_path/"yolo/images"/split)
        assert [im["file_name"] for im in back["images"]] == [im["file_name"] for im in gt["images"]]
        assert [(im["height"], im["width"]) for im in back["images"]] == [(im["height"], im["width"]) for im in gt["images"]]
        assert {c["id"]: c["name"] for c in back["categories"]} == {c["id"]: c["name"] for c in gt["categories"]}
        a, b = boxes_by_file(gt), boxes_by_file(back)
        assert sorted(a) == sorted(b)
        for k in a:
            assert (a[k][:, 0] == b[k][:, 0]).all()  # same category ids
            assert np.abs(a[k][:, 1:] - b[k][:, 1:]).max() <= 1e-3  # 6 decimals of normalised coordinates
    assert validate_dataset(data, strict=True).counts["images"] == 33

def test_roundtrip_coco_voc_coco_and_difficult(shapes, tmp_path):
    ann = shapes/"coco/annotations/instances_train.json"
    gt, _ = read_coco(ann)
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    coco_to_voc(ann, tmp_path/"voc", "train")
    out = voc_to_coco(tmp_path/"voc", tmp_path/"voc.json", "train", classes=names, cat_ids=sorted(COCO_CATEGORY_IDS.values()))
    back = json.loads(out.read_text())
    a, b = boxes_by_file(gt), boxes_by_file(back)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)  # integer boxes: exact
    assert validate_dataset(tmp_path/"voc", strict=True, classes=names).ok
    xml = sorted((tmp_path/"voc/Annotations").glob("*.xml"))[0]
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    v, _ = read_voc(tmp_path/"voc", "train", classes=names)
    assert sum(x["iscrowd"] for x in v["annotations"]) == 1 == sum(x["difficult"] for x in v["annotations"])
    assert len(read_voc(tmp_path/"voc", "train", classes=names, difficult="keep")[0]["annotations"]) == len(gt["annotations"])
    assert len(read_voc(tmp_path/"voc", "train", classes=names, difficult="drop")[0]["annotations"]) == len(gt["annotations"]) - 1
    yolo = YOLODataset.from_data_file(voc_to_yolo(tmp_path/"voc", tmp_path/"vy", "train", classes=names), "train")
    assert sum(map(len, yolo.labels)) == len(gt["annotations"]) - 1  # the difficult (crowd) object is not a YOLO row
    with pytest.raises(ValueError, match="not in classes"): read_voc(tmp_path/"voc", "train", classes=names[:2])

def test_validate_dataset_reports_a_broken_coco_copy(shapes, tmp_path):
    root = tmp_path/"coco"; shutil.copytree(shapes/"coco", root)
    data = json.loads((root/"annotations/instances_val.json").read_text())
    ims, an = data["images"], data["annotations"]
    os.remove(root/"images/val"/ims[0]["file_name"])
    (root/"images/val"/ims[1]["file_name"]).write_bytes(b"garbage")
    an[0]["bbox"] = [-20, 5, 30, 30]; an[1]["bbox"][3] = 0; an[2]["category_id"] = 99
    an.append(dict(an[3], id=10**6)); an.append(dict(an[4], id=10**6 + 1, image_id=424242))
    (root/"annotations/instances_val.json").write_text(json.dumps(data))
    r = validate_dataset(root/"annotations/instances_val.json")
    assert r.problems == dict(duplicate=1, missing_image=1, unreadable_image=1, unknown_image=1, unknown_class=1, out_of_range=1, zero_area=1)
    assert r.files("missing_image") == [str(root/"images/val"/ims[0]["file_name"])]
    with pytest.raises(DatasetError) as e: validate_dataset(root/"annotations/instances_val.json", strict=True)
    assert "category_id 99" in str(e.value) and e.value.report.problems == r.problems
    assert validate_dataset(COCODetection(shapes/"coco", "instances_val.json"), strict=True).ok

def test_validate_dataset_reports_a_broken_voc_copy(shapes, tmp_path):
    ann = shapes/"coco/annotations/instances_val.json"
    names = [c["name"] for c in sorted(read_coco(ann)[0]["categories"], key=lambda c: c["id"])]
    voc = coco_to_voc(ann, tmp_path/"VOCdevkit"/"VOC2012", "val", images="copy")
    xmls = sorted((voc/"Annotations").glob("*.xml"))
    t = xmls[0].read_text()
    xmls[0].write_text(t.replace("<name>", "<name>x", 1))                                # unknown class
    t = xmls[1].read_text(); i = t.index("<object>"); j = t.index("</object>") + len("</object>")
    xmls[1].write_text(t[:j] + t[i:j] + t[j:])                                          # duplicate object
    t = xmls[2].read_text(); xmls[2].write_text(t.replace(t[t.index("<xmax>"):t.index("</xmax>")], "<xmax>9999", 1))  # out of range
    t = xmls[3].read_text(); x1 = t[t.index("<xmin>") + 6:t.index("</xmin>")]
    xmls[3].write_text(t.replace(t[t.index("<xmax>"):t.index("</xmax>")], f"<xmax>{int(x1) - 1}", 1))  # zero area (xmax = xmin - 1)
    xmls[4].write_text("<annotation><object>")                                           # unreadable XML
    os.remove(voc/"JPEGImages"/f"{xmls[5].stem}.jpg")                                     # missing image
    r = validate_dataset(tmp_path/"VOCdevkit", classes=names, split="val")               # the VOCdevkit folder is found too
    assert r.problems == dict(corrupt=1, duplicate=1, missing_image=1, unknown_class=1, out_of_range=1, zero_area=1), r
    assert r.files("corrupt") == [str(xmls[4])] and r.files("unknown_class") == [str(xmls[0])]
    with pytest.raises(ValueError, match="cannot read VOC annotation"): read_voc(voc, "val", classes=names)
