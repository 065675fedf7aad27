"""Bad detection data (COCO JSON, YOLO txt, COCO instance masks): every broken input is one error naming
the file and the rule, or a counted `.report` item (kind -> count -> files); the training load and
`validate_dataset` report the same."""
import json, logging, os
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from workbench.data.coco import COCODetection, load_coco
from workbench.data.convert import read_coco, validate_dataset
from workbench.data.core import DatasetError, DatasetReport
from workbench.data.layouts import get_layout
from workbench.data.prompts import CocoInstances, PromptDataset
from workbench.data.yolo import YOLODataset, parse_data_file

H, W = 20, 30

def _png(path, size=(H, W), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)

def _image(i, name=None): return dict(id=i, file_name=name or f"im{i}.png", height=H, width=W)

def _ann(k, image_id=1, category_id=1, bbox=(2, 3, 10, 5), **kw):
    return {**dict(id=k, image_id=image_id, category_id=category_id, bbox=list(bbox), iscrowd=0), **kw}

def _good():
    "Two 20x30 images, one class, one box each."
    return dict(images=[_image(1), _image(2)], annotations=[_ann(1), _ann(2, image_id=2)],
                categories=[dict(id=1, name="a")])

def write_coco(root, data, split="train", images=True):
    "root/annotations/instances_<split>.json (text as is when `data` is a str) and its PNGs in root/images/<split>."
    (root/"annotations").mkdir(parents=True, exist_ok=True)
    f = root/"annotations"/f"instances_{split}.json"
    f.write_bytes(data if isinstance(data, bytes) else (data if isinstance(data, str) else json.dumps(data)).encode())
    if images and isinstance(data, dict):
        for k, im in enumerate(data.get("images") or []):
            if isinstance(im, dict) and isinstance(im.get("file_name"), str):
                _png(root/"images"/split/im["file_name"], seed=k)
    return f

def coco(root, **kw): return COCODetection(root, "instances_train.json", **kw)

# ---------------------------------------------------------------- COCO: structure -> one error naming the file and the key

def _mutate(fn):
    d = _good(); fn(d); return d

STRUCTURE = {
    "dup_image_id": (lambda d: d["images"].append(_image(1, "other.png")), "images[0] and images[2] share id 1"),
    "dup_file_name": (lambda d: d["images"].append(_image(3, "im1.png")), "images[0] and images[2] share file_name 'im1.png'"),
    "dup_category_id": (lambda d: d["categories"].append(dict(id=1, name="b")), "categories[0] and categories[1] share id 1"),
    "dup_category_name": (lambda d: d["categories"].append(dict(id=2, name="a")), "categories[0] and categories[1] share name 'a'"),
    "dup_annotation_id": (lambda d: d["annotations"].append(_ann(1)), "annotations[0] and annotations[2] share id 1"),
    "no_images": (lambda d: d.pop("images"), "have no 'images' list"),
    "no_annotations": (lambda d: d.pop("annotations"), "have no 'annotations' list"),
    "no_categories": (lambda d: d.pop("categories"), "have no 'categories' list"),
    "images_not_list": (lambda d: d.update(images={"1": "im1.png"}), "'images' is {'1': 'im1.png'}, not a list"),
    "image_id_str": (lambda d: d["images"][0].update(id="1"), "images[0].id='1' is not an integer"),
    "image_id_bool": (lambda d: d["images"][0].update(id=True), "images[0].id=True is not an integer"),
    "no_height": (lambda d: d["images"][1].pop("height"), "images[1] has no 'height'"),
    "zero_width": (lambda d: d["images"][0].update(width=0), "images[0].width=0 is not a positive integer"),
    "height_str": (lambda d: d["images"][0].update(height="20"), "images[0].height='20' is not a positive integer"),
    "no_file_name": (lambda d: d["images"][0].pop("file_name"), "images[0] has no 'file_name'"),
    "image_not_object": (lambda d: d["images"].append([3, "x.png"]), "images[2] is [3, 'x.png'], not an object"),
    "annotation_not_object": (lambda d: d["annotations"].append("box"), "annotations[2] is 'box', not an object"),
    "annotation_no_id": (lambda d: d["annotations"][1].pop("id"), "annotations[1] has no 'id'"),
    "category_no_name": (lambda d: d["categories"][0].pop("name"), "categories[0] has no 'name'"),
    "category_empty_name": (lambda d: d["categories"][0].update(name=" "), "categories[0].name=' ' is not a name"),
    "categories_empty": (lambda d: d.update(categories=[]), "'categories' is empty"),
}

