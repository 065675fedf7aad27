"Detection pipeline: boxes stay inside the image and paired with their labels through mosaic/affine/mixup, letterbox round trip, collate, NMS, coco_eval."
import copy, json, math, random
import numpy as np, pytest, torch
from torchvision import tv_tensors
from torchvision.ops import nms
from workbench.detection.transforms import (MosaicDataset, DetEvalTransform, DetEvalDataset, DetTrainTransform, MultiScale,
    detection_collate, flatten_targets, letterbox, letterbox_boxes, unletterbox_boxes, resize_batch, det_worker_init)
from workbench.detection.postprocess import (postprocess, to_coco_results, coco_eval, evaluate_coco, per_class_ap, NMS_PRESETS,
    pack_detections, unpack_detections, pack_infos, unpack_infos, STAT_NAMES)

COLOURS = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [250, 200, 40], [150, 30, 180]])  # class -> RGB
BG = np.array([40, 40, 40])

class ColourBoxes(torch.utils.data.Dataset):
    "Images of known boxes: class c is a rectangle filled with COLOURS[c] on a flat background, at most one per quadrant (no overlap)."
    def __init__(self, n:int=16, seed:int=0, empty_every:int=0):
        rng, self.items = np.random.default_rng(seed), []
        for i in range(n):
            h, w = (int(v) for v in rng.integers(60, 200, 2))
            boxes = []
            if not (empty_every and i % empty_every == 0):
                for qy in range(2):
                    for qx in range(2):
                        if rng.random() < 0.25: continue
                        bw, bh = rng.integers(12, w // 2 - 2), rng.integers(12, h // 2 - 2)
                        x0, y0 = qx * (w // 2) + rng.integers(0, w // 2 - bw), qy * (h // 2) + rng.integers(0, h // 2 - bh)
                        boxes.append([x0, y0, x0 + bw, y0 + bh])
            self.items.append(((h, w), np.array(boxes, np.float32).reshape(-1, 4), rng.integers(0, len(COLOURS), len(boxes))))
    def __len__(self): return len(self.items)
    def __getitem__(self, i):
        (h, w), boxes, labels = self.items[i]
        img = np.broadcast_to(BG.astype(np.uint8), (h, w, 3)).copy()
        for (x1, y1, x2, y2), c in zip(boxes.astype(int), labels): img[y1:y2, x1:x2] = COLOURS[c]
        return tv_tensors.Image(torch.from_numpy(img).permute(2, 0, 1)), {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(h, w)),
            "labels": torch.as_tensor(labels, dtype=torch.int64), "image_id": i + 1, "orig_size": (h, w)}

def assert_inside(image, target, max_labels=120):
    h, w = image.shape[-2:]
    b = target["boxes"].as_subclass(torch.Tensor)
    assert image.dtype == torch.uint8 and len(b) == len(target["labels"]) <= max_labels
    assert tuple(target["boxes"].canvas_size) == (h, w)
    assert (b[:, :2] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all(), b
    assert ((b[:, 2:] - b[:, :2]) > 1).all(), b

def centre_colours(image, target, min_side=10, skip_border=False):
    "RGB under the centre of every box at least `min_side` px wide and tall (optionally not touching the border), with its label."
    img, b = image.permute(1, 2, 0).numpy().astype(int), target["boxes"].as_subclass(torch.Tensor).numpy()
    h, w = img.shape[:2]
    ok = (b[:, 2:] - b[:, :2] >= min_side).all(1)
    if skip_border: ok &= (b[:, 0] > 0.5) & (b[:, 1] > 0.5) & (b[:, 2] < w - 0.5) & (b[:, 3] < h - 0.5)
    cx, cy = ((b[ok, 0] + b[ok, 2]) / 2).astype(int), ((b[ok, 1] + b[ok, 3]) / 2).astype(int)
    return img[cy, cx], target["labels"].numpy()[ok]

@pytest.fixture(scope="module")
def colour_ds(): return ColourBoxes(16, seed=0, empty_every=5)

@pytest.mark.parametrize("size", [(64, 64), (96, 160), 128])
def test_no_box_leaves_the_image(colour_ds, size):
    ds = MosaicDataset(colour_ds, size=size, degrees=30, translate=0.3, shear=10, mosaic_scale=(0.1, 3), mixup_prob=0.7, mosaic_prob=0.8)
    for seed in range(12):
        random.seed(seed); np.random.seed(seed)
        for i in range(len(ds)):
            image, target = ds[i]
            assert tuple(image.shape[-2:]) == ((size, size) if isinstance(size, int) else size)
            assert_inside(image, target)

@pytest.mark.parametrize("degrees,shear", [(0, 0), (10, 2)])
def test_labels_stay_paired_mosaic_affine_flip(colour_ds, degrees, shear):
    "HSV off: the colour under every box centre is its class colour, through mosaic, affine and flip."
    # with rotation/shear a box clipped at the border encloses a clipped parallelogram whose centre may be background: skip those
    ds = MosaicDataset(colour_ds, size=128, enable_mixup=False, hsv_prob=0.0, degrees=degrees, shear=shear)
    checked = 0
    for seed in range(10):
        random.seed(seed); np.random.seed(seed)
        for i in range(len(ds)):
            cols, labels = centre_colours(*ds[i], skip_border=degrees > 0)
            for col, c in zip(cols, labels): assert np.abs(col - COLOURS[c]).max() <= 10, (col, c)
            checked += len(labels)
    assert checked > 150

def test_labels_stay_paired_mixup(colour_ds):
    "With MixUp every box centre is its class colour, or 0.5·(its class colour) + 0.5·(what the other image has there)."
    ds = MosaicDataset(colour_ds, size=128, mixup_prob=1.0, hsv_prob=0.0, degrees=0, shear=0)
    others = np.concatenate([COLOURS, BG[None], [[114] * 3], [[0] * 3]])  # a class, the background, padding, MixUp's zero canvas
    exact = []
    for seed in range(10):
        random.seed(seed); np.random.seed(seed)
        for i in range(len(ds)):
            cols, labels = centre_colours(*ds[i])
            for col, c in zip(cols, labels):
                plain = np.abs(col - COLOURS[c]).max() <= 10  # no MixUp box kept: nothing blended
                mixed = np.abs(col[None] - (COLOURS[c] + others) / 2).max(1).min() <= 10
                other = 2 * col - COLOURS[c]  # what the other image must have had there: a valid colour
                assert plain or ((other >= -20) & (other <= 275)).all(), (col, c)
                exact.append(plain or mixed)  # not exact only where the centre hits an edge of the resized other image
    assert len(exact) > 300 and np.mean(exact) > 0.97

def test_mosaic_phase_follows_epoch_and_resume(colour_ds):
    ds = MosaicDataset(colour_ds, size=64, no_aug_from=8)
    ds.set_epoch(7); assert ds.mosaic and not ds.no_aug
    ds.set_epoch(8); assert not ds.mosaic and ds.no_aug
    fresh = MosaicDataset(colour_ds, size=64, no_aug_from=8); fresh.set_epoch(9); assert not fresh.mosaic  # resume past the switch
    manual = MosaicDataset(colour_ds, size=64); manual.set_epoch(3); manual.close_mosaic()
    resumed = MosaicDataset(colour_ds, size=64); resumed.load_state_dict(json.loads(json.dumps(manual.state_dict())))
    for e in (3, 4, 100): resumed.set_epoch(e); assert not resumed.mosaic
    resumed.set_epoch(2); assert resumed.mosaic  # before the switch it was on
    # no-aug samples are plain letterboxed images: boxes are the originals scaled and shifted
    random.seed(0); np.random.seed(0)
    ds = MosaicDataset(colour_ds, size=96, no_aug_from=0, hsv_prob=0, flip_prob=0)
    for i in range(4):
        image, t = ds[i]; orig = colour_ds[i][1]
        b = unletterbox_boxes(t["boxes"].as_subclass(torch.Tensor), t["scale"], t["pad"], t["orig_size"])
        torch.testing.assert_close(b, orig["boxes"].as_subclass(torch.Tensor), atol=1e-3, rtol=0)

def test_same_seed_same_sample(colour_ds):
    ds = MosaicDataset(colour_ds, size=96)
    def draw(seed): random.seed(seed); np.random.seed(seed); return ds[3]
    (a, ta), (b, tb) = draw(5), draw(5)
    assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])

