"EfficientSAM promptable-segmentation task: loss terms, padding, original-resolution metric, cache exactness, CLI runs (1 and 2 processes)."
import json, subprocess, sys, os
from pathlib import Path
import numpy as np, pytest, torch
from monai.losses import DiceLoss
from conftest import REPO, free_port

from workbench.config import ExpConfig, save_config
from workbench.data.prompts import prompt_collate, CocoInstances
from workbench.data.medsam import mask_box
from workbench.models import create_model, load_pretrained
from workbench.core import load_weights
from workbench.learner import StepContext
from workbench.losses import sam_loss, mask_iou_target
from workbench.tasks.promptable import (object_scores, best_candidate, ObjectMetric, PromptableSam,
                                        PromptableSegTask, predict)

# the CLI does not import this task yet: run workbench.cli.main with it imported
MAIN = "import sys, workbench.tasks.promptable, workbench.cli; sys.exit(workbench.cli.main())"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from workbench.data.synthetic import generate
    return generate(tmp_path_factory.mktemp("sam")/"shapes", n_train=8, n_val=3, seed=0, formats="coco,medsam")


def tiny_cfg(root, name="coco", size=64) -> ExpConfig:
    cfg = ExpConfig(task="promptable_segmentation")
    d = cfg.data
    d.name, d.root, d.img_size, d.batch_size, d.eval_batch_size = name, str(Path(root)/name), size, 2, 1
    cfg.prompts.bbox_shift, cfg.prompts.flip = 3, False
    if name == "coco": cfg.prompts.prompts_per_image = 2
    cfg.model.name, cfg.model.freeze = "efficient_sam_vitt", "encoder"
    cfg.optim.lr, cfg.optim.weight_decay = 1e-4, 0.01
    cfg.sched.name, cfg.sched.warmup_epochs = "constant", 0
    cfg.train.epochs, cfg.train.best_metric, cfg.train.cpu_threads = 1, "dice", 1
    return cfg


def test_iou_target_exact():
    lg = torch.full((1, 3, 6, 6), -3.0)
    lg[0, 0, 1:4, 1:4] = 3   # the 9-pixel object exactly
    lg[0, 1, 1:4, 1:5] = 3   # 12 pixels covering it: IoU 9/12
    lg[0, 2, 0, 0] = 3       # 1 pixel outside: IoU 0
    gt = torch.zeros(1, 6, 6); gt[0, 1:4, 1:4] = 1
    assert torch.allclose(mask_iou_target(lg, gt), torch.tensor([[1.0, 0.75, 0.0]]))
    # the loss' IoU term is the MSE against exactly that [N, 3] target (no [B, B, 3] broadcast)
    ip = torch.tensor([[[0.5, 0.5, 0.5]]])
    l = sam_loss(lg[None], ip, gt[None], torch.ones(1, 1, dtype=torch.bool))
    assert torch.isclose(l["iou"], torch.tensor(((0.5**2) + (0.25**2) + (0.5**2)) / 3))


def test_loss_terms_and_padding():
    torch.manual_seed(1)
    lg, ip = torch.randn(2, 3, 3, 16, 16), torch.rand(2, 3, 3)
    gt = (torch.rand(2, 3, 16, 16) > 0.6).float()
    valid = torch.tensor([[True, False, True], [True, True, False]])
    out = sam_loss(lg, ip, gt, valid, weights={"dice": 2.0, "iou": 0.5})
    assert set(out) == {"loss", "dice", "bce", "iou"} and all(torch.isfinite(v) for v in out.values())
    v, g = lg[valid], gt[valid][:, None].expand(-1, 3, -1, -1)
    assert torch.isclose(out["dice"], 2*DiceLoss(sigmoid=True, squared_pred=True)(v, g), atol=1e-6)
    assert torch.isclose(out["bce"], torch.nn.functional.binary_cross_entropy_with_logits(v, g), atol=1e-6)
    assert torch.isclose(out["loss"], out["dice"] + out["bce"] + out["iou"], atol=1e-6)  # weighted terms
    garbage = lg.clone(); garbage[~valid] = float("nan")  # padding prompts may hold anything
    assert torch.isclose(sam_loss(garbage, ip, gt, valid, {"dice": 2.0, "iou": 0.5})["loss"], out["loss"], atol=1e-6)
    # best-of-3 supervises one candidate per prompt: never above the all-candidates mean
    best = sam_loss(lg, ip, gt, valid, multimask="best")
    unweighted = sam_loss(lg, ip, gt, valid)
    assert best["dice"] + best["bce"] <= unweighted["dice"] + unweighted["bce"] + 1e-6
    assert torch.isclose(best["iou"], unweighted["iou"])