@pytest.mark.parametrize("case", STRUCTURE)
def test_coco_structure_errors_name_file_and_key(tmp_path, case):
    fn, msg = STRUCTURE[case]
    f = write_coco(tmp_path, _mutate(fn))
    for load in (lambda: coco(tmp_path), lambda: validate_dataset(f), lambda: read_coco(f), lambda: load_coco(f),
                 lambda: CocoInstances(f, tmp_path/"images/train")):
        with pytest.raises(ValueError) as e: load()
        assert str(f) in str(e.value) and msg in str(e.value), str(e.value)

@pytest.mark.parametrize("text, msg", [("{not json", "cannot read COCO annotations"), ("", "cannot read COCO annotations"),
                                       (b"\xff\xfe{\x00", "cannot read COCO annotations"), ("[1, 2]", "are not a JSON object"),
                                       ("[" * 100000 + "]" * 100000, "cannot read COCO annotations")])
def test_coco_unreadable_json(tmp_path, text, msg):
    f = write_coco(tmp_path, text)
    with pytest.raises(ValueError, match=msg) as e: coco(tmp_path)
    assert str(f) in str(e.value)
    with pytest.raises(FileNotFoundError, match="instances_val.json"): COCODetection(tmp_path, "instances_val.json")

# ---------------------------------------------------------------- COCO: per annotation -> counted, one kind each

BAD = [  # (annotation fields, kind, kept, what the reason says)
    (dict(image_id=99), "unknown_image", False, "image_id 99 is not in 'images'"),
    (dict(image_id="1"), "unknown_image", False, "image_id '1' is not in 'images'"),
    (dict(image_id=None), "unknown_image", False, "image_id None"),
    (dict(category_id=7), "unknown_class", False, "category_id 7 is not in 'categories'"),
    (dict(category_id=[1]), "unknown_class", False, "category_id [1]"),
    (dict(bbox=[2, 3, 0, 5]), "zero_area", False, "has no area"),
    (dict(bbox=[2, 3, 10, -5]), "zero_area", False, "has no area"),
    (dict(bbox=[2, 3, float("nan"), 5]), "non_finite", False, "is not finite"),
    (dict(bbox=[2, 3, float("inf"), 5]), "non_finite", False, "is not finite"),
    (dict(bbox=[2, 3, 10**400, 5]), "non_finite", False, "is not finite"),
    (dict(bbox=[2, 3, "10", 5]), "bad_row", False, "is not 4 numbers"),
    (dict(bbox=[2, 3, 10]), "bad_row", False, "is not 4 numbers"),
    (dict(bbox=None), "bad_row", False, "bbox None is not 4 numbers"),
    (dict(bbox=[2, True, 10, 5]), "bad_row", False, "is not 4 numbers"),
    (dict(bbox={"x": 1}), "bad_row", False, "is not 4 numbers"),
    (dict(iscrowd="0"), "bad_row", False, "iscrowd '0' is not 0 or 1"),
    (dict(bbox=[40, 3, 10, 5]), "out_of_image", False, "lies wholly outside the 20x30 (HxW) image"),
    (dict(bbox=[-20, -9, 10, 5]), "out_of_image", False, "lies wholly outside"),
    (dict(bbox=[-20, 3, 25, 5]), "out_of_range", True, "has its centre outside the 20x30 (HxW) image: clipped to [0, 3, 5, 8]"),
    (dict(bbox=[2, 3, 10, 5], id=50), "duplicate", False, "same image, class and box as annotation 1"),
]