def test_max_labels_and_empty_images(colour_ds):
    random.seed(0); np.random.seed(0)
    tfm = DetTrainTransform(64, max_labels=2)
    for i in range(len(colour_ds)):
        image, t = tfm(*colour_ds[i]); assert_inside(image, t, max_labels=2)
    image, t = DetTrainTransform(64)(*colour_ds[0])  # image 0 has no objects
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)

@pytest.mark.parametrize("center", [False, True])
def test_letterbox_undo_round_trip(center):
    rng = np.random.default_rng(0)
    for _ in range(20):
        h0, w0 = (int(v) for v in rng.integers(20, 700, 2))
        img = rng.integers(0, 255, (h0, w0, 3), dtype=np.uint8)
        xy = rng.uniform(0, [w0, h0], (10, 2)); wh = rng.uniform(1, 50, (10, 2))
        boxes = np.clip(np.concatenate([xy, xy + wh], 1), 0, [w0, h0, w0, h0]).astype(np.float32)
        out, r, pad = letterbox(img, (320, 416), center=center)
        assert out.shape == (320, 416, 3)
        lb = letterbox_boxes(boxes, r, pad)
        assert (lb[:, [0, 2]] <= 416 + 1e-3).all() and (lb[:, [1, 3]] <= 320 + 1e-3).all()
        np.testing.assert_allclose(unletterbox_boxes(lb, r, pad, (h0, w0)), boxes, atol=1e-3)
        if center: assert abs((416 - round(w0 * r)) / 2 - pad[0]) <= 0.5 and abs((320 - round(h0 * r)) / 2 - pad[1]) <= 0.5
        else: assert pad == (0, 0)

