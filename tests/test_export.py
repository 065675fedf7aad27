"""ONNX export of every registered model, checked in onnxruntime; the dynamic axes; the EfficientSAM pair;
`workbench/export.py` end to end (one thread: about 60-90 s in all, most of it the big models)."""
import subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
import workbench.core as wcore, workbench.models as wm
from workbench.export import export_model, build_model, ort_session, main

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO/"workbench"/"export.py"

# the input each model is checked at (the second check is 32 px larger, batch 2): small, as the test
# times the exporter and onnxruntime, not the model; the big ones (ResNet-101, YOLOX-x/l) at 64 px
SIZES = {"efficient_sam_vits": (64, 96), "efficient_sam_vitt": (64, 96),
         "upernet_pyramid": (128, 128)}  # at 64 px its stride-32 map has 2 cells = the 2-bin pool
# a randomly initialised torchvision ResNet-101 (BatchNorm scale 1 everywhere) grows its activations
# block after block through 33 residual blocks, and float32 rounding with them (relative 8e-4 to 1.3e-2
# here). Trained residual networks keep each block's contribution small; `tamed` does that the way
# `zero_init_residual`-style inits do: each block's last BatchNorm scale 0.2 (logits ~0.06, not ~100).
TAME = {"deeplabv3_resnet101"}
KWARGS = {"efficient_sam_vits": {"image_size": 64}, "efficient_sam_vitt": {"image_size": 64}}

def tamed(model):
    "Every torchvision `Bottleneck`'s `bn3` scale set to 0.2."
    from torchvision.models.resnet import Bottleneck
    for b in model.modules():
        if isinstance(b, Bottleneck): torch.nn.init.constant_(b.bn3.weight, 0.2)
    return model

@pytest.mark.parametrize("name", wm.list_models())
def test_every_model_exports_and_matches(name, tmp_path):
    kw, size = KWARGS.get(name, {"num_classes": 3}), SIZES.get(name, (64, 64))
    model = wm.create_model(name, **kw)
    if name in TAME: model = tamed(model)
    reports = export_model(model, name, tmp_path/f"{name}.onnx", size)
    for r in reports:  # two sizes and batch sizes, relative difference <= 1e-4
        assert len(r.checks) == 2 and r.ok(1e-4), str(r)
        print(f"{r.path.name}: max abs {r.max_abs:.2e}, relative {r.max_rel:.2e}")

def test_dynamic_axes(tmp_path):
    "One graph, run at three sizes and two batch sizes; the outputs follow."
    r, = export_model(wm.create_model("yolox_nano", num_classes=3), "yolox_nano",
                      tmp_path/"n.onnx", (64, 96))
    assert r.inputs["images"] == ["batch", 3, "height", "width"]
    s = ort_session(r.path)
    for b, h, w in ((1, 64, 96), (2, 128, 64), (3, 32, 32)):
        out, = s.run(None, {"images": np.random.rand(b, 3, h, w).astype(np.float32) * 255})
        assert out.shape == (b, sum((h // k) * (w // k) for k in (8, 16, 32)), 8)

def test_efficient_sam_pair(tmp_path):
    "Encoder then decoder in onnxruntime = the PyTorch model's forward, masks at the original size."
    sam = wm.create_model("efficient_sam_vitt", image_size=64).eval()
    enc, dec = export_model(sam, "efficient_sam_vitt", tmp_path/"esam.onnx", (48, 80))
    assert [enc.path.name, dec.path.name] == ["esam_encoder.onnx", "esam_decoder.onnx"]
    img, pts = torch.rand(2, 3, 72, 56), torch.rand(2, 4, 3, 2) * 50
    labels = torch.randint(0, 2, (2, 4, 3)).float()
    emb, = ort_session(enc.path).run(None, {"batched_images": img.numpy()})
    masks, iou, low = ort_session(dec.path).run(None, {
        "image_embeddings": emb, "batched_point_coords": pts.numpy(),
        "batched_point_labels": labels.numpy(), "orig_im_size": np.array([72, 56])})
    with torch.no_grad(): ref_masks, ref_iou = sam(img, pts, labels.long())
    assert masks.shape == (2, 4, 3, 72, 56) and low.shape == (2, 4, 3, 16, 16)
    assert np.abs(masks - ref_masks.numpy()).max() < 1e-4 and np.abs(iou - ref_iou.numpy()).max() < 1e-4

def test_script_end_to_end(tmp_path):
    "The file runs as a script: weights with another class count, then the checks printed."
    w = tmp_path/"fcn.safetensors"
    wcore.save_weights(wm.create_model("simple_fcn", num_classes=5).state_dict(), w)
    r = subprocess.run([sys.executable, str(SCRIPT), "simple_fcn", "--weights", str(w), "--out",
                        str(tmp_path/"fcn.onnx"), "--size", "48", "64"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "images ['batch', 3, 'height', 'width']" in r.stdout and "max abs diff" in r.stdout
    assert (tmp_path/"fcn.onnx").is_file() and "random weights" not in r.stderr

@pytest.mark.parametrize("args, message", [
    (["yolox_nan", "--out", "x.onnx"], "did you mean ['yolox_nano'"),
    (["simple_fcn", "--weights", "nope.safetensors", "--out", "x.onnx"], "weights file not found"),
    (["simple_fcn", "--out", "x.pt"], "ending in .onnx"),
    (["--out", "x.onnx"], "give a model NAME"),
    (["yolox_nano", "--out", "x.onnx", "--size", "64", "50"], "multiples of 32"),
    (["--run", "no_such_run", "--out", "x.onnx"], "no config.yaml"),
    (["simple_fcn", "--out", "x.onnx", "--kw", "width"], "KEY=VALUE"),
])
def test_bad_arguments(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err

def test_run_folder(tmp_path, capsys):
    "--run: the model, builder arguments and weights of a run folder (a hand-made one here)."
    from workbench.config import save_config
    from workbench.experiments import seg_shapes
    cfg = seg_shapes()
    cfg.model.name, cfg.model.kwargs, cfg.data.eval_size = "encdec_tiny", {"width": 8}, 40
    run = tmp_path/"run1"
    save_config(cfg, run/"config.yaml")
    wcore.save_weights(wm.create_model("encdec_tiny", num_classes=4, width=8).state_dict(),
                       run/"weights"/"best.safetensors")
    assert main(["--run", str(run), "--out", str(tmp_path/"m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "images [1, 3, 40, 40]" in out and "relative" in out  # 48 px: 6 cells = the 6-bin pool
    assert build_model("encdec_tiny", run/"weights"/"best.safetensors", width=8).training is False