@pytest.mark.parametrize("fields, kind, kept, why", BAD, ids=[f"{k}-{i}" for i, (_, k, _, _) in enumerate(BAD)])
def test_coco_bad_annotation_is_counted(tmp_path, fields, kind, kept, why, caplog):
    d = _good(); fields = dict(fields); k = fields.pop("id", 9)
    a = _ann(k); a.update(fields); d["annotations"].append(a)
    f = write_coco(tmp_path, d)
    with caplog.at_level(logging.WARNING):
        ds = coco(tmp_path)
    r = ds.report
    assert r.problems == {kind: 1}, r
    assert [w for _, w in r.entries[kind]][0].startswith(f"annotation {k}: ") and why in r.entries[kind][0][1], r.entries[kind]
    where = str(f) if kind == "unknown_image" else str(tmp_path/"images/train/im1.png")
    assert r.files(kind) == [where]
    assert r.counts["boxes"] == 2 + kept and sum(map(len, ds.labels)) == 2 + kept
    assert sorted(ds.coco.anns) == [1, 2] + ([k] if kept else [])  # the ground truth served for evaluation
    assert len([x for x in caplog.records if x.levelno == logging.WARNING]) == 1  # one warning line at construction
    v = validate_dataset(f)  # the same rule, the same report
    assert v.problems == r.problems and v.entries[kind] == r.entries[kind]
    with pytest.raises(DatasetError, match=f"annotation {k}"): coco(tmp_path, strict=True)
    assert len(read_coco(f)[0]["annotations"]) == 2 + kept  # converters drop what training drops

@pytest.mark.parametrize("bbox, kind", [([25, 15, 10, 10], "clipped"), ([-3, -3, 10, 10], "clipped"), ([5, 5, 1, 12], "degenerate"),
                                        ([2, 3, 10, 5.5], None), ([0, 0, 30.5, 20.5], None)])
