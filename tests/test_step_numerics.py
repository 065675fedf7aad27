"""channels_last training gives the numbers contiguous training gives (float tolerance); ours
against torchvision where our layers differ (DeepLabV3's `AtrousConv2d`).

The Learner puts the model in channels_last memory format by default (`train.channels_last`); here
one training step of YOLOX-nano with its registered loss (SimOTA included) and of DeepLabV3-
MobileNetV3 with the segmentation loss runs from the same weights on the same batch in both
formats: the loss terms and the gradients agree to float32 rounding (a layout bug, e.g. a `view`
that assumes contiguity, gives errors of order 1). The tolerance per gradient tensor is 1e-2:
PyTorch's CPU BatchNorm adds channels_last rows one after another, with ~10x the rounding error of
its contiguous kernel (measured: up to 1.5e-2 on a few BN and ASPP tensors of DeepLabV3 at 4×256²,
against 2.4e-3 contiguous, both against float64); all gradients together to 5e-3 (measured
≤ 5e-4 here, YOLOX-nano with SimOTA: 2e-4 contiguous against float64).
"""
import copy
import pytest, torch
from workbench.config import LossConfig
from workbench.losses import create_loss
from workbench.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

def one_step(model, loss, x, y) -> tuple: # -> ({term: float}, {param: grad})
    model.zero_grad(set_to_none=True)
    terms = loss(model(x), y)
    terms["loss"].backward()
    grads = {k: p.grad.detach().contiguous() for k, p in model.named_parameters()}
    return {k: float(v.detach()) for k, v in terms.items()}, grads

def assert_same_step(model, loss, x, y):
    "One step contiguous and one step channels_last from the same weights: same loss and grads."
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert cl.state_dict().keys() == model.state_dict().keys()
    (t0, g0), (t1, g1) = one_step(model, loss, x, y), one_step(cl, loss, x, y)
    assert t0.keys() == t1.keys()
    for k in t0: assert t1[k] == pytest.approx(t0[k], rel=1e-4, abs=1e-6), k
    flat = lambda g: torch.cat([v.flatten() for v in g.values()])
    total = (flat(g1) - flat(g0)).norm() / flat(g0).norm()
    assert total < 5e-3, f"relative error of all gradients {total:.2e}"
    floor = 1e-4 * max(g.norm() for g in g0.values())  # grads ~0 (a bias before a BN)
    for k in g0:  # CPU BN sums channels_last rows one by one: ~10x contiguous's rounding error
        err = (g1[k] - g0[k]).norm() / torch.clamp(g0[k].norm(), min=floor)
        assert err < 1e-2, f"{k}: relative gradient error {err:.2e}"
    return t0

def test_yolox_nano_channels_last_step():
    torch.manual_seed(0)
    m = create_model("yolox_nano", num_classes=5).train()
    loss = create_loss(LossConfig(), m, "yolox_nano", default="yolox", num_classes=5,
                       img_size=128)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 128, 128, generator=g) * 255
    t = torch.zeros(2, 8, 5)  # (class, cx, cy, w, h) pixels; zero rows pad
    t[0, :3] = torch.tensor([[1, 40., 50, 30, 40], [3, 90, 80, 50, 30], [0, 64, 64, 100, 90]])
    t[1, :2] = torch.tensor([[2, 30., 100, 20, 24], [4, 100, 30, 40, 40]])
    terms = assert_same_step(m, loss, x, t)
    assert terms["num_fg"] > 0 and terms["iou"] > 0  # positives were assigned
    loss.use_l1 = True  # the no-augmentation epochs
    assert assert_same_step(m, loss, x, t)["l1"] > 0

def test_deeplabv3_mobilenet_channels_last_step():
    torch.manual_seed(0)
    m = create_model("deeplabv3_mobilenet_v3_large", num_classes=4).train()
    for d in m.modules():  # channels_last draws dropout masks in another order
        if isinstance(d, torch.nn.Dropout): d.eval()
    loss = create_loss(LossConfig(), m, "deeplabv3_mobilenet_v3_large", default="seg_ce",
                       num_classes=4, ignore_index=255)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=g)
    y = torch.randint(0, 4, (2, 64, 64), generator=g)
    y[:, :5] = 255  # unlabelled rows
    assert "aux_ce" in assert_same_step(m, loss, x, y)

def test_deeplabv3_step_matches_torchvision():
    """Ours (its dilated ASPP convolutions `AtrousConv2d`: at 128 px the 8×8 map leaves only their
    centre taps, at 256 px d=12 runs tap by tap) against torchvision's own model, same weights and
    batch, both contiguous: the same loss and gradients to float32 rounding."""
    import torch.nn.functional as F
    from torchvision.models import segmentation as tvseg
    from workbench.models.segmentation import AtrousConv2d
    torch.manual_seed(0)
    ref = tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4,
                                             aux_loss=True).train()
    ours = create_model("deeplabv3_mobilenet_v3_large", num_classes=4).train()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert sum(isinstance(m, AtrousConv2d) for m in ours.modules()) >= 3  # the ASPP's three
    for m in (*ours.modules(), *ref.modules()):
        if isinstance(m, torch.nn.Dropout): m.eval()
    loss = create_loss(LossConfig(), ours, "deeplabv3_mobilenet_v3_large", default="seg_ce",
                       num_classes=4, ignore_index=255)
    g = torch.Generator().manual_seed(0)
    for size in (128, 256):
        x = torch.randn(2, 3, size, size, generator=g)
        y = torch.randint(0, 4, (2, size, size), generator=g)
        taps = [m.taps(*s) for m, s in ((ours.classifier[0].convs[1][0], (size // 16,) * 2),)]
        assert taps[0] is not None and len(taps[0]) == (1 if size == 128 else 9), taps
        t0, g0 = one_step(ours, loss, x, y)
        ref.zero_grad(set_to_none=True)
        o = ref(x)
        (F.cross_entropy(o["out"], y, ignore_index=255)
         + 0.5 * F.cross_entropy(o["aux"], y, ignore_index=255)).backward()
        assert t0["loss"] == pytest.approx(loss(o, y)["loss"].item(), rel=1e-5)
        floor = 1e-4 * max(v.norm() for v in g0.values())
        for k, p in ref.named_parameters():
            err = (g0[k] - p.grad).norm() / torch.clamp(p.grad.norm(), min=floor)
            assert err < 1e-3, f"{size} px, {k}: relative gradient error {err:.2e}"
