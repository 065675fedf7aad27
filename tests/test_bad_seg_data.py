"""Bad segmentation data: images and masks as a viewer shows them, deep images, bad mask values, splits
with no labelled pixel, MedSAM npy and LabelMe integrity, foreign weights. Every case either fails with
one line naming the file (or split) and the rule, or is a counted item of the dataset's `.report`."""
import json, logging, re
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image, ExifTags
import workbench.data.core as core
from workbench.data.core import read_image, image_size, BadFile
from workbench.data.voc import read_mask, VOCSegmentation
from workbench.data.seg_layouts import FolderSegmentation
from workbench.data.labelme import LabelMeSegmentation
from workbench.data.medsam import MedSAMDataset, MedSAMInstances

pytestmark = pytest.mark.usefixtures("one_thread")

def exif_save(arr, path, orientation=6, **kw):
    "Save `arr` with an EXIF orientation tag (6: rotate 90° clockwise to show)."
    im = Image.fromarray(arr); exif = im.getexif(); exif[ExifTags.Base.Orientation] = orientation
    im.save(path, exif=exif, **kw)

def voc(root, masks, images=None, split="train", size=(12, 16)):
    "A VOC folder: `masks` {id: uint8 array or None}, images random RGB unless given."
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"): (root/d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, m in masks.items():
        img = (images or {}).get(i)
        if img is None: Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root/"JPEGImages"/f"{i}.jpg")
        if m is not None: Image.fromarray(m).save(root/"SegmentationClass"/f"{i}.png")
    (root/"ImageSets/Segmentation"/f"{split}.txt").write_text("\n".join(masks) + "\n")
    return root

@pytest.fixture
def fresh_notes(monkeypatch):
    "Forget which depth rules were logged, so a test sees the one-per-process warning."
    monkeypatch.setattr(core, "_noted", set())

# -- images as a viewer shows them ------------------------------------------------------------------

@pytest.mark.parametrize("orientation,expect", [(1, (2, 3)), (3, (2, 3)), (6, (3, 2)), (8, (3, 2))])
def test_exif_orientation_applied(tmp_path, orientation, expect):
    x = np.zeros((2, 3, 3), np.uint8); x[0, 0] = 255
    exif_save(x, tmp_path/"a.png", orientation)
    img = read_image(tmp_path/"a.png")
    assert tuple(img.shape[1:]) == expect == image_size(tmp_path/"a.png")
    where = {1: (0, 0), 3: (1, 2), 6: (0, 1), 8: (2, 0)}[orientation]  # the marked corner, upright
    assert img[0][where] == 255 and int(img[0].sum()) == 255

def test_exif_rotated_jpeg_lines_up_with_its_upright_mask(tmp_path):
    stored = np.zeros((16, 12, 3), np.uint8); stored[:4, :6] = 255  # stored 16x12, white top-left
    upright = np.zeros((12, 16), np.uint8); upright[:6, -4:] = 1  # the white block, seen upright
    root = voc(tmp_path/"VOC", {"a": upright}, images={"a": stored})
    exif_save(stored, root/"JPEGImages/a.jpg", 6, quality=100)
    img, mask = VOCSegmentation(root, classes=("bg", "block"))[0]
    assert img.shape == (3, 12, 16) and mask.shape == (12, 16)
    assert (img[0][mask == 1] > 200).all() and (img[0][mask == 0] < 60).all()
    Image.fromarray(stored).save(root/"JPEGImages/a.jpg", quality=100)  # the same pixels, no EXIF
    with pytest.raises(ValueError, match=r"size mismatch: image .*a.jpg is \(16, 12\)"):
        VOCSegmentation(root, classes=("bg", "block"))[0]

def test_exif_mask_is_rotated_too(tmp_path):
    m = np.zeros((2, 3), np.uint8); m[0, 0] = 1
    exif_save(m, tmp_path/"m.png", 6)
    assert read_mask(tmp_path/"m.png", 2).tolist() == [[0, 1], [0, 0], [0, 0]]