def test_coco_plain_counts_are_not_problems(tmp_path, bbox, kind, caplog):
    d = _good(); d["annotations"].append(_ann(9, bbox=bbox)); write_coco(tmp_path, d)
    with caplog.at_level(logging.WARNING):
        ds = coco(tmp_path)
    assert ds.report.ok and not caplog.records
    if kind:
        assert (ds.report.counts[kind], ds.report.files(kind)) == (1, [str(tmp_path/"images/train/im1.png")])
    boxes = ds[0][1]["boxes"]
    assert (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all() and (boxes >= 0).all()
    assert len(boxes) == (1 if kind == "degenerate" else 2)

def test_coco_many_problems_every_file_listed(tmp_path):
    d = _good(); d["annotations"] += [_ann(10 + k, category_id=5) for k in range(7)]
    write_coco(tmp_path, d)
    r = coco(tmp_path).report
    assert r.counts["unknown_class"] == 7 and len(r.entries["unknown_class"]) == 7
    assert [w.split(":")[0] for _, w in r.to_dict()["entries"]["unknown_class"]] == [f"annotation {10 + k}" for k in range(7)]

# ---------------------------------------------------------------- COCO: image files, skip_bad, empty splits

def test_coco_missing_images_error_or_skipped_with_full_list(tmp_path):
    d = _good(); d["images"] += [_image(3), _image(4)]; d["annotations"] += [_ann(3, image_id=3), _ann(4, image_id=4)]
    write_coco(tmp_path, d)
    for i in (2, 3): os.remove(tmp_path/f"images/train/im{i}.png")
    with pytest.raises(FileNotFoundError) as e: coco(tmp_path)
    assert "2 image(s) listed in" in str(e.value) and "im2.png" in str(e.value) and "im3.png" in str(e.value)
    ds = coco(tmp_path, skip_bad=True)
    assert ds.image_ids == [1, 4] and ds.report.files("missing_image") == [str(tmp_path/f"images/train/im{i}.png") for i in (2, 3)]
    assert len(ds.skipped) == 2 and ds.report.counts["boxes"] == 2
    assert validate_dataset(tmp_path/"annotations/instances_train.json").files("missing_image") == ds.report.files("missing_image")

def test_coco_skip_bad_unreadable_and_mis_sized(tmp_path):
    write_coco(tmp_path, _good())
    (tmp_path/"images/train/im1.png").write_bytes(b"not a png")
    _png(tmp_path/"images/train/im2.png", size=(H + 1, W))
    ds = coco(tmp_path)  # present: fails when loaded, naming the file
    with pytest.raises(ValueError, match="im1.png"): ds[0]
    with pytest.raises(ValueError, match="annotations say 20x30"): ds[1]
    with pytest.raises(ValueError, match="no usable box in its 0 image"): coco(tmp_path, skip_bad=True)
    r = coco(tmp_path, skip_bad=True, need_boxes=False).report
    assert r.problems == dict(unreadable_image=1, size_mismatch=1, no_labels=1)

@pytest.mark.parametrize("anns", [[], [_ann(1, iscrowd=1)], [_ann(1, category_id=3)], [_ann(1, bbox=[50, 50, 3, 3])]],
                         ids=["no_annotations", "crowd_only", "unknown_class_only", "outside_only"])
def test_coco_split_without_boxes_is_an_error(tmp_path, anns):
    d = _good(); d["annotations"] = anns; f = write_coco(tmp_path, d)
    with pytest.raises(ValueError) as e: coco(tmp_path)
    assert f"{f}: no usable box in its 2 image(s)" in str(e.value) and "mAP" in str(e.value)
    assert validate_dataset(f).files("no_labels") == [str(f)]  # validate reports it
    with pytest.raises(DatasetError, match="no usable box"): validate_dataset(f, strict=True)

def test_coco_no_images_is_an_error(tmp_path):
    d = _good(); d["images"], d["annotations"] = [], []
    write_coco(tmp_path, d)
    with pytest.raises(ValueError, match="no usable box in its 0 image"): coco(tmp_path)

# ---------------------------------------------------------------- YOLO

def write_yolo(root, rows, names=("zero", "one", "two"), labels="labels"):
    "images/train/<stem>.png (40x60) + <labels>/train/<stem>.txt (None: none), train.txt, data.names, data.data."
    for k, (stem, text) in enumerate(rows.items()):
        _png(root/f"images/train/{stem}.png", (40, 60), k)
        if text is not None:
            (root/labels/"train").mkdir(parents=True, exist_ok=True); (root/labels/f"train/{stem}.txt").write_text(text)
    (root/"train.txt").write_text("".join(f"images/train/{s}.png\n" for s in rows))
    (root/"data.names").write_text("".join(n + "\n" for n in names))
    (root/"data.data").write_text(f"classes={len(names)}\ntrain=train.txt\nvalid=train.txt\nnames=data.names\n")
    return root/"data.data"

@pytest.mark.parametrize("labels", ["label", "Labels", None])
def test_yolo_missing_or_misnamed_labels_folder(tmp_path, labels):
    rows = {"a": "0 .5 .5 .2 .2\n", "b": "1 .5 .5 .2 .2\n"}
    data = write_yolo(tmp_path, rows if labels else dict.fromkeys(rows), labels=labels or "labels")
    with pytest.raises(ValueError) as e: YOLODataset.from_data_file(data, "val", cache=False)
    msg = str(e.value)
    assert "train.txt: none of the 2 images has a label file" in msg and str(tmp_path/"labels/train/a.txt") in msg
    r = validate_dataset(data)
    assert r.problems == dict(missing_label=1) and r.files("missing_label") == [str(tmp_path/"labels/train")]

def test_yolo_all_labels_empty(tmp_path):
    data = write_yolo(tmp_path, {"a": "", "b": "\n"})
    with pytest.raises(ValueError, match="train.txt: no box in any of its 2 images"): YOLODataset.from_data_file(data)
    assert validate_dataset(data).problems == dict(no_labels=1)

ROWS = [  # (row, kind, reason)
    ("3 .5 .5 .2 .2", "unknown_class", "class 3 not in 0..2"), ("-1 .5 .5 .2 .2", "unknown_class", "class -1 not in 0..2"),
    ("1.5 .5 .5 .2 .2", "unknown_class", "class 1.5"), ("0 1.2 .5 .2 .2", "out_of_range", "not in [0, 1]"),
    ("0 .5 -.1 .2 .2", "out_of_range", "not in [0, 1]"), ("0 .5 .5 1.5 .2", "out_of_range", "not in [0, 1]"),
    ("0 nan .5 .2 .2", "non_finite", "is not finite"), ("0 .5 .5 inf .2", "non_finite", "is not finite"),
    ("nan .5 .5 .2 .2", "non_finite", "is not finite"), ("0 .5 .5 0 .2", "zero_area", "is not positive"),
    ("0 .5 .5 .2", "bad_row", "4 columns, expected 5"), ("0 .5 .5 .2 .2 .9", "bad_row", "6 columns"),
    ("0 .5 x .2 .2", "bad_row", "not numbers")]

@pytest.mark.parametrize("row, kind, why", ROWS)
def test_yolo_bad_row_leaves_its_file_out_and_agrees_with_validate(tmp_path, row, kind, why):
    data = write_yolo(tmp_path, {"ok": "0 .5 .5 .2 .2\n", "bad": f"1 .5 .5 .2 .2\n{row}\n"})
    ds = YOLODataset.from_data_file(data, cache=False)
    assert [f.stem for f in ds.image_files] == ["ok"] and ds.report.problems == dict(corrupt=1)
    (f, reason), = ds.report.entries["corrupt"]
    assert f == str(tmp_path/"labels/train/bad.txt") and reason.startswith("row 2: ") and why in reason
    assert ds.skipped[0].startswith(str(tmp_path/"images/train/bad.png"))
    r = validate_dataset(data, split="train")
    assert r.problems == {kind: 1} and r.files(kind) == [str(tmp_path/"labels/train/bad.txt")]
    with pytest.raises(DatasetError, match="bad.txt: row 2"): YOLODataset.from_data_file(data, strict=True)

def test_yolo_duplicates_rows_and_entries(tmp_path):
    data = write_yolo(tmp_path, {"a": "0 .5 .5 .2 .2\n0 .5 .5 .2 .2\n0 .5 .5 .2 .2\n1 .1 .1 .1 .1\n", "b": "2 .5 .5 .5 .5\n"})
    ds = YOLODataset.from_data_file(data)
    assert ds.labels[0].tolist() == [0, 1] and ds.report.counts["duplicate"] == 2  # two repeated rows, kept once
    (tmp_path/"twice.txt").write_text("images/train/a.png\nimages/train/b.png\nimages/train/a.png\n")
    ds = YOLODataset(tmp_path/"twice.txt", 3)
    assert len(ds) == 2 and ds.report.files("duplicate")[-1] == str(tmp_path/"images/train/a.png")
    assert validate_dataset(tmp_path/"twice.txt", classes=3).counts["duplicate"] == 3

def test_yolo_clipped_boxes_counted_not_problems(tmp_path):
    data = write_yolo(tmp_path, {"a": "0 .95 .5 .2 .2\n0 .5 .5 .2 .2\n"})
    ds = YOLODataset.from_data_file(data)
    assert ds.report.ok and ds.report.counts["clipped"] == 1 and ds.boxes[0][0].tolist() == [51, 16, 60, 24]
    assert validate_dataset(data, split="train").counts["clipped"] == 1

def test_yolo_unreadable_or_missing_images(tmp_path):
    data = write_yolo(tmp_path, {"a": "0 .5 .5 .2 .2\n", "b": "0 .5 .5 .2 .2\n", "c": "0 .5 .5 .2 .2\n"})
    (tmp_path/"images/train/b.png").write_bytes(b"garbage"); os.remove(tmp_path/"images/train/c.png")
    ds = YOLODataset.from_data_file(data)
    assert [f.stem for f in ds.image_files] == ["a"] and sorted(Path(f).stem for f in ds.report.files("corrupt")) == ["b", "c"]
    assert validate_dataset(data, split="train").problems == dict(unreadable_image=1, missing_image=1)
    for f in "abc": (tmp_path/f"images/train/{f}.png").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no usable image"): YOLODataset.from_data_file(data)

def test_yolo_skip_bad_decodes(tmp_path):
    write_yolo(tmp_path, {"a": "0 .5 .5 .2 .2\n"})
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path/"images/train/b.jpg")
    jpg = (tmp_path/"images/train/b.jpg").read_bytes(); (tmp_path/"images/train/b.jpg").write_bytes(jpg[:len(jpg) // 2])
    (tmp_path/"labels/train/b.txt").write_text("1 .5 .5 .2 .2\n")
    files = [tmp_path/"images/train/a.png", tmp_path/"images/train/b.jpg"]
    assert len(YOLODataset(files, 3)) == 2  # the header reads fine
    ds = YOLODataset(files, 3, skip_bad=True)
    assert len(ds) == 1 and ds.report.files("corrupt") == [str(files[1])] and "truncated" in ds.skipped[0]
    assert validate_dataset(tmp_path/"images/train", classes=3, decode=True).files("unreadable_image") == [str(files[1])]

def test_yolo_label_file_with_bom_and_crlf(tmp_path):
    data = write_yolo(tmp_path, {"a": None})
    (tmp_path/"labels/train").mkdir(parents=True); (tmp_path/"labels/train/a.txt").write_bytes("\ufeff0 .5 .5 .2 .2\r\n1 .2 .2 .1 .1\r\n".encode())
    ds = YOLODataset.from_data_file(data)
    assert ds.report.ok and ds.labels[0].tolist() == [0, 1]
    (tmp_path/"labels/train/a.txt").write_bytes(b"\xff\xfe0 .5")
    with pytest.raises(ValueError, match="no usable image"): YOLODataset.from_data_file(data)
    assert validate_dataset(data, split="train").problems == dict(unreadable_label=1, no_labels=1)

@pytest.mark.parametrize("data, names, msg", [
    ("classes=4\ntrain=train.txt\nnames=data.names\n", None, "classes=4 but names="),
    ("train=train.txt\nnames=data.names\n", "zero\none\nzero\n", "lists ['zero'] more than once"),
    ("train=train.txt\nnames=data.names\ntrain=train.txt\n", None, "bad.data:3: train is set again (first on line 1)"),
    ("train=train.txt\nnames=data.names\ncategory_ids=1,2\n", None, "category_ids has 2 distinct ids for 3 classes"),
    ("train=train.txt\nnames=data.names\ncategory_ids=1,1,2\n", None, "category_ids has 2 distinct ids for 3 classes"),
    ("train=train.txt\nnames=data.names\n", "", "holds no class names"),
    ("train=train.txt\nnames=nope.names\n", None, "names=nope.names not found"),
    ("names=data.names\n", None, "missing key 'train'"),
])
def test_yolo_inconsistent_data_file(tmp_path, data, names, msg):
    write_yolo(tmp_path, {"a": "0 .5 .5 .2 .2\n"})
    (tmp_path/"bad.data").write_text(data)
    if names is not None: (tmp_path/"data.names").write_text(names)
    with pytest.raises((ValueError, FileNotFoundError)) as e: YOLODataset.from_data_file(tmp_path/"bad.data")
    assert msg in str(e.value) and "bad.data" in str(e.value), str(e.value)
    with pytest.raises((ValueError, FileNotFoundError), match="bad.data"): validate_dataset(tmp_path/"bad.data")
    (tmp_path/"ok.data").write_text("train=train.txt\nnames=data.names\n")
    if names is None:
        with pytest.raises(ValueError, match="ok.data: missing key 'valid'"): YOLODataset.from_data_file(tmp_path/"ok.data", "val")

def test_yolo_unreadable_lists_and_class_names(tmp_path):
    write_yolo(tmp_path, {"a": "0 .5 .5 .2 .2\n"})
    (tmp_path/"bin.txt").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match="bin.txt: not UTF-8 text"): YOLODataset(tmp_path/"bin.txt", 3)
    (tmp_path/"dir.data").write_text("train=train.txt\nnames=images\n")
    with pytest.raises(ValueError, match="cannot read .*images"): parse_data_file(tmp_path/"dir.data")
    for classes in (0, [], ["a", "a"]):
        with pytest.raises(ValueError, match="expected distinct names"): YOLODataset(tmp_path/"train.txt", classes)

# ---------------------------------------------------------------- COCO instance masks (promptable segmentation)

def _instances(tmp_path, extra=()):
    "The two-image COCO file with a polygon per annotation (and `extra` ones), and its CocoInstances."
    d = _good()
    for a in d["annotations"]: a["segmentation"] = [[2, 3, 12, 3, 12, 8, 2, 8]]
    d["annotations"] += list(extra)
    f = write_coco(tmp_path, d)
    return f, CocoInstances(f, tmp_path/"images/train")

SEGS = [(dict(segmentation=None), "bad_row", "is neither an RLE nor polygons"),
        (dict(segmentation=[[1, 2, 3, 4]]), "bad_row", "3 points or more"),
        (dict(segmentation=[[1, 2, 3, "4", 5, 6]]), "bad_row", "not all numbers"),
        (dict(segmentation=[[1, 2, 3, float("nan"), 5, 6]]), "non_finite", "not finite"),
        (dict(segmentation=dict(size=[10, 10], counts=[100])), "bad_row", "RLE size [10, 10] is not the image's [20, 30]"),
        (dict(segmentation=dict(size=[H, W], counts=[5, 5])), "bad_row", "summing to H*W"),
        (dict(segmentation=[[1, 2, 3, 4, 5, 6]], image_id=9), "unknown_image", "image_id 9"),
        (dict(segmentation=[[1, 2, 3, 4, 5, 6]], category_id=9), "unknown_class", "category_id 9"),
        (dict(segmentation=[[1, 2, 3, 4, 5, 6]], iscrowd=2), "bad_row", "iscrowd 2 is not 0 or 1")]

@pytest.mark.parametrize("fields, kind, why", SEGS)
def test_instances_bad_annotation_counted(tmp_path, fields, kind, why):
    a = _ann(9); a.update(fields)
    f, src = _instances(tmp_path, [a])
    assert src.report.problems == {kind: 1} and why in src.report.entries[kind][0][1] and "annotation 9" in src.report.entries[kind][0][1]
    assert len(src) == 2 and [len(src[i]["masks"]) for i in range(2)] == [1, 1]
    assert PromptDataset(src, image_size=32).report is src.report

def test_instances_images_crowd_and_empty_split(tmp_path):
    rle = dict(size=[H, W], counts=[0, H * W])
    f, src = _instances(tmp_path, [_ann(9, iscrowd=1, segmentation=rle)])
    assert src.report.ok and src.report.counts["crowd"] == 1 and len(src._anns(1)) == 1
    assert len(CocoInstances(f, tmp_path/"images/train", include_crowd=True)._anns(1)) == 2
    os.remove(tmp_path/"images/train/im2.png")
    with pytest.raises(FileNotFoundError, match="im2.png"): CocoInstances(f, tmp_path/"images/train")
    src = CocoInstances(f, tmp_path/"images/train", skip_bad=True)
    assert src.ids == [1] and src.report.files("missing_image") == [str(tmp_path/"images/train/im2.png")]
    d = json.loads(f.read_text()); d["annotations"] = [_ann(1, category_id=4, segmentation=[[1, 2, 3, 4, 5, 6]])]
    f.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="no usable object in its 2 image.*unknown_class 1"): CocoInstances(f, tmp_path/"images/train")
    d = _mutate(lambda d: d["images"].append(_image(1, "x.png")))
    f.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="share id 1"): CocoInstances(f, tmp_path/"images/train")

