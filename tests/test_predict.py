"Predict command and API: every output format on the synthetic data, one and two processes, bad inputs."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from safetensors.torch import save_file
from conftest import REPO, free_port

pytestmark = pytest.mark.usefixtures("one_thread")
SCRIPT = REPO/"workbench"/"predict.py"

def _fake_run(run, exp, overrides, num_classes=None, det_bias=None):
    "A run folder as the Learner writes one (config.yaml, weights/best.safetensors), random weights."
    import workbench.predict  # registers the experiments and tasks
    from workbench.config import get_experiment, apply_overrides, save_config
    from workbench.models import create_model
    cfg = apply_overrides(get_experiment(exp), overrides)
    torch.manual_seed(0)
    kw = {"image_size": cfg.data.img_size} if num_classes is None else {"num_classes": num_classes}
    sd = create_model(cfg.model.name, **kw, **cfg.model.kwargs).state_dict()
    if det_bias is not None:  # random YOLOX scores fall under the thresholds: make boxes confident
        sd = {k: torch.full_like(v, det_bias) if k.startswith(("head.obj_preds", "head.cls_preds"))
              and k.endswith("bias") else v for k, v in sd.items()}
    (run/"weights").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, run/"weights"/"best.safetensors")
    save_config(cfg, run/"config.yaml")
    return run

@pytest.fixture(scope="module")
def runs(shapes, tmp_path_factory):
    t = tmp_path_factory.mktemp("runs")
    return {"seg": _fake_run(t/"seg", "seg_shapes", ["model.name=simple_fcn", "model.kwargs={width: 8}",
                                                    f"data.root={shapes/'voc'}", "data.eval_size=48"], 6),
            "det": _fake_run(t/"det", "yolox_nano_shapes", ["data.img_size=64", f"data.root={shapes/'coco'}"],
                             5, det_bias=2.0),
            "sam": _fake_run(t/"sam", "efficient_sam_shapes", ["data.img_size=64", f"data.root={shapes/'coco'}"])}

def _val_images(shapes): return sorted((shapes/"coco"/"images"/"val").glob("*.jpg"))

def test_segmentation_outputs(shapes, runs, tmp_path):
    from workbench.predict import Predictor
    from workbench.inference import predict_file
    p = Predictor.from_run(runs["seg"], device="cpu")
    imgs = _val_images(shapes)[:3]
    s = p.predict_to(imgs, tmp_path, logits=True, progress=False)
    assert s["predicted"] == 3 and not s["skipped"]
    for f in imgs:
        mask = Image.open(tmp_path/"masks"/f"{f.stem}.png")
        assert mask.mode == "P" and mask.size == Image.open(f).size  # palette PNG at the original size
        labels = np.array(mask)
        assert np.array_equal(labels, predict_file(p.model, f, eval_size=48).numpy())  # the evaluation's
        assert Image.open(tmp_path/"overlays"/f"{f.stem}.png").size == mask.size
        lg = np.load(tmp_path/"logits"/f"{f.stem}.npy")
        assert lg.dtype == np.float32 and lg.shape == (6, *labels.shape)
        assert np.array_equal(lg.argmax(0), labels)
    assert not (tmp_path/"coco_results.json").exists()
    man = json.loads((tmp_path/"predictions.json").read_text())
    assert [m["name"] for m in man] == [f.stem for f in imgs]

def test_detection_outputs_score_against_the_dataset(shapes, runs, tmp_path):
    from workbench.predict import Predictor
    from workbench.data.synthetic import COCO_CATEGORY_IDS
    from workbench.detection.postprocess import coco_eval
    ann = shapes/"coco"/"annotations"/"instances_val.json"
    p = Predictor.from_run(runs["det"], device="cpu")
    assert p.meta["cat_ids"] == tuple(COCO_CATEGORY_IDS.values())
    imgs = _val_images(shapes)
    p.predict_to(shapes/"coco"/"images"/"val", tmp_path, image_ids=ann, progress=False)
    res = json.loads((tmp_path/"coco_results.json").read_text())
    gt = json.loads(ann.read_text())
    assert {r["image_id"] for r in res} == {im["id"] for im in gt["images"]}  # every image, its GT id
    assert {r["category_id"] for r in res} <= set(COCO_CATEGORY_IDS.values())
    m = coco_eval(str(ann), res, img_ids=sorted(im["id"] for im in gt["images"]))
    assert 0 <= m["AP50"] <= 1
    one = json.loads((tmp_path/"json"/f"{imgs[0].stem}.json").read_text())
    assert one["height"], one["width"] == Image.open(imgs[0]).size[::-1]
    assert len(one["detections"]) == sum(r["image_id"] == one["image_id"] for r in res)
    assert Image.open(tmp_path/"overlays"/f"{imgs[0].stem}.png").size == Image.open(imgs[0]).size