# -- deep images --------------------------------------------------------------------------------------

G16 = np.array([[0, 128, 129, 257, 1000, 40000, 65535]], np.uint16)

@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_gray_scaled_by_257_not_white(tmp_path, ext, fresh_notes):
    Image.fromarray(G16).save(tmp_path/f"g.{ext}")
    assert Image.open(tmp_path/f"g.{ext}").mode == "I;16"
    img = read_image(tmp_path/f"g.{ext}")
    assert img.dtype == torch.uint8 and img[:, 0].tolist() == [np.rint(G16[0] / 257).tolist()] * 3
    assert img.float().mean() < 200  # what PIL's convert("RGB") alone gives: [0, 128, 129, 255, 255, ...]

def test_16bit_big_endian_and_32bit_int(tmp_path, fresh_notes):
    Image.fromarray(G16.astype(">u2")).save(tmp_path/"b.tif")
    assert Image.open(tmp_path/"b.tif").mode == "I;16B"
    assert read_image(tmp_path/"b.tif")[0, 0].tolist() == np.rint(G16[0] / 257).tolist()
    Image.fromarray(G16.astype(np.int32)).save(tmp_path/"i.tif")
    assert Image.open(tmp_path/"i.tif").mode == "I"
    assert read_image(tmp_path/"i.tif")[0, 0].tolist() == np.rint(G16[0] / 257).tolist()
    for name, a in (("big.tif", [[0, 70000]]), ("neg.tif", [[-5, 10]])):
        Image.fromarray(np.array(a, np.int32)).save(tmp_path/name)
        with pytest.raises(ValueError, match=rf"{name} has values {a[0][0]}..{a[0][1]}: integer images are read as 16-bit"):
            read_image(tmp_path/name)