# ---------------------------------------------------------------- the layouts

def test_layouts_open_datasets_with_reports_and_pass_skip_bad(tmp_path):
    root = tmp_path/"coco"
    d = _good()
    for a in d["annotations"]: a["segmentation"] = [[2, 3, 12, 3, 12, 8, 2, 8]]
    write_coco(root, d, "val")
    os.remove(root/"images/val/im2.png")
    det, pro = get_layout("detection", "coco"), get_layout("promptable_segmentation", "coco")
    fixed = dict(image_size=32, train=False)
    with pytest.raises(FileNotFoundError, match="im2.png"): det.open_split(root, "val", {"skip_bad": False})
    with pytest.raises(FileNotFoundError, match="im2.png"): pro.open_split(root, "val", {**fixed, "skip_bad": False})
    for ds in (det.open_split(root, "val", {"skip_bad": True}), pro.open_split(root, "val", {**fixed, "skip_bad": True})):
        assert isinstance(ds.report, DatasetReport) and ds.report.files("missing_image") == [str(root/"images/val/im2.png")]
        assert len(ds) == 1
    data = write_yolo(tmp_path/"yolo", {"a": "0 .5 .5 .2 .2\n", "b": "0 .5 .5 .2 .2\n"}, labels="label")
    with pytest.raises(ValueError, match="none of the 2 images has a label file"):
        get_layout("detection", "yolo").open_split(data.parent, "val", {"skip_bad": False})
    os.rename(tmp_path/"yolo/label", tmp_path/"yolo/labels")
    ds = get_layout("detection", "yolo").open_split(data.parent, "val", {"skip_bad": True})
    assert isinstance(ds.report, DatasetReport) and ds.report.ok and len(ds) == 2


