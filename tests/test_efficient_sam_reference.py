"""EfficientSAM (`workbench.models.efficient_sam`) against the official implementation (github.com/yformer/EfficientSAM).

- Layout: state_dict keys, shapes and order, parameter counts, line by line against the official checkpoint layouts
  (`../shared/reference/efficient_sam_{vitt,vits}.state_dict.txt`, and the layouts recorded from the official code).
- Outputs: mask logits and IoU predictions for seeded random weights, point and box prompts, at 1024 (official
  build) and 256, against outputs recorded from the official code (`tests/reference/efficient_sam_official/
  official_outputs.pt`) — always run.
- Live (when the official source is available): strict state_dict transfer both ways and identical outputs, float32
  and float64. The official code is not vendored in this repository; put its `efficient_sam/` package in
  `tests/reference/efficient_sam_official/` or point `EFFICIENT_SAM_OFFICIAL` at the folder that holds it (see the
  README there). `python tests/test_efficient_sam_reference.py --make-fixture` re-records the outputs from it.
- Loading: `create_model(name, checkpoint=...)` from files we save (official `{"model": ...}` .pt, bare state_dict,
  safetensors), clear errors for a missing file and mismatched keys; a 1024 checkpoint into a 256 model.
"""
import importlib.util, os, sys
from pathlib import Path
import pytest, torch
from torch import nn
from workbench.core import save_weights
from workbench.models.efficient_sam import boxes_to_prompts
from workbench.models.registry import create_model

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = REPO.parent/"shared"/"reference"
HERE = REPO/"tests"/"reference"/"efficient_sam_official"
FIXTURE = HERE/"official_outputs.pt"
OFFICIAL_ROOT = Path(os.environ.get("EFFICIENT_SAM_OFFICIAL", HERE))  # holds the official `efficient_sam/` package
ARCH = {"vitt": (192, 3), "vits": (384, 6)}
PARAMS = {"vitt": 10_223_204, "vits": 26_413_028}

# ---------------------------------------------------------------------------------------------------------------
# shared between the tests and the fixture recorder

def random_weights(model:nn.Module, seed:int=0) -> dict:
    "Seeded, well-scaled random weights for every state_dict entry (a CPU `torch.Generator`: the same on every machine)."
    g, sd = torch.Generator().manual_seed(seed), {}
    for k, v in model.state_dict().items():
        r = torch.randn(v.shape, generator=g)
        if k.startswith("prompt_encoder.") or k.endswith(("iou_token.weight", "mask_tokens.weight")): sd[k] = r  # N(0, 1)
        elif k.endswith("pos_embed"): sd[k] = 0.1 * r
        elif "norm" in k or k.startswith("image_encoder.neck.") and v.ndim == 1 or "upscaling_layers.0.1" in k:
            sd[k] = 1 + 0.1 * r if k.endswith("weight") else 0.1 * r                                          # norms
        elif v.ndim == 1: sd[k] = 0.05 * r                                                                      # biases
        else:
            fan_in = v.shape[0] if "upscaling" in k else v[0].numel()  # ConvTranspose [in, out, 2, 2], stride 2: `in` terms per output
            sd[k] = r / fan_in ** 0.5
    return sd

def cases():
    "name -> (arch, image_size, images, points, labels); prompts: a box, points with a negative and padding, box + point."
    g = torch.Generator().manual_seed(1)
    box1, box2 = boxes_to_prompts(torch.tensor([[[5., 4., 30., 33.]], [[10., 2., 50., 38.]]]))
    pad = lambda p, l: (torch.nn.functional.pad(p, (0, 0, 0, 1), value=-1.0), torch.nn.functional.pad(l, (0, 1), value=-1))
    b_pts, b_lab = pad(box1, box2)                                                                   # [2, 1, 3, 2], [2, 1, 3]
    p_pts = torch.tensor([[[[12., 20.], [30., 8.], [-1., -1.]]], [[[40., 30.], [3., 3.], [55., 39.]]]])
    p_lab = torch.tensor([[[1, 0, -1]], [[1, 0, 1]]])
    bp_pts = torch.cat([box1, torch.tensor([[[[18., 18.]]], [[[30., 20.]]]])], 2)
    bp_lab = torch.cat([box2, torch.tensor([[[1]], [[1]]])], 2)
    pts, lab = torch.cat([b_pts, p_pts, bp_pts], 1), torch.cat([b_lab, p_lab, bp_lab], 1)            # [2, 3, 3, 2], [2, 3, 3]
    img = torch.rand(2, 3, 40, 56, generator=g)
    return {"vitt_1024": ("vitt", 1024, img[:1], pts[:1], lab[:1]),
            "vitt_256": ("vitt", 256, img, pts, lab),
            "vits_256": ("vits", 256, img[1:], pts[1:, :2], lab[1:, :2])}