@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_rgb_full_precision(tmp_path, ext, fresh_notes):
    import cv2
    rgb = np.stack([G16[0], G16[0][::-1], G16[0] // 3], -1)[None]  # [1, 7, 3]
    cv2.imwrite(str(tmp_path/f"c.{ext}"), rgb[..., ::-1])  # OpenCV writes BGR
    assert Image.open(tmp_path/f"c.{ext}").mode == "RGB"  # PIL alone keeps the high byte
    got = read_image(tmp_path/f"c.{ext}").permute(1, 2, 0).numpy()
    assert (got == np.rint(rgb / 257)).all()

def write_png16(path, a, color_type):
    "A 16-bit PNG by hand (PIL cannot write 16-bit colour): `a` uint16 [H, W, C]; color_type 4 = gray+alpha, 6 = RGBA."
    import struct, zlib
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in a)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 16, color_type, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

@pytest.mark.parametrize("color_type,channels", [(4, 2), (6, 4)])
def test_16bit_gray_alpha_and_rgba_png(tmp_path, color_type, channels, fresh_notes):
    a = np.full((1, 7, channels), 65535, np.uint16); a[0, :, 0] = G16[0]
    if channels == 4: a[0, :, 1], a[0, :, 2] = G16[0][::-1], 300
    write_png16(tmp_path/"a.png", a, color_type)
    got = read_image(tmp_path/"a.png")[:, 0].numpy()
    want = np.rint(a[0, :, [0, 0, 0] if channels == 2 else [0, 1, 2]] / 257)
    assert (got == want).all()

def test_16bit_rgb_exif_rotated(tmp_path, fresh_notes):
    import cv2
    from PIL import ImageOps
    a = np.zeros((2, 3, 3), np.uint16); a[0, 0] = 65535
    cv2.imwrite(str(tmp_path/"c.png"), a)
    im = Image.open(tmp_path/"c.png"); exif = im.getexif(); exif[ExifTags.Base.Orientation] = 6
    im.save(tmp_path/"c8.png", exif=exif)  # an 8-bit copy carrying the tag, to borrow its eXIf chunk
    raw = (tmp_path/"c.png").read_bytes(); chunk = (tmp_path/"c8.png").read_bytes()
    start = chunk.index(b"eXIf") - 4; end = start + 12 + int.from_bytes(chunk[start:start + 4], "big")
    (tmp_path/"r.png").write_bytes(raw[:33] + chunk[start:end] + raw[33:])  # after IHDR
    assert Image.open(tmp_path/"r.png").getexif().get(274) == 6
    assert read_image(tmp_path/"r.png")[0].tolist() == [[0, 255], [0, 0], [0, 0]]

def test_depth_rule_logged_once_naming_first_file(tmp_path, fresh_notes, caplog):
    for n in ("first", "second"): Image.fromarray(G16).save(tmp_path/f"{n}.png")
    with caplog.at_level(logging.WARNING, logger="workbench.data.core"):
        read_image(tmp_path/"first.png"); read_image(tmp_path/"second.png")
    lines = [r.getMessage() for r in caplog.records if "16-bit" in r.getMessage()]
    assert len(lines) == 1 and "first.png" in lines[0] and "value / 257, rounded" in lines[0]

def test_float_tiff(tmp_path, fresh_notes, caplog):
    Image.fromarray(np.array([[0, 0.25, 0.5, 1]], np.float32)).save(tmp_path/"f.tif")
    with caplog.at_level(logging.WARNING, logger="workbench.data.core"):
        assert read_image(tmp_path/"f.tif")[0, 0].tolist() == [0, 64, 128, 255]
    assert "f.tif" in caplog.text and "x 255" in caplog.text
    cases = {"wide.tif": ([[0, 255.5]], "float image with values 0..255.5"), "neg.tif": ([[-0.5, 1]], "values -0.5..1"),
             "nan.tif": ([[0, np.nan]], "1 NaN or Inf"), "inf.tif": ([[np.inf, 0]], "NaN or Inf")}
    for name, (a, msg) in cases.items():
        Image.fromarray(np.array(a, np.float32)).save(tmp_path/name)
        with pytest.raises(BadFile, match=msg) as e: read_image(tmp_path/name)
        assert name in str(e.value) and e.value.file == tmp_path/name and len(str(e.value).splitlines()) == 1

def test_uint8_images_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    rgb, gray = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8), rng.integers(0, 255, (4, 5), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path/"rgb.png"); Image.fromarray(gray).save(tmp_path/"gray.png")
    Image.fromarray(np.dstack([rgb, gray])).save(tmp_path/"rgba.png")
    pal = Image.fromarray(gray % 4, "P"); pal.putpalette(rgb[0].ravel().tolist() + [0] * 753); pal.save(tmp_path/"p.png")
    hwc = lambda f: read_image(tmp_path/f).permute(1, 2, 0).numpy()
    assert (hwc("rgb.png") == rgb).all() and (hwc("rgba.png") == rgb).all()
    assert (hwc("gray.png") == gray[..., None]).all()
    assert (hwc("p.png") == np.asarray(pal.convert("RGB"))).all()

@pytest.mark.parametrize("data", [b"", b"not an image", None])
def test_unreadable_image_named(tmp_path, data):
    p = tmp_path/"x.png"
    if data is None:  # a PNG cut short
        Image.fromarray(np.zeros((50, 50, 3), np.uint8) + 7).save(p); p.write_bytes(p.read_bytes()[:60])
    else: p.write_bytes(data)
    with pytest.raises(BadFile, match=r"cannot read image .*x.png") as e: read_image(p)
    assert e.value.kind == "unreadable_image"

def test_badfile_survives_a_dataloader_worker():
    e = BadFile("Caught BadFile in DataLoader worker process 0.\nOriginal Traceback ...")
    assert isinstance(e, ValueError) and e.kind == "corrupt"

# -- masks ------------------------------------------------------------------------------------------------