# ---------------------------------------------------------------- EXIF orientation: sizes as a viewer shows the image

def _rotated_jpeg(path, upright_hw=(H, W)):
    "A JPEG stored sideways (W x H pixels) with EXIF orientation 6: a viewer shows it `upright_hw`."
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = np.random.default_rng(3).integers(0, 255, (upright_hw[1], upright_hw[0], 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(raw).save(path, exif=exif)

def test_coco_exif_rotated_image_uses_its_upright_size(tmp_path):
    data = _good()
    data["images"][0]["file_name"] = "im1.jpg"
    write_coco(tmp_path, data)
    _rotated_jpeg(tmp_path/"images"/"train"/"im1.jpg")
    for skip_bad in (False, True):  # the decode check of skip_bad agrees with the loader
        ds = coco(tmp_path, skip_bad=skip_bad)
        img, t = ds.load(0)
        assert tuple(img.shape[-2:]) == (H, W) and len(ds) == 2 and ds.report.ok

def test_yolo_exif_rotated_image_normalised_by_its_upright_size(tmp_path):
    data = write_yolo(tmp_path, {"a": "0 .5 .5 .2 .4\n", "b": "1 .5 .5 .2 .2\n"})
    (tmp_path/"images/train/a.png").unlink()
    _rotated_jpeg(tmp_path/"images/train/a.jpg", (40, 60))
    txt = (tmp_path/"train.txt").read_text().replace("a.png", "a.jpg")
    (tmp_path/"train.txt").write_text(txt)
    ds = YOLODataset.from_data_file(data, "train", cache=False)
    img, t = ds.load([str(f) for f in ds.image_files].index(str(tmp_path/"images/train/a.jpg")))
    assert tuple(img.shape[-2:]) == (40, 60)
    # box centre (.5, .5), size (.2, .4) of the 60 x 40 upright image: 12 x 16 px
    np.testing.assert_allclose(t["boxes"][0].tolist(), [24, 12, 36, 28], atol=1e-4)