def checksum(sd:dict) -> float: return float(sum(v.double().sum() for v in sd.values()))

# ---------------------------------------------------------------------------------------------------------------
# the official code (optional)

def official_package():
    "The official `efficient_sam` package, imported under a private name, or None when it is not here."
    init = OFFICIAL_ROOT/"efficient_sam"/"__init__.py"
    if not init.is_file(): return None
    name = "_efficient_sam_official"
    if name in sys.modules: return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    mod = importlib.util.module_from_spec(spec); sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod

def official_model(pkg, arch:str, image_size:int=1024) -> nn.Module:
    "The official model: `build_efficient_sam` at 1024; at another size the same official classes with `img_size` changed."
    d, h = ARCH[arch]
    es = sys.modules[pkg.__name__ + ".efficient_sam"]
    if image_size == 1024: return es.build_efficient_sam(d, h).eval()
    enc_m, dec_m = sys.modules[pkg.__name__ + ".efficient_sam_encoder"], sys.modules[pkg.__name__ + ".efficient_sam_decoder"]
    tw = sys.modules[pkg.__name__ + ".two_way_transformer"]
    enc = enc_m.ImageEncoderViT(img_size=image_size, patch_size=16, in_chans=3, patch_embed_dim=d, normalization_type="layer_norm",
                                depth=12, num_heads=h, mlp_ratio=4.0, neck_dims=[256, 256], act_layer=nn.GELU)
    s = enc.image_embedding_size
    dec = dec_m.MaskDecoder(transformer_dim=256, transformer=tw.TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048,
                            activation=nn.GELU, normalize_before_activation=False), num_multimask_outputs=3, activation=nn.GELU,
                            normalization_type="layer_norm", normalize_before_activation=False, iou_head_depth=2,
                            iou_head_hidden_dim=256, upscaling_layer_dims=[64, 32])
    pe = dec_m.PromptEncoder(embed_dim=256, image_embedding_size=(s, s), input_image_size=(image_size, image_size))
    return es.EfficientSam(enc, pe, 6, dec).eval()

def layout(model:nn.Module) -> list: return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]

# ---------------------------------------------------------------------------------------------------------------
# layout and parameter counts

def _reference_layout(arch):
    f = LAYOUTS/f"efficient_sam_{arch}.state_dict.txt"
    if not f.is_file(): return None
    rows = [l.rstrip("\n").split("\t") for l in f.read_text().splitlines() if l and not l.startswith("#")]
    return [(k, tuple(int(n) for n in s.strip("()").split(",") if n.strip())) for k, s in rows]

@pytest.mark.parametrize("arch", ["vitt", "vits"])
def test_state_dict_layout_and_param_count(arch):
    m = create_model(f"efficient_sam_{arch}")
    assert sum(p.numel() for p in m.parameters()) == PARAMS[arch]
    ours = layout(m)
    refs = {"recorded from the official code": torch.load(FIXTURE, weights_only=True)["layouts"][arch]}
    shared = _reference_layout(arch)
    if shared is not None: refs["../shared/reference"] = shared
    for src, ref in refs.items():
        ref = [(k, tuple(s)) for k, s in ref]
        for i, (a, b) in enumerate(zip(ours, ref)): assert a == b, f"line {i + 1} differs from the layout {src}: ours {a}, official {b}"
        assert len(ours) == len(ref) == 278, f"{len(ours)} keys, official {len(ref)} ({src})"
    assert create_model(f"efficient_sam_{arch}", image_size=256).state_dict().keys() == m.state_dict().keys()