def test_16bit_mask_unscaled(tmp_path):
    Image.fromarray(np.array([[0, 1, 2, 255]], np.uint16)).save(tmp_path/"m.png")
    assert read_mask(tmp_path/"m.png", 3).tolist() == [[0, 1, 2, 255]]
    Image.fromarray(np.array([[0, 299, 1000]], np.uint16)).save(tmp_path/"m.png")
    assert read_mask(tmp_path/"m.png", 1001, ignore_index=-1).tolist() == [[0, 299, 1000]]

@pytest.mark.parametrize("values,bad,n", [([0, 1, 7], "[7]", 1), ([0, 3, 254], "[3, 254]", 2), ([0, 1, 256], "[256]", 1)])
def test_mask_values_outside_classes_error(tmp_path, values, bad, n):
    a = np.array([values], np.uint16 if max(values) > 255 else np.uint8)
    Image.fromarray(a).save(tmp_path/"m.png")
    with pytest.raises(BadFile, match=rf"m.png has values {re.escape(bad)} \({n} pixel\(s\)\) outside the classes 0..2 and ignore_index 255") as e:
        read_mask(tmp_path/"m.png", 3)
    assert e.value.kind == "out_of_range"


def test_colour_and_float_masks_error(tmp_path):
    Image.fromarray(np.array([[[128, 0, 0], [0, 128, 0]]], np.uint8)).save(tmp_path/"rgb.png")
    with pytest.raises(ValueError, match=r"rgb.png has mode 'RGB': expected class indices.*palette or grayscale"): read_mask(tmp_path/"rgb.png", 3)
    Image.fromarray(np.full((2, 2, 3), 1, np.uint8)).save(tmp_path/"gray3.png")
    with pytest.raises(ValueError, match="channels are equal"): read_mask(tmp_path/"gray3.png", 3)
    Image.fromarray(np.zeros((2, 2, 2), np.uint8), "LA").save(tmp_path/"la.png")
    with pytest.raises(ValueError, match="mode 'LA'"): read_mask(tmp_path/"la.png", 3)
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path/"f.tif")
    with pytest.raises(ValueError, match="f.tif has mode 'F'"): read_mask(tmp_path/"f.tif", 3)
    (tmp_path/"junk.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read mask .*junk.png"): read_mask(tmp_path/"junk.png", 3)

def test_bilevel_mask_reads_0_1(tmp_path):
    Image.fromarray(np.array([[0, 1, 1]], bool)).save(tmp_path/"b.png")
    assert Image.open(tmp_path/"b.png").mode == "1" and read_mask(tmp_path/"b.png", 2).tolist() == [[0, 1, 1]]

def test_skip_bad_report_lists_every_file_with_its_kind(tmp_path):
    ok = np.zeros((12, 16), np.uint8); ok[:4] = 1
    root = voc(tmp_path/"VOC", {"a": ok, "b": np.full((12, 16), 9, np.uint8), "c": ok[:5], "d": None,
                                 "e": np.zeros((12, 16, 3), np.uint8), "f": ok})
    (root/"JPEGImages/f.jpg").write_bytes(b"broken")
    ds = VOCSegmentation(root, classes=("bg", "x"), skip_bad=True)
    assert len(ds) == 1 and ds.ids == ["a"] and ds.n_skipped == 5
    r = ds.report
    assert {k: [Path(f).name for f in r.files(k)] for k in r.problems} == {
        "out_of_range": ["b.png"], "size_mismatch": ["c.png"], "missing_label": ["d.png"], "corrupt": ["e.png"],
        "unreadable_image": ["f.jpg"]}
    assert r.counts["pairs"] == 1 and r.to_dict()["problems"] == r.problems