def test_collate_padding(colour_ds):
    batch = [DetEvalTransform(96)(*colour_ds[i]) for i in range(5)]
    images, targets, infos = detection_collate(batch, max_labels=3)
    assert images.shape == (5, 3, 96, 96) and images.dtype == torch.float32 and images.max() <= 255
    assert targets.shape == (5, 3, 5)
    for i, (im, t) in enumerate(batch):
        n = min(len(t["boxes"]), 3)
        assert (targets[i, n:] == 0).all() and (targets[i, :n, 3:] > 0).all()
        assert torch.equal(targets[i, :n, 0], t["labels"][:n].float())
        assert infos[i]["image_id"] == i + 1 and infos[i]["orig_size"] == colour_ds.items[i][0]
    assert len(flatten_targets(targets)) == sum(min(len(t["boxes"]), 3) for _, t in batch)
    with pytest.raises(ValueError, match="one image size per batch"):
        detection_collate([batch[0], DetEvalTransform(64)(*colour_ds[1])])

def test_dataloader_workers(colour_ds):
    dl = torch.utils.data.DataLoader(MosaicDataset(colour_ds, size=64), batch_size=4, num_workers=2, worker_init_fn=det_worker_init,
                                     collate_fn=detection_collate)
    images, targets, infos = next(iter(dl))
    assert images.shape == (4, 3, 64, 64) and targets.shape == (4, 120, 5) and len(infos) == 4

def test_multiscale_and_resize():
    ms = MultiScale.yolox(640, every=10, seed=3)
    sizes = {ms.size_at(i) for i in range(0, 2000)}
    assert all(h % 32 == 0 and 480 <= h <= 800 and h == w for h, w in sizes) and len(sizes) > 5
    assert ms.size_at(0) == (640, 640) and ms.size_at(25) == MultiScale.yolox(640, every=10, seed=3).size_at(29)
    v3 = MultiScale.yolov3(512)
    assert (v3.sizes[0], v3.sizes[-1]) == (320, 736)
    imgs, tg = torch.rand(2, 3, 64, 96), torch.tensor([[[1, 48, 32, 10, 20]], [[0, 0, 0, 0, 0]]], dtype=torch.float32)
    r_imgs, r_tg = resize_batch(imgs, tg, (128, 96))
    assert r_imgs.shape == (2, 3, 128, 96)
    assert torch.equal(r_tg[0, 0], torch.tensor([1., 48, 64, 10, 40])) and (r_tg[1] == 0).all()

def test_rect_eval_batches(colour_ds):
    eds = DetEvalDataset(colour_ds, 160, center=True, rect_batch=4)
    seen = []
    for k in range(0, len(eds), 4):
        images, targets, infos = detection_collate([eds[i] for i in range(k, min(k + 4, len(eds)))])
        assert images.shape[-1] % 32 == 0 and images.shape[-2] % 32 == 0 and max(images.shape[-2:]) == 160
        seen += [i["image_id"] for i in infos]
    assert sorted(seen) == list(range(1, len(colour_ds) + 1))

def _preds(rows, C=3):
    p = torch.zeros(1, len(rows), 5 + C)
    for j, (x1, y1, x2, y2, obj, c, pc) in enumerate(rows):
        p[0, j, :5] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, obj]); p[0, j, 5 + c] = pc
    return p