# ---------------------------------------------------------------------------------------------------------------
# outputs against the recorded official outputs (always run)

@pytest.fixture(scope="module")
def recorded(): return torch.load(FIXTURE, weights_only=True)

@pytest.mark.parametrize("case", ["vitt_1024", "vitt_256", "vits_256"])
def test_outputs_match_recorded_official(case, recorded):
    arch, size, img, pts, lab = cases()[case]
    m = create_model(f"efficient_sam_{arch}", image_size=size).eval()
    sd = random_weights(m)
    assert abs(checksum(sd) - recorded[case]["checksum"]) < 1e-6 * max(1.0, abs(recorded[case]["checksum"])), \
        "the seeded weights differ from the ones the outputs were recorded with (torch RNG changed?): re-record with --make-fixture"
    m.load_state_dict(sd, strict=True)
    with torch.no_grad(): masks, iou = m(img, pts, lab)
    assert masks.shape == (*pts.shape[:2], 3, *img.shape[-2:]) and iou.shape == (*pts.shape[:2], 3)
    torch.testing.assert_close(masks, recorded[case]["masks"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(iou, recorded[case]["iou"], rtol=1e-4, atol=1e-4)

# ---------------------------------------------------------------------------------------------------------------
# live comparison with the official code (skipped without it)

needs_official = pytest.mark.skipif(official_package() is None, reason=f"official EfficientSAM source not found under {OFFICIAL_ROOT} "
                                    "(set EFFICIENT_SAM_OFFICIAL; see tests/reference/efficient_sam_official/README.md)")

@needs_official
@pytest.mark.parametrize("arch", ["vitt", "vits"])
def test_live_state_dict_transfers_both_ways(arch):
    off, ours = official_model(official_package(), arch), create_model(f"efficient_sam_{arch}")
    assert layout(off) == layout(ours)
    ours.load_state_dict(off.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), off.state_dict().values()))
    off.load_state_dict(create_model(f"efficient_sam_{arch}").state_dict(), strict=True)
    assert sum(p.numel() for p in off.parameters()) == PARAMS[arch]

def _pair(arch, size, dtype=torch.float32):
    off, ours = official_model(official_package(), arch, size), create_model(f"efficient_sam_{arch}", image_size=size).eval()
    sd = random_weights(ours)
    off.load_state_dict(sd, strict=True); ours.load_state_dict(sd, strict=True)
    for m in (off, ours):
        m.to(dtype)  # the official prompt encoder computes its Fourier features in float32: keep its Gaussian matrix there too
        m.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.data = m.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.float()
    return off, ours

@needs_official
@pytest.mark.parametrize("case,dtype,tol", [("vitt_256", torch.float64, 1e-9), ("vits_256", torch.float64, 1e-9),
                                            ("vitt_256", torch.float32, 1e-4), ("vitt_1024", torch.float32, 1e-4)])
def test_live_outputs_match_official(case, dtype, tol):
    arch, size, img, pts, lab = cases()[case]
    off, ours = _pair(arch, size, dtype)
    img, pts = img.to(dtype), pts.to(dtype)
    with torch.no_grad():
        om, oi = off(img, pts, lab)
        mm, mi = ours(img, pts, lab)
        torch.testing.assert_close(mm, om, rtol=tol, atol=tol); torch.testing.assert_close(mi, oi, rtol=tol, atol=tol)
        if size == 256:  # the split API: cached embeddings + decoder only, low-res and single-mask outputs
            emb = off.get_image_embeddings(img)
            torch.testing.assert_close(ours.get_image_embeddings(img), emb, rtol=tol, atol=tol)
            for multi in (True, False):
                ref = off.predict_masks(emb, pts, lab, multi, 40, 56)
                got = ours.predict_masks(emb, pts, lab, multi, 40, 56)
                for a, b in zip(got, ref): torch.testing.assert_close(a, b, rtol=tol, atol=tol)