def test_repeats_counted_ambiguous_and_ignore_class_errors(tmp_path):
    ok = np.zeros((12, 16), np.uint8)
    root = voc(tmp_path/"VOC", {"a": ok, "b": ok})
    (root/"ImageSets/Segmentation/rep.txt").write_text("a\nb\na\n")
    ds = VOCSegmentation(root, "rep", classes=("bg", "x"))
    assert (len(ds), ds.ids, ds.report.counts["duplicate"]) == (2, ["a", "b"], 1)
    with pytest.raises(ValueError, match="ignore_index=1 is also class 1"): VOCSegmentation(root, classes=("bg", "x"), ignore_index=1)
    fo = tmp_path/"folder"; (fo/"images/train").mkdir(parents=True); (fo/"masks/train").mkdir(parents=True)
    for n in ("a.jpg", "a.png"): Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(fo/"images/train"/n)
    Image.fromarray(ok).save(fo/"masks/train/a.png")
    with pytest.raises(ValueError, match=r"a.png is listed for 2 images .*: ambiguous"): FolderSegmentation(fo, classes=("bg", "x"))

def test_missing_file_error_names_it(tmp_path):
    root = voc(tmp_path/"VOC", {"a": np.zeros((12, 16), np.uint8), "gone": None})
    with pytest.raises(FileNotFoundError, match=r"1 listed file\(s\) are missing, e.g. mask .*gone.png"): VOCSegmentation(root)

# -- a split with no labelled pixel ---------------------------------------------------------------------

def all_ignore_shapes(shapes, tmp_path, split):
    "A copy of the shapes VOC data whose `split` masks are all 255."
    import shutil
    root = tmp_path/"voc"; shutil.copytree(shapes/"voc", root); shutil.copy(shapes/"manifest.json", tmp_path/"manifest.json")
    for i in (root/"ImageSets/Segmentation"/f"{split}.txt").read_text().split():
        p = root/"SegmentationClass"/f"{i}.png"; Image.fromarray(np.full(np.asarray(Image.open(p)).shape, 255, np.uint8)).save(p)
    return root

def test_all_ignore_split_errors_at_build_under_skip_bad(shapes, tmp_path):
    root = all_ignore_shapes(shapes, tmp_path, "val")
    with pytest.raises(ValueError, match=r"VOC split 'val' \(.*SegmentationClass\): every pixel of its 9 mask\(s\) is ignore_index 255"):
        VOCSegmentation(root, "val", skip_bad=True)
    assert VOCSegmentation(root, "val").report.ok  # without skip_bad the masks are not read when built

def fit(root, tmp_path, *over):
    from workbench.config import get_experiment, apply_overrides
    from workbench.learner import Learner
    import workbench.experiments, workbench.tasks.segmentation  # noqa: F401 (registers)
    cfg = apply_overrides(get_experiment("seg_shapes"), [f"data.root={root}", "model.name=simple_fcn", "data.batch_size=8",
        "data.base_size=32", "data.crop_size=32", "data.eval_size=32", "train.epochs=2", "train.cpu_threads=1", *over])
    return Learner(cfg, tmp_path/"run").fit()

def test_all_ignore_train_split_errors_at_first_epoch_end(shapes, tmp_path):
    root = all_ignore_shapes(shapes, tmp_path, "train")
    with pytest.raises(ValueError, match=r"VOC split 'train' \(.*SegmentationClass\): no labelled pixel in the first epoch"):
        fit(root, tmp_path)
    assert not (tmp_path/"run/metrics.json").exists()

def test_all_ignore_val_split_errors_at_first_evaluation(shapes, tmp_path):
    root = all_ignore_shapes(shapes, tmp_path, "val")
    with pytest.raises(ValueError, match=r"VOC split 'val' \(.*SegmentationClass\): no pixel to score"):
        fit(root, tmp_path, "train.epochs=1")

# -- MedSAM npy ----------------------------------------------------------------------------------------

def npy_pair(root, name, img, gt):
    for sub, a in (("imgs", img), ("gts", gt)):
        (root/sub).mkdir(parents=True, exist_ok=True)
        if a is not None: np.save(root/sub/name, a)