def test_promptable_outputs_from_each_prompt_format(shapes, runs, tmp_path):
    from pycocotools import mask as mask_utils
    from workbench.predict import Predictor
    p = Predictor.from_run(runs["sam"], device="cpu")
    imgs = _val_images(shapes)[:2]
    ann = shapes/"coco"/"annotations"/"instances_val.json"
    by_coco = p(imgs, prompts=ann)
    by_yolo = p(imgs, prompts=shapes/"yolo"/"labels"/"val")
    own = tmp_path/"prompts.json"
    own.write_text(json.dumps({f.name: {"boxes": r.boxes_xyxy.tolist(), "points": [[[5, 5]]]*len(r.masks),
                                        "point_labels": [[0]]*len(r.masks)} for f, r in zip(imgs, by_coco)}))
    by_own = p(imgs, prompts=own)
    for a, b, c in zip(by_coco, by_yolo, by_own):
        assert a.masks.shape[1:] == a.image.shape[1:] and len(a.masks) == len(a.scores) > 0
        assert torch.allclose(a.boxes_xyxy, b.boxes_xyxy, atol=0.01)  # YOLO txt: the same boxes
        assert c.points.shape == (len(a.masks), 1, 2)
    p.predict_to(imgs, tmp_path/"out", prompts=ann, progress=False)
    rec = json.loads((tmp_path/"out"/"json"/f"{imgs[0].stem}.json").read_text())
    png = np.array(Image.open(tmp_path/"out"/"masks"/f"{imgs[0].stem}.png"))
    for k, o in enumerate(rec["objects"]):
        m = mask_utils.decode({**o["segmentation"], "counts": o["segmentation"]["counts"].encode()})
        later = (png > k + 1)  # later prompts are drawn on top in the PNG
        assert np.array_equal(m.astype(bool) & ~later, png == k + 1)
    coco = json.loads((tmp_path/"out"/"coco_results.json").read_text())
    assert len(coco) == sum(len(r.masks) for r in by_coco) and "segmentation" in coco[0]

def test_segment_everything_without_prompts(shapes, runs, tmp_path):
    pytest.importorskip("workbench.everything")
    from workbench.predict import Predictor, PromptResult
    img = _val_images(shapes)[0]
    r = Predictor.from_run(runs["sam"], device="cpu")(img)[0]
    assert isinstance(r, PromptResult) and r.boxes_xyxy is None
    assert r.masks.shape[1:] == r.image.shape[1:] and len(r.points) == len(r.masks)
    assert set(r.save(tmp_path)) == {"mask", "overlay", "json"}

def test_tta_segmentation_and_detection(shapes, runs):
    from workbench.predict import Predictor
    img = _val_images(shapes)[:1]
    plain, tta = (Predictor.from_run(runs["seg"], device="cpu", tta=t)(img, logits=True)[0] for t in (False, True))
    assert tta.labels.shape == plain.labels.shape
    assert torch.allclose(tta.logits.exp().sum(0), torch.tensor(1.0), atol=1e-4)  # log mean probabilities
    d = Predictor.from_run(runs["det"], device="cpu", tta=True)
    assert d.cfg.model.tta and len(d(img)[0].scores) > 0
    with pytest.raises(ValueError, match="for segmentation and detection"):
        Predictor.from_run(runs["sam"], tta=True)

def test_from_weights_reads_the_class_count(runs):
    from workbench.predict import Predictor
    p = Predictor.from_weights("simple_fcn", runs["seg"]/"weights"/"best.safetensors", device="cpu",
                               **{"model.kwargs": {"width": 8}})
    assert p.classes == tuple(f"class{i}" for i in range(6))
    d = Predictor.from_weights("yolox_nano", runs["det"]/"weights"/"best.safetensors", img_size=64,
                               classes=["a", "b", "c", "d", "e"])
    assert d.classes == ("a", "b", "c", "d", "e") and d.cfg.data.img_size == 64

