"""Model cost (`workbench.models.cost`): our counts against the published tables, every registered model,
the run header and `--list --info`.

Published numbers, each in its own convention:
- YOLOX README: params (M) and "GFLOPs" = 2 × thop's MACs (convolutions + biased-conv outputs + 2 per
  BatchNorm element), at 416 (nano, tiny) or 640: our `2 * thop_macs`.
- torchvision docs: `weights.meta["_ops"]` "GFLOPS" = multiply-adds at 520×520, 21 classes, aux head
  included, and `meta["num_params"]`: our `macs` and `params` (read from the metadata: nothing downloaded).
Every count runs on meta tensors, so the big models cost well under a second each."""
import pytest, torch
from torchvision.models import get_model_weights
from workbench.cli import main
from workbench.models import create_model, list_models
from workbench.models.cost import model_cost, run_cost

pytestmark = pytest.mark.usefixtures("one_thread")

# name: (input size, params in M, GFLOPs = 2 × thop MACs), from the YOLOX README's table
YOLOX = {"yolox_nano": (416, 0.91, 1.08), "yolox_tiny": (416, 5.06, 6.45),
         "yolox_s": (640, 9.0, 26.8), "yolox_m": (640, 25.3, 73.8),
         "yolox_l": (640, 54.2, 155.6), "yolox_x": (640, 99.1, 281.9)}

@pytest.mark.parametrize("name", YOLOX)
def test_yolox_matches_its_readme(name):
    size, params_m, gflops = YOLOX[name]
    c = model_cost(name, size)
    decimals = len(str(params_m).split(".")[1])
    assert round(c.params / 1e6, decimals) == params_m, c
    assert 2 * c.thop_macs / 1e9 == pytest.approx(gflops, rel=0.02), c
    assert c.flops == 2 * c.macs and c.macs < c.thop_macs

TORCHVISION = [n for n in list_models("deeplabv3_*") + list_models("fcn_*")]

def test_torchvision_models_are_all_checked():
    assert TORCHVISION == ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet101",
                           "deeplabv3_resnet50", "fcn_resnet50"]

@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_matches_its_docs(name):
    meta = get_model_weights(name).DEFAULT.meta
    c = model_cost(name, 520)
    assert c.params == meta["num_params"], c
    assert c.macs / 1e9 == pytest.approx(meta["_ops"], rel=0.02), c

@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_counts(name):
    c = model_cost(name, 64)
    assert c.params > 0 and c.trainable == c.params and c.flops > 0, c
    assert c.flops == 2 * c.macs and c.thop_macs >= c.macs
    assert str(c).startswith(f"{name}: ") and "GFLOPs" in str(c)
    assert sum(f for _, f in c.modules.values()) <= c.flops

def test_a_built_model_is_left_as_it_was():
    m = create_model("yolox_nano", num_classes=3).train()
    m.backbone.eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    c = model_cost(m, 64, name="yolox_nano")
    assert m.training and not m.backbone.training and m.head.training
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # BN stats too
    assert c == model_cost("yolox_nano", 64, num_classes=3)

def test_run_cost_never_raises():
    from workbench.config import get_experiment
    class Exotic(torch.nn.Module):
        def forward(self, x, extra): return x * extra  # an input the task does not give
    assert run_cost(get_experiment("seg_shapes"), Exotic()).startswith("cost not counted (")

def test_run_header_has_the_model_line(shapes, tmp_path, capsys):
    args = ["--exp", "seg_shapes", "--output", str(tmp_path), "--name", "a", "--set",
            "model.name=simple_fcn", f"data.root={shapes/'voc'}", "data.batch_size=4",
            "data.base_size=64", "data.crop_size=64", "train.epochs=1"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    i = next(i for i, l in enumerate(lines) if " -> " in l)
    assert lines[i + 1].startswith("model simple_fcn: ") and lines[i + 1].endswith("at 64x64")
    assert "GFLOPs" in lines[i + 1] and "M params" in lines[i + 1]

def test_list_info_table(capsys):
    assert main(["--list"]) == 0
    plain = capsys.readouterr().out
    assert "GFLOPs" not in plain and "  yolox_s\n" in plain  # --list alone as before
    assert main(["--list", "--info"]) == 0
    out = capsys.readouterr().out
    rows = {l.split()[0]: l.split() for l in out.splitlines() if l.split() and
            l.split()[0] in list_models()}
    assert set(rows) == set(list_models())
    assert rows["yolox_s"][1:5] == ["detection", "640x640", "8.968", "26.69"]
    assert rows["efficient_sam_vitt"][1:3] == ["promptable_segmentation", "1024x1024"]