@pytest.fixture
def npy(tmp_path):
    gt = np.zeros((30, 40), np.uint8); gt[5:15, 5:20] = 1
    for k in range(2): npy_pair(tmp_path, f"ok{k}.npy", np.full((30, 40, 3), 9, np.uint8), gt)
    return tmp_path

GT = np.pad(np.ones((10, 10), np.uint8), ((5, 15), (5, 25)))

@pytest.mark.parametrize("img,msg,kind", [
    (np.where(np.eye(30, 40, dtype=bool)[..., None], np.nan, 1).astype(np.float32).repeat(3, 2), r"image .*bad.npy has 90 NaN or Inf", "non_finite"),
    (np.full((30, 40), -np.inf), r"image .*bad.npy has 1200 NaN or Inf", "non_finite"),
    (np.ones((30, 40), bool), r"image .*bad.npy has dtype bool", "corrupt"),
    (np.ones((30, 40, 3), np.complex64), r"image .*bad.npy has dtype complex64", "corrupt"),
    (np.ones((30, 40, 2), np.uint8), r"image .*bad.npy has shape \(30, 40, 2\)", "corrupt"),
])
def test_medsam_bad_image_named_at_load_and_counted(npy, img, msg, kind):
    npy_pair(npy, "bad.npy", img, GT)
    ds = MedSAMDataset(npy)  # training: pairs are read per item
    with pytest.raises(ValueError, match=msg): ds[ds.files.names.index("bad.npy")]
    with pytest.raises(ValueError, match=msg): MedSAMDataset(npy, train=False)  # the eval index reads every pair
    skip = MedSAMDataset(npy, skip_bad=True)
    assert len(skip) == 2 and skip.report.files(kind) == [str(npy/"imgs/bad.npy")] and skip.report.counts["pairs"] == 2
    assert MedSAMInstances(npy, skip_bad=True).report.problems == {kind: 1}

def test_medsam_nan_image_never_reaches_the_loss(npy):
    img = np.ones((30, 40, 3), np.float32); img[0, 0, 0] = np.nan
    npy_pair(npy, "nan.npy", img, GT)
    dl = torch.utils.data.DataLoader(MedSAMDataset(npy, seed=0), batch_size=3)
    with pytest.raises(ValueError, match=r"imgs/nan.npy has 1 NaN or Inf"): next(iter(dl))

@pytest.mark.parametrize("gt,msg,kind", [
    (np.zeros((30, 40), np.uint8), r"gts/bad.npy is empty \(all background\)", "no_labels"),
    (GT.astype(np.float32) * np.nan, r"gts/bad.npy has dtype float32", "corrupt"),
    (GT[:20], r"size mismatch: image .*bad.npy is \(30, 40\), gt .*bad.npy is \(20, 40\)", "size_mismatch"),
    (GT.astype(np.int16) - 2, r"gts/bad.npy has label ids -2..-1", "out_of_range"),
    (GT[..., None], r"gts/bad.npy has shape \(30, 40, 1\)", "corrupt"),
])
def test_medsam_bad_gt(npy, gt, msg, kind):
    npy_pair(npy, "bad.npy", np.ones((30, 40, 3), np.uint8), gt)
    ds = MedSAMDataset(npy)
    with pytest.raises(ValueError, match=msg): ds[ds.files.names.index("bad.npy")]
    assert MedSAMDataset(npy, skip_bad=True).report.files(kind) == [str(npy/"gts/bad.npy")]