def test_metric_at_original_resolution():
    # a 24×12 image, working size 12 -> new_size (12, 6) (scale 2); the object is the top third of the original image
    lg = torch.full((1, 1, 12, 12), -5.0); lg[0, 0, :4, :6] = 5  # rows 4.. and columns 6.. of the input are padding
    gt = np.zeros((1, 24, 12), bool); gt[0, :8] = True
    batch = dict(original_size=torch.tensor([[24, 12]]), new_size=torch.tensor([[12, 6]]), valid=torch.tensor([[True]]), masks_orig=[gt])
    d, i = object_scores(lg, batch)
    assert d.item() == pytest.approx(1.0) and i.item() == pytest.approx(1.0)
    lg[0, 0, :4, 3:6] = -5  # the left half of it only
    d, i = object_scores(lg, batch)
    assert i.item() == pytest.approx(0.5) and d.item() == pytest.approx(2/3)
    # best candidate by predicted IoU, and the metric's distribution figures
    lg3 = torch.stack([torch.full((12, 12), -5.0), lg[0, 0]])[None, None]
    chosen, score = best_candidate(lg3, torch.tensor([[[0.1, 0.8]]]))
    assert torch.equal(chosen[0, 0], lg[0, 0]) and score.item() == pytest.approx(0.8)
    m = ObjectMetric(); m.update({"dice": torch.tensor([[0.2, 0.4, float("nan")], [0.6, 0.8, 1.0]]), "iou": torch.zeros(2, 3)})
    r = m.compute()
    assert r["count"] == 5 and r["dice"] == pytest.approx(0.6) and r["dice_median"] == pytest.approx(0.6)
    assert r["dice_p10"] == pytest.approx(0.28) and r["dice_p90"] == pytest.approx(0.92)


def test_model_ddp_safe_and_frozen():
    m = create_model("efficient_sam_vitt", image_size=32, model_cls=PromptableSam).set_frozen_encoder()
    m.train()
    assert m.training and not m.image_encoder.training
    lg, iou = m(torch.rand(2, 3, 32, 32), torch.rand(2, 2, 2, 2)*32, torch.tensor([2, 3]).expand(2, 2, 2))
    sam_loss(lg, iou, torch.zeros(2, 2, 32, 32), torch.ones(2, 2, dtype=torch.bool), multimask="best")["loss"].backward()
    unused = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []  # so DDP needs no find_unused_parameters
    assert all(p.grad is None for p in m.image_encoder.parameters())
    # same state_dict keys as the registry model: weights load strictly either way
    load_pretrained(create_model("efficient_sam_vitt", image_size=32), m.state_dict(), strict=True)


def test_cache_exact_and_predict(tiny):
    cfg = tiny_cfg(tiny)
    outs = []
    for cache in (True, False):
        cfg.prompts.cache_embeddings = cache
        torch.manual_seed(0)
        t = PromptableSegTask(cfg)
        parts = t.build()
        model, val, ctx = parts.model.eval(), parts.val_ds, StepContext(0, 1, training=False)
        b = prompt_collate([val[0], val[1]])
        with torch.no_grad():
            outs.append(t.eval_step(parts, model, b, ctx)[0])
            outs.append(t.eval_step(parts, model, b, ctx)[0])  # the 2nd from the cache
        assert len(t.cache) == (2 if cache else 0)
    assert torch.allclose(outs[0]["pred_iou"], outs[2]["pred_iou"], atol=1e-5, equal_nan=True)
    assert torch.equal(outs[0]["dice"].isnan(), outs[2]["dice"].isnan())
    # predict: prompts in original pixels, masks at the original size
    r = CocoInstances.from_split(Path(tiny)/"coco", "val")[0]
    masks, scores = predict(model, r["image"], boxes=np.stack([mask_box(k) for k in r["masks"]]))
    assert masks.shape == r["masks"].shape and masks.dtype == torch.bool and scores.shape == (len(r["masks"]),)


def _run(args, tmp, nproc=1, timeout=240):
    cmd = [sys.executable, "-c", MAIN, *args]
    if nproc > 1:
        script = tmp/"train_sam.py"; script.write_text(MAIN + "\n")
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}", str(script), *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def test_learner_one_epoch_medsam(tiny, tmp_path):
    from workbench.learner import Learner
    cfg = tiny_cfg(tiny, "medsam")
    learn = Learner(cfg, tmp_path/"run")
    assert learn.task.use_cache and not learn.model.image_encoder.training
    metrics = learn.fit()
    assert metrics["count"] == len(learn.val_ds) and 0 <= metrics["dice"] <= 1  # one object per val item
    assert learn.model.training and not learn.model.image_encoder.training  # the frozen encoder stays in eval mode
    assert json.loads((tmp_path/"run"/"preprocess.json").read_text()) == {"target_size": 64, "normalize": "minmax"}
    assert {"train/dice", "train/bce", "train/iou"} <= set(open(tmp_path/"run"/"results.csv").readline().strip().split(","))


def test_cli_two_processes(tiny, tmp_path):
    "`workbench.cli` with an experiment YAML (--config), 2 CPU processes: DDP without find_unused_parameters, exact gather."
    cfg = tiny_cfg(tiny)
    save_config(cfg, tmp_path/"exp.yaml")
    _run(["--config", str(tmp_path/"exp.yaml"), "--output", str(tmp_path/"runs"), "--name", "r"], tmp_path, nproc=2)
    run = next((tmp_path/"runs").glob("*/r"))
    metrics = json.loads((run/"metrics.json").read_text())
    src = CocoInstances.from_split(Path(tiny)/"coco", "val")
    n_objects = sum(len(src._anns(i)) for i in src.ids)
    # every val object scored exactly once (3 images over 2 processes: the duplicated one is dropped)
    assert metrics["count"] == n_objects and 0 <= metrics["dice"] <= 1
    assert json.loads((run/"preprocess.json").read_text()) == {"target_size": 64, "normalize": "minmax"}
    assert (run/"plots"/"candidates.png").is_file() and (run/"plots"/"predictions.png").is_file()
    sd = load_weights(run/"weights"/"best.safetensors")
    load_pretrained(create_model("efficient_sam_vitt", image_size=64), sd, strict=True)