# ---------------------------------------------------------------------------------------------------------------
# loading checkpoints from a path

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    "A random ViT-Ti state_dict saved as the official .pt layout, a bare .pth state_dict and safetensors."
    d = tmp_path_factory.mktemp("esam")
    sd = random_weights(create_model("efficient_sam_vitt", image_size=256), seed=3)
    torch.save({"model": sd}, d/"efficient_sam_vitt.pt"); torch.save(sd, d/"bare.pth")
    save_weights(sd, d/"w.safetensors"); torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, d/"ddp.pt")
    return d, sd

@pytest.mark.parametrize("fname", ["efficient_sam_vitt.pt", "bare.pth", "w.safetensors", "ddp.pt"])
def test_checkpoint_loads_strictly(saved, fname):
    d, sd = saved
    m = create_model("efficient_sam_vitt", checkpoint=d/fname)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in sd.items())
    assert m.image_size == 1024

def test_1024_checkpoint_into_256_model(saved):
    d, sd = saved
    m = create_model("efficient_sam_vitt", checkpoint=str(d/"efficient_sam_vitt.pt"), image_size=256).eval()
    assert torch.equal(m.image_encoder.pos_embed, sd["image_encoder.pos_embed"])  # stored at 14×14, interpolated on the fly
    with torch.no_grad():
        assert m.get_image_embeddings(torch.rand(1, 3, 256, 256)).shape == (1, 256, 16, 16)
        masks, iou = m(torch.rand(1, 3, 100, 80), *boxes_to_prompts(torch.tensor([[[10., 10., 60., 90.]]])))
    assert masks.shape == (1, 1, 3, 100, 80) and iou.shape == (1, 1, 3)

def test_checkpoint_errors(saved, tmp_path):
    d, sd = saved
    with pytest.raises(FileNotFoundError, match="no_such_file.pt"): create_model("efficient_sam_vitt", checkpoint=tmp_path/"no_such_file.pt")
    missing = {k: v for k, v in sd.items() if not k.startswith("mask_decoder.iou_prediction_head.fc")}
    extra = {**sd, "mask_decoder.extra.weight": torch.zeros(1)}
    shape = {**sd, "image_encoder.pos_embed": torch.zeros(1, 65, 192)}
    for bad, word in [(missing, "mask_decoder.iou_prediction_head.fc.weight"), (extra, "mask_decoder.extra.weight"), (shape, "image_encoder.pos_embed")]:
        torch.save({"model": bad}, tmp_path/"bad.pt")
        with pytest.raises(ValueError, match=word.replace(".", r"\.")): create_model("efficient_sam_vitt", checkpoint=tmp_path/"bad.pt")
    with pytest.raises(ValueError, match="mismatched"): create_model("efficient_sam_vits", checkpoint=d/"efficient_sam_vitt.pt")

# ---------------------------------------------------------------------------------------------------------------

def make_fixture():
    "Record the official outputs and layouts (needs the official source, see the module docstring)."
    pkg = official_package()
    if pkg is None: sys.exit(f"official EfficientSAM source not found under {OFFICIAL_ROOT}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = {"layouts": {a: layout(official_model(pkg, a)) for a in ARCH},
           "about": "outputs of the official EfficientSAM code (github.com/yformer/EfficientSAM, efficient_sam/) for "
                    "tests/test_efficient_sam_reference.py: random_weights(seed=0) and cases(); float32, CPU, torch " + torch.__version__}
    for case, (arch, size, img, pts, lab) in cases().items():
        off = official_model(pkg, arch, size)
        sd = random_weights(off); off.load_state_dict(sd, strict=True)
        with torch.no_grad(): masks, iou = off(img, pts, lab)
        out[case] = {"masks": masks.contiguous(), "iou": iou.contiguous(), "checksum": checksum(sd)}
        print(case, tuple(masks.shape), f"|masks| max {masks.abs().max():.3f}", iou.flatten()[:3])
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, FIXTURE); print("wrote", FIXTURE)

if __name__ == "__main__":
    if "--make-fixture" in sys.argv: make_fixture()
    else: print(__doc__)