def test_medsam_unreadable_npz_and_div255(npy):
    np.savez(npy/"imgs/z.npy", a=np.ones((30, 40))); (npy/"imgs/z.npy.npz").rename(npy/"imgs/z.npy"); np.save(npy/"gts/z.npy", GT)
    with pytest.raises(ValueError, match=r"imgs/z.npy: an .npz archive"): MedSAMDataset(npy, train=False)
    assert MedSAMDataset(npy, skip_bad=True).report.files("unreadable_image") == [str(npy/"imgs/z.npy")]
    (npy/"imgs/z.npy").unlink(); (npy/"gts/z.npy").unlink()
    npy_pair(npy, "ct.npy", np.full((30, 40), 3000, np.int16), GT)
    with pytest.raises(ValueError, match=r"ct.npy has values 3000..3000: normalize='div255'"): MedSAMDataset(npy, normalize="div255", train=False)
    assert len(MedSAMDataset(npy, train=False)) == 3  # minmax reads any range

def test_medsam_report_unpaired(npy):
    npy_pair(npy, "g.npy", None, GT); npy_pair(npy, "i.npy", np.ones((30, 40)), None)
    r = MedSAMDataset(npy, skip_bad=True).report
    assert (r.files("missing_image"), r.files("missing_label")) == ([str(npy/"gts/g.npy")], [str(npy/"imgs/i.npy")])

# -- LabelMe ----------------------------------------------------------------------------------------------

@pytest.fixture
def lm(tmp_path):
    (tmp_path/"train").mkdir(); (tmp_path/"labels.txt").write_text("__ignore__\n_background_\ncat\n")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path/"train/a.png")
    return tmp_path

def ann(root, name="a.json", **kw):
    d = {"imagePath": "a.png", "imageHeight": 6, "imageWidth": 8, "shapes": [{"label": "cat", "points": [[1, 1], [5, 1], [5, 4]]}], **kw}
    (root/"train"/name).write_text(json.dumps(d) if not isinstance(d.get("raw"), str) else d["raw"])

@pytest.mark.parametrize("kw,msg,kind", [
    (dict(raw="{broken"), "cannot read LabelMe file .*bad.json", "unreadable_label"),
    (dict(raw="[1, 2]"), "bad.json: not a LabelMe file", "corrupt"),
    (dict(raw='{"imagePath": "a.png", "shapes": []}'), "bad.json: no imageHeight/imageWidth", "corrupt"),
    (dict(imagePath=None), "bad.json: no imagePath", "corrupt"),
    (dict(imagePath="../nowhere.png"), r"bad.json: imagePath '../nowhere.png' points to .*nowhere.png, which does not exist", "missing_image"),
    (dict(imagePath="gone.png", imageData="iVBOR"), r"gone.png, which does not exist \(its embedded imageData is not read\)", "missing_image"),
    (dict(imageHeight=8, imageWidth=6), r"bad.json says 8x6 \(H x W\), its image .*a.png is 6x8", "size_mismatch"),
    (dict(shapes=[{"label": "dog", "points": [[0, 0], [1, 1], [1, 0]]}]), "bad.json: shape 0 label 'dog' is not a class", "unknown_class"),
    (dict(shapes=[{"label": None, "points": []}]), "label None is not a class", "unknown_class"),
    (dict(shapes=[{"label": "cat", "points": [[0, 0], [1, float("nan")], [2, 2]]}]), "has NaN or Inf coordinates", "non_finite"),
    (dict(shapes=[{"label": "cat", "points": [[0, 0, 1], [1, 2, 3]]}]), r"points are not \[x, y\] pairs", "corrupt"),
    (dict(shapes=[{"label": "cat", "points": "xy"}]), r"points are not \[x, y\] pairs", "corrupt"),
    (dict(shapes=[{"label": "cat", "shape_type": "rectangle", "points": [[0, 0]]}]), "a rectangle of 1 point", "corrupt"),
    (dict(shapes=[{"label": "cat", "shape_type": "point", "points": [[0, 0]]}]), "a point of 1 point", "corrupt"),
    (dict(shapes={"label": "cat"}), "shapes is not a list", "corrupt"),
    (dict(shapes=["cat"]), "shape 0 is not a JSON object", "corrupt"),
])
def test_labelme_bad_file_named_or_skipped(lm, kw, msg, kind):
    ann(lm); ann(lm, "bad.json", **kw)
    with pytest.raises(ValueError, match=msg): LabelMeSegmentation(lm)
    ds = LabelMeSegmentation(lm, skip_bad=True)
    assert len(ds) == 1 and ds.report.problems == {kind: 1} and ds.n_skipped == 1
    assert ds.report.files(kind) == [str(lm/"train/bad.json")]