def _predict_cli(*args, nproc=1):
    cmd = [sys.executable, str(SCRIPT), *map(str, args)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", *cmd[1:]]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r

def test_one_and_two_processes_predict_each_file_once(shapes, runs, tmp_path):
    import cv2
    src = tmp_path/"inputs"
    src.mkdir()
    for f in _val_images(shapes): (src/f.name).write_bytes(f.read_bytes())  # 9 images: an odd count
    vw = cv2.VideoWriter(str(src/"clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for v in (40, 200): vw.write(np.full((48, 64, 3), v, np.uint8))
    vw.release()
    outs = {}
    for n in (1, 2):
        # --run-dir: torchrun takes --run for its own --run-path
        r = _predict_cli("--run-dir", runs["det"], src, "--out", tmp_path/f"out{n}", nproc=n)
        assert f"{n} process(es)" in r.stdout and "predicted 11 image(s)" in r.stdout, r.stdout
        man = json.loads((tmp_path/f"out{n}"/"predictions.json").read_text())
        names = [m["name"] for m in man]
        assert sorted(names) == sorted([f.stem for f in _val_images(shapes)] + ["clip/frame_000000",
                                                                              "clip/frame_000001"])
        assert len(set(names)) == 11 and {m["rank"] for m in man} == set(range(n))
        assert len(list((tmp_path/f"out{n}"/"json").rglob("*.json"))) == 11
        outs[n] = json.loads((tmp_path/f"out{n}"/"coco_results.json").read_text())
    assert outs[1] == outs[2]  # the same results, in input order, whatever the split
    assert {r["image_id"] for r in outs[1]} == set(range(11))  # positions: the stems are not numbers

@pytest.mark.parametrize("case, msg", [
    ("unreadable", "cannot read image"), ("empty", "no image or video file"), ("glob", "no file matches"),
    ("outside", "lies outside the image"), ("not_promptable", "prompts are for promptable"),
    ("all_bad", "no input could be predicted"),
    ("run", "not a run folder")])
def test_bad_inputs_fail_with_one_line(shapes, runs, tmp_path, capsys, case, msg):
    from workbench.predict import main
    img = _val_images(shapes)[0]
    (tmp_path/"bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path/"empty").mkdir()
    (tmp_path/"allbad").mkdir()
    (tmp_path/"allbad"/"x.png").write_bytes(b"nope")
    prompts = tmp_path/"p.json"
    prompts.write_text(json.dumps({img.name: {"boxes": [[10, 10, 5000, 40]]}}))
    run, src, extra = runs["seg"], tmp_path/"bad.jpg", []
    if case == "empty": src = tmp_path/"empty"
    if case == "glob": src = str(tmp_path/"*.tif")
    if case == "outside": run, src, extra = runs["sam"], img, ["--prompts", prompts]
    if case == "not_promptable": src, extra = img, ["--prompts", prompts]
    if case == "all_bad": src = tmp_path/"allbad"
    if case == "run": run = tmp_path
    assert main(["--run", str(run), str(src), "--out", str(tmp_path/"out"), *map(str, extra)]) == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error")]  # (tqdm's bar aside)
    err = lines[-1] if lines else ""
    assert len(lines) == 1 and msg in err, lines
    if case in ("unreadable", "outside"):
        assert str(tmp_path/"bad.jpg" if case == "unreadable" else prompts) in err  # names the file

def test_unreadable_file_in_a_folder_is_skipped_and_listed(shapes, runs, tmp_path, capsys):
    from workbench.predict import main
    src = tmp_path/"in"
    src.mkdir()
    for f in _val_images(shapes)[:2]: (src/f.name).write_bytes(f.read_bytes())
    (src/"broken.png").write_bytes(b"not a png")
    assert main(["--run", str(runs["seg"]), str(src), "--out", str(tmp_path/"out")]) == 0
    out = capsys.readouterr().out
    assert "skipped 1" in out and "broken.png" in out and "predicted 2 image(s)" in out, out
    man = json.loads((tmp_path/"out"/"predictions.json").read_text())
    assert [m.get("skipped", "")[:40] for m in man if "skipped" in m] and len(man) == 3
