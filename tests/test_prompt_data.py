"MedSAM npy and prompt datasets: bad fixtures, exact outputs, boxes and points, the preprocessing round trip."
import json, logging
import numpy as np, pytest, torch
from workbench.data.medsam import (MedSAMDataset, MedSAMInstances, sam_preprocess, sam_postprocess, sam_postprocess_batch,
                                   resize_mask, resize_params, preprocess_config, mask_box)
from workbench.data.prompts import PromptDataset, CocoInstances, prompt_collate
from workbench.learner import SeededDataset

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    "Tensors of 256² only: intra-op threads add nothing but contention (seconds on a busy 2-core machine)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def write_pair(root, name, img=None, gt=None):
    for sub, a in (("imgs", img), ("gts", gt)):
        (root/sub).mkdir(parents=True, exist_ok=True)
        if a is not None: np.save(root/sub/name, a)

def scene(H, W, seed):
    "An image with values >= 1 (so after `div255` only the padding is black) and a gt with objects 1 and 3."
    rng = np.random.default_rng(seed)
    gt = np.zeros((H, W), np.uint8); gt[H // 8:H // 2, W // 6:W // 2] = 1; gt[H // 2 + 2:H - 3, W // 2:W - 4] = 3
    return rng.integers(1, 255, (H, W, 3), dtype=np.uint8), gt

@pytest.fixture
def npy(tmp_path):
    "Three good pairs: shrunk (300x200), enlarged (40x50) and square (256x256) at S = 256."
    for k, (H, W) in enumerate([(300, 200), (40, 50), (256, 256)]): write_pair(tmp_path, f"ok{k}.npy", *scene(H, W, k))
    return tmp_path

KEYS = {"image": ((3, 256, 256), torch.float32), "gt2D": ((1, 256, 256), torch.int64), "bboxes": ((1, 2, 2), torch.float32),
        "boxes_labels": ((1, 2), torch.int64), "new_size": ((2,), torch.int64), "original_size": ((2,), torch.int64),
        "boxes_xyxy": ((1, 4), torch.float32), "label_id": ((), torch.int64)}

def test_keys_shapes_dtypes(npy):
    for train in (True, False):
        it = MedSAMDataset(npy, train=train, seed=0)[0]
        assert {k: (tuple(v.shape), v.dtype) for k, v in it.items() if k != "image_name"} == KEYS
        assert it["image_name"] == "ok0.npy" and it["boxes_labels"].tolist() == [[2, 3]]
        assert it["original_size"].tolist() == [300, 200] and it["new_size"].tolist() == [256, 171]
        assert set(it["gt2D"].unique().tolist()) == {0, 1} and 0 <= it["image"].min() and it["image"].max() <= 1
    batch = next(iter(torch.utils.data.DataLoader(MedSAMDataset(npy, seed=0), batch_size=3)))
    assert batch["bboxes"].shape == (3, 1, 2, 2) and batch["image_name"] == ["ok0.npy", "ok1.npy", "ok2.npy"]

def test_unpaired_file(npy):
    write_pair(npy, "gt_only.npy", gt=scene(20, 20, 0)[1]); write_pair(npy, "img_only.npy", img=scene(20, 20, 0)[0])
    with pytest.raises(ValueError, match="2 unpaired.*gts/gt_only.npy has no image"): MedSAMDataset(npy)
    ds = MedSAMDataset(npy, skip_bad=True)
    assert (len(ds), ds.n_skipped, sorted(ds.skipped)) == (3, 2, ["gt_only.npy", "img_only.npy"])

def test_empty_gt_error_and_counted_skip(npy, caplog):
    write_pair(npy, "empty.npy", np.ones((30, 30, 3), np.uint8), np.zeros((30, 30), np.uint8))
    ds = MedSAMDataset(npy)
    with pytest.raises(ValueError, match=r"gts/empty.npy is empty"): ds[ds.files.names.index("empty.npy")]
    with caplog.at_level(logging.WARNING): ds = MedSAMDataset(npy, skip_bad=True)
    assert (len(ds), ds.n_skipped) == (3, 1) and "empty" in ds.skipped["empty.npy"]
    assert "skipped 1 of 4" in caplog.text
    assert all(ds[i]["gt2D"].sum() > 0 for i in range(len(ds)))  # never a silent full-image or empty mask

def test_object_lost_in_resize(tmp_path):
    gt = np.zeros((1024, 1024), np.uint8); gt[5, 5] = 1
    write_pair(tmp_path, "dot.npy", np.ones((1024, 1024), np.uint8), gt)
    with pytest.raises(ValueError, match="dot.npy: no object left after resizing"): MedSAMDataset(tmp_path)[0]
    assert MedSAMDataset(tmp_path, skip_bad=True, image_size=1024).n_skipped == 0

def test_label_ids_256_rejected(npy):
    gt = np.zeros((30, 30), np.uint16); gt[:10] = 256
    write_pair(npy, "wide.npy", np.ones((30, 30, 3), np.uint8), gt)
    ds = MedSAMDataset(npy)
    with pytest.raises(ValueError, match=r"wide.npy has label ids 0..256: the MedSAM layout stores uint8"): ds[ds.files.names.index("wide.npy")]
    assert "uint8" in MedSAMDataset(npy, skip_bad=True).skipped["wide.npy"]

@pytest.mark.parametrize("img,gt,msg", [
    (np.ones((30, 30, 4), np.uint8), np.ones((30, 30), np.uint8), r"image .*bad.npy has shape \(30, 30, 4\)"),
    (np.ones((2, 30, 30, 3), np.uint8), np.ones((30, 30), np.uint8), r"image .*bad.npy has shape"),
    (np.ones((30, 30, 3), np.uint8), np.ones((30, 30, 3), np.uint8), r"gt .*bad.npy has shape \(30, 30, 3\)"),
    (np.ones((30, 30, 3), np.uint8), np.ones((30, 30), np.float32), r"bad.npy has dtype float32"),
    (np.ones((30, 30, 3), np.uint8), np.ones((30, 20), np.uint8), r"size mismatch: image .*bad.npy"),
])
def test_wrong_dims(npy, img, gt, msg):
    write_pair(npy, "bad.npy", img, gt)
    ds = MedSAMDataset(npy)
    with pytest.raises(ValueError, match=msg): ds[ds.files.names.index("bad.npy")]
    with pytest.raises(ValueError, match=msg): MedSAMDataset(npy, train=False)   # the evaluation index checks at construction
    assert MedSAMDataset(npy, skip_bad=True).skipped.keys() == {"bad.npy"}

def test_unreadable_file(npy):
    (npy/"imgs/junk.npy").write_bytes(b"not an array"); np.save(npy/"gts/junk.npy", np.ones((4, 4), np.uint8))
    ds = MedSAMDataset(npy)
    with pytest.raises(ValueError, match=r"cannot read .*imgs/junk.npy"): ds[ds.files.names.index("junk.npy")]
    assert MedSAMDataset(npy, skip_bad=True).n_skipped == 1

def _tight(it): return torch.from_numpy(mask_box(it["gt2D"][0].numpy()))

def test_box_contains_mask_and_jitter_stays_in_image(npy):
    ds = MedSAMDataset(npy, bbox_shift=60, seed=0, normalize="div255")  # images >= 1: only the padding is 0
    jittered = 0
    for e in range(6):
        ds.set_epoch(e)
        for i in range(len(ds)):
            it = ds[i]; b, t, img = it["boxes_xyxy"][0], _tight(it), it["image"].sum(0)
            assert torch.equal(it["bboxes"][0].reshape(-1), b)
            assert (b[:2] <= t[:2]).all() and (b[2:] >= t[2:]).all()
            x0, y0, x1, y1 = b.long().tolist()
            assert img[y0, x0] > 0 and img[y1, x1] > 0 and img[y0, x1] > 0 and img[y1, x0] > 0   # corners inside the image
            jittered += int(not torch.equal(b, t))
    assert jittered > 0

def test_eval_has_no_jitter_no_flip_and_covers_every_object(npy):
    ds = MedSAMDataset(npy, bbox_shift=60, train=False)
    assert len(ds) == 6 and sorted(ds.items) == sorted((f"ok{k}.npy", l) for k in range(3) for l in (1, 3))
    for i in range(len(ds)):
        it = ds[i]; name, label = ds.items[i]
        assert torch.equal(it["boxes_xyxy"][0], _tight(it)) and int(it["label_id"]) == label
        img, gt = np.load(npy/"imgs"/name), np.load(npy/"gts"/name)
        assert torch.equal(it["image"], sam_preprocess(img)[0])                       # no flip
        back = sam_postprocess(it["gt2D"][0].float() * 2 - 1, it) > 0
        ref = gt == label; assert (back.numpy() & ref).sum() / (back.numpy() | ref).sum() > 0.95
        again = ds[i]; assert all(torch.equal(it[k], again[k]) for k in KEYS)

def test_determinism(npy):
    a, b = MedSAMDataset(npy, seed=3), MedSAMDataset(npy, seed=3)
    a.set_epoch(2); b.set_epoch(2)
    ia, ib = a[1], b[1]; assert all(torch.equal(ia[k], ib[k]) for k in KEYS)
    w1, w2 = SeededDataset(MedSAMDataset(npy), seed=5), SeededDataset(MedSAMDataset(npy), seed=5)  # seed=None under the loop's wrapper
    i1, i2 = w1[0], w2[0]; assert all(torch.equal(i1[k], i2[k]) for k in KEYS)
    draws = set()
    for e in range(1, 5): w1.set_epoch(e); it = w1[0]; draws.add(tuple(it["boxes_xyxy"].flatten().tolist()) + (int(it["label_id"]),))
    assert len(draws) > 1

@pytest.mark.parametrize("H,W", [(300, 400), (150, 110), (256, 256), (1000, 120)])
def test_preprocess_postprocess_round_trip(H, W):
    yy, xx = np.mgrid[:H, :W]
    m = (yy - H * 0.45) ** 2 / (H * 0.3) ** 2 + (xx - W * 0.55) ** 2 / (W * 0.3) ** 2 <= 1
    p = resize_params((H, W)); small = resize_mask(m, p)
    assert small.shape == (256, 256) and not small[p["new_size"][0]:].any() and not small[:, p["new_size"][1]:].any()
    back = (sam_postprocess(small.float() * 2 - 1, p) > 0).numpy()
    assert back.shape == (H, W) and (back & m).sum() / (back | m).sum() > 0.95
    x, q = sam_preprocess(np.zeros((H, W, 3), np.uint8) + m[..., None].astype(np.uint8) * 200, **preprocess_config())
    assert q == p and json.loads(json.dumps(preprocess_config())) == preprocess_config()   # a plain dict for the checkpoint
    batch = dict(original_size=torch.tensor([p["original_size"]]), new_size=torch.tensor([p["new_size"]]))
    assert sam_postprocess_batch(torch.zeros(1, 2, 3, 256, 256), batch)[0].shape == (2, 3, H, W)

def _check_prompts(it):
    img = it["image"].sum(0)
    for b, pts, lab, m in zip(it["boxes_xyxy"], it["points"], it["point_labels"], it["masks"].bool()):
        t = torch.from_numpy(mask_box(m.numpy()))
        assert (b[:2] <= t[:2]).all() and (b[2:] >= t[2:]).all()
        x, y = pts.long().T
        assert m[y[lab == 1], x[lab == 1]].all() and (lab == 1).any()         # positives inside the mask
        assert not m[y[lab == 0], x[lab == 0]].any()                          # negatives outside it
        assert (img[y[lab == 0], x[lab == 0]] > 0).all()                      # ... and inside the image
        assert (pts[lab == -1] == -1).all()

class Lifted:
    "Images >= 1 so that after `div255` only the padding is black."
    def __init__(self, src): self.src = src
    def __len__(self): return len(self.src)
    def __getitem__(self, i): return {**self.src[i], "image": np.maximum(self.src[i]["image"], 1)}

def test_prompts_from_coco_and_medsam(shapes):
    coco = CocoInstances.from_split(shapes/"coco", "train")
    for src in (coco, MedSAMInstances(shapes/"medsam/train")):
        ds = PromptDataset(Lifted(src), prompts_per_image=3, n_pos=2, n_neg=3, bbox_shift=10, seed=0, normalize="div255")
        for e in range(2):
            ds.set_epoch(e)
            for i in range(8):
                it = ds[i]; _check_prompts(it)
                assert (it["point_labels"] == torch.tensor([1, 1, 0, 0, 0])).all()
    it = ds[0]
    assert {k: (tuple(v.shape), v.dtype) for k, v in it.items() if isinstance(v, torch.Tensor)} == {
        "image": ((3, 256, 256), torch.float32), "boxes_xyxy": ((3, 4), torch.float32), "points": ((3, 5, 2), torch.float32),
        "point_labels": ((3, 5), torch.int64), "masks": ((3, 256, 256), torch.uint8), "valid": ((3,), torch.bool),
        "object_ids": ((3,), torch.int64), "original_size": ((2,), torch.int64), "new_size": ((2,), torch.int64)}
    r = coco[0]; gt = np.load(shapes/"medsam/train/gts"/r["name"].replace(".jpg", ".npy"))
    assert all(np.array_equal(m, gt == k) for k, m in enumerate(r["masks"], 1))

def test_prompts_eval_and_collate(shapes):
    src = CocoInstances.from_split(shapes/"coco", "val")
    ds = PromptDataset(src, prompts_per_image=None, n_pos=1, n_neg=1, bbox_shift=10, train=False)
    items = [ds[i] for i in range(len(ds))]
    for i, it in enumerate(items):
        _check_prompts(it)
        assert torch.equal(it["boxes_xyxy"], torch.stack([torch.from_numpy(mask_box(m.numpy())) for m in it["masks"]]))
        assert sorted(it["object_ids"].tolist()) == list(range(len(src[i]["masks"])))
        assert torch.equal(it["points"], ds[i]["points"])
        back = sam_postprocess(it["masks"].float() * 2 - 1, it) > 0
        for q, k in enumerate(it["object_ids"]):
            g = src[i]["masks"][k]; assert (back[q].numpy() & g).sum() / (back[q].numpy() | g).sum() > 0.9
    b = prompt_collate(items); Q = [len(it["valid"]) for it in items]
    assert b["points"].shape == (len(items), max(Q), 2, 2) and b["valid"].sum() == sum(Q)
    assert (b["point_labels"][~b["valid"]] == -1).all() and (b["masks"][~b["valid"]] == 0).all()

def test_prompt_args_checked(shapes):
    with pytest.raises(ValueError, match="prompts_per_image=0"): PromptDataset(MedSAMInstances(shapes/"medsam/val"), prompts_per_image=0)
    with pytest.raises(FileNotFoundError, match="instances_test.json"): CocoInstances.from_split(shapes/"coco", "test")