def test_labelme_dropped_shapes_counted(lm):
    shapes = [{"label": "cat", "points": [[0, 0], [3, 3]]},  # a 2-point polygon
              {"label": "cat", "shape_type": "rectangle", "points": [[20, 20], [30, 30]]},  # outside
              {"label": "cat", "shape_type": "circle", "points": [[-9, -9], [-8, -8]]},  # outside
              {"label": "cat", "shape_type": "rectangle", "points": [[6, 4], [12, 9]]},  # reaches outside
              {"label": "__ignore__", "points": [[0, 0], [2, 0], [2, 2], [0, 2]]}]
    ann(lm, shapes=shapes)
    ds = LabelMeSegmentation(lm)
    r = ds.report
    assert (r.counts["zero_area"], r.counts["out_of_image"], r.counts["clipped"], r.counts["shapes"]) == (1, 2, 1, 2)
    assert all(f == str(lm/"train/a.json") for k in ("zero_area", "out_of_image") for f in r.files(k))
    mask = ds[0][1]
    assert mask[5, 7] == 1 and mask[1, 1] == 255 and set(mask.unique().tolist()) == {0, 1, 255}

def test_labelme_size_checked_after_exif(lm):
    stored = np.zeros((8, 6, 3), np.uint8)
    exif_save(stored, lm/"train/a.png", 6)  # stored 8x6, shown 6x8: what LabelMe shows and writes
    ann(lm)
    ds = LabelMeSegmentation(lm)
    assert ds[0][0].shape == (3, 6, 8) and ds[0][1].shape == (6, 8)
    ann(lm, imageHeight=8, imageWidth=6)  # the stored size: not what a viewer shows
    with pytest.raises(ValueError, match="says 8x6 .*is 6x8 .*EXIF"): LabelMeSegmentation(lm)

def test_labelme_windows_image_path_and_duplicate_image(lm):
    (lm/"train/sub").mkdir(); (lm/"train/a.png").rename(lm/"train/sub/a.png")
    ann(lm, imagePath="sub\\a.png"); ann(lm, "b.json", imagePath="sub/a.png")
    ds = LabelMeSegmentation(lm)
    assert len(ds) == 2 and ds.report.counts["duplicate"] == 1

# -- weights of another architecture -----------------------------------------------------------------

def test_foreign_weights_error(tmp_path, capsys):
    from workbench.config import ExpConfig, apply_overrides
    from workbench.models import create_model
    from workbench.tasks.segmentation import SegmentationTask
    torch.save(create_model("encdec_tiny", num_classes=3).state_dict(), tmp_path/"foreign.pt")
    torch.save(create_model("simple_fcn", num_classes=3).state_dict(), tmp_path/"own.pt")
    task = lambda *o: SegmentationTask(apply_overrides(ExpConfig(), ["model.name=simple_fcn", *o]))
    with pytest.raises(ValueError, match=r"foreign.pt: only \d+ of \d+ tensors of .* match .*weights of another model"):
        task(f"model.weights={tmp_path/'foreign.pt'}")._model(3)
    task(f"model.weights={tmp_path/'foreign.pt'}", "model.weights_partial=true")._model(3)
    task(f"model.weights={tmp_path/'own.pt'}")._model(3)
    out = capsys.readouterr().out
    assert f"loaded {tmp_path/'foreign.pt'}: " in out
    assert re.search(r"own.pt: (\d+)/\1 tensors", out) and re.search(r"foreign.pt: 0/\d+ tensors", out)