def test_postprocess_class_aware_nms():
    p = _preds([(0, 0, 10, 10, 0.9, 0, 1.0), (1, 0, 11, 10, 0.8, 1, 1.0), (1, 1, 11, 11, 0.7, 0, 1.0)])
    d = postprocess(p, conf_thre=0.01, nms_thre=0.5)[0]
    assert d[:, 5].tolist() == [0, 1] and torch.allclose(d[:, 4], torch.tensor([0.9, 0.8]))
    assert len(postprocess(p, conf_thre=0.01, nms_thre=0.5, class_agnostic=True)[0]) == 1
    # random data: equals torchvision NMS run class by class
    g = torch.Generator().manual_seed(0)
    xy, wh = torch.rand(2, 300, 2, generator=g) * 200, torch.rand(2, 300, 2, generator=g) * 60 + 5
    preds = torch.cat([xy + wh / 2, wh, torch.rand(2, 300, 1, generator=g), torch.rand(2, 300, 4, generator=g)], -1)
    for i, d in enumerate(postprocess(preds, conf_thre=0.05, nms_thre=0.45)):
        boxes = torch.cat([xy[i], xy[i] + wh[i]], -1); conf, cls = preds[i, :, 5:].max(-1); score = preds[i, :, 4] * conf
        ref = []
        for c in range(4):
            m = (cls == c) & (score >= 0.05)
            k = nms(boxes[m], score[m], 0.45); ref += [(s, c) for s in score[m][k].tolist()]
        got = sorted(zip(d[:, 4].tolist(), d[:, 5].long().tolist()), reverse=True)
        exp = sorted(ref, reverse=True)  # (score, class): classes exactly, scores to float tolerance
        assert [c for _, c in got] == [c for _, c in exp]
        assert [s for s, _ in got] == pytest.approx([s for s, _ in exp])
    assert all(len(d) <= 100 for d in postprocess(preds, **NMS_PRESETS["yolov3_eval"]))

@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    from workbench.data.synthetic import generate
    root = generate(tmp_path_factory.mktemp("det")/"shapes", n_train=2, n_val=20, seed=4, formats="coco")
    path = root/"coco"/"annotations"/"instances_val.json"
    return path, json.loads(path.read_text())

def _gt_results(gt, score=1.0):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": score} for a in gt["annotations"]]

def test_coco_eval_ground_truth_is_perfect(shapes_val, tmp_path):
    path, gt = shapes_val
    s = coco_eval(path, _gt_results(gt), out_dir=tmp_path)
    for k in ("AP", "AP50", "AP75", "APs", "APm", "AR10", "AR100", "ARs", "ARm"): assert s[k] == 1.0, (k, s[k])
    assert math.isnan(s["APl"]) and math.isnan(s["ARl"])  # no object over 96² px: undefined, not 0
    assert all(v["AP"] == 1.0 for v in s["per_class"].values()) and "Average Precision" in s["summary"]
    assert sum(v["n_gt"] for v in s["per_class"].values()) == len(gt["annotations"])
    assert len(json.loads((tmp_path/"predictions.json").read_text())) == len(gt["annotations"])

def test_coco_eval_empty_is_zero(shapes_val):
    path, _ = shapes_val
    s = coco_eval(path, [])
    for k in STAT_NAMES: assert s[k] == 0.0 or (k in ("APl", "ARl") and math.isnan(s[k])), (k, s[k])

def test_coco_eval_duplicates_do_not_count(shapes_val):
    path, gt = shapes_val
    rng = np.random.default_rng(0)
    noisy = [{**r, "bbox": [v + float(rng.normal(0, 2)) for v in r["bbox"]], "score": float(rng.uniform())} for r in _gt_results(gt)]
    base = coco_eval(path, noisy)
    # two processes, the second repeating the first image's results (as padding of an uneven last batch would)
    first = [r for r in noisy if r["image_id"] == noisy[0]["image_id"]]
    gathered = noisy + copy.deepcopy(first) + copy.deepcopy(noisy[:5])
    assert {k: base[k] for k in STAT_NAMES} == pytest.approx({k: coco_eval(path, gathered)[k] for k in STAT_NAMES}, nan_ok=True)
    assert base["AP"] < 1.0

def test_coco_eval_id_errors(shapes_val):
    path, gt = shapes_val
    r = _gt_results(gt)[:3]
    with pytest.raises(ValueError, match="contiguous labels"): coco_eval(path, [{**x, "category_id": 1} for x in r])
    with pytest.raises(ValueError, match="image ids"): coco_eval(path, [{**r[0], "image_id": -5}])

def test_gather_packing_and_results(shapes_val):
    path, gt = shapes_val
    dets = [torch.tensor([[10., 20., 30., 60., 0.9, 1.]]), torch.zeros(0, 6)]
    infos = [{"image_id": gt["images"][0]["id"], "orig_size": (100, 120), "scale": 0.5, "pad": (3.0, 0.0)}, {"image_id": gt["images"][1]["id"], "orig_size": (90, 90), "scale": 1.0, "pad": (0.0, 0.0)}]
    un = unpack_detections(pack_detections(dets, 8))
    assert torch.equal(un[0], dets[0]) and len(un[1]) == 0 and unpack_infos(pack_infos(infos)) == infos
    res = to_coco_results(dets, infos, cat_ids=[3, 7, 11, 20, 42])
    assert res == [{"image_id": infos[0]["image_id"], "category_id": 7, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.9}]
    E = evaluate_coco(path, res)
    assert set(per_class_ap(E)) == {c["name"] for c in gt["categories"]}
