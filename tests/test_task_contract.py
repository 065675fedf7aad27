"The loop/task contract: the plan is resolved before the stages that depend on it (Mosaic off at the right step)."
import pytest, torch
from workbench.config import get_experiment, apply_overrides
from workbench.data.synthetic import generate
from workbench.learner import Learner, register_task, read_results
from workbench.tasks.detection import DetectionTask
import workbench.experiments  # registers the presets


@register_task("detection_probe")
class ProbeTask(DetectionTask):
    "The detection task, recording what each training micro-batch saw."
    seen = []
    def train_step(self, parts, model, batch, ctx):
        ProbeTask.seen.append((ctx.step, ctx.epoch, ctx.epochs, parts.train_ds.mosaic, parts.loss.use_l1))
        return super().train_step(parts, model, batch, ctx)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("shapes"), n_train=16, n_val=4, seed=0, formats=("coco",))/"coco"


def test_iteration_based_run_switches_mosaic_off_at_the_right_step(coco, tmp_path):
    # 16 images / batch 8 = 2 steps per epoch; 5 iterations -> 3 epochs (2 + 2 + 1 steps); the last epoch has no
    # Mosaic and YOLOX's L1 term on: from optimizer step 4 on. train.epochs (40 in the preset) plays no part.
    cfg = apply_overrides(get_experiment("yolox_nano_shapes"), [
        "task=detection_probe", f"data.root={coco}", "data.img_size=64", "data.batch_size=8",
        "data.eval_batch_size=4", "detection.no_aug_epochs=1", "train.iters=5", "train.eval_every=99",
        "train.cpu_threads=1", "model.ema=false"])
    assert cfg.train.epochs == 40
    ProbeTask.seen.clear()
    learn = Learner(cfg, tmp_path/"run")
    learn.fit()
    assert (learn.plan.epochs, learn.plan.total_steps, learn.cfg.train.epochs) == (3, 5, 3)
    steps = [s for s, *_ in ProbeTask.seen]
    assert steps == [0, 1, 2, 3, 4]
    assert [m for *_, m, _ in ProbeTask.seen] == [True]*4 + [False]  # Mosaic off from step 4
    assert [l1 for *_, l1 in ProbeTask.seen] == [False]*4 + [True]  # L1 on with it
    assert {e for _, _, e, _, _ in ProbeTask.seen} == {3}  # every hook saw the resolved epoch count
    rows = read_results(tmp_path/"run"/"results.csv")
    assert [float(r["train/l1"]) > 0 for r in rows] == [False, False, True]
    assert rows[-1]["val/loss"] and float(rows[-1]["val/loss"]) > 0  # the validation loss is logged


def test_config_is_frozen_and_resolved(coco, tmp_path):
    cfg = apply_overrides(get_experiment("yolox_nano_shapes"), [
        f"data.root={coco}", "data.img_size=64", "data.batch_size=8", "data.eval_batch_size=4",
        "train.iters=3", "train.cpu_threads=1"])
    learn = Learner(cfg, tmp_path/"run")
    with pytest.raises(AttributeError, match="frozen"): learn.cfg.train.epochs = 1
    with pytest.raises(AttributeError, match="frozen"): learn.task.cfg.data.img_size = 32
    cfg.train.epochs = 7  # the user's object stays editable and the learner does not see it
    assert learn.cfg.train.epochs == 2 and learn.plan.epochs == 2


def test_task_sections_apply_to_their_task_only(tmp_path):
    from workbench.data.synthetic import generate
    from workbench.tasks.segmentation import SegmentationTask
    from workbench.config import load_config
    voc = generate(tmp_path/"shapes", n_train=8, n_val=2, seed=0, formats=("voc",))/"voc"
    seg = apply_overrides(get_experiment("seg_shapes"), [
        f"data.root={voc}", "model.name=simple_fcn", "data.batch_size=4", "data.base_size=64", "data.crop_size=64",
        "train.epochs=1", "train.cpu_threads=1"])
    bad = apply_overrides(get_experiment("seg_shapes"), ["detection.rect=true"])
    with pytest.raises(ValueError, match="detection.rect=True is set, but task 'segmentation' does not read"):
        SegmentationTask(bad)
    with pytest.raises(ValueError, match="prompts.prompt='points' is set"):
        SegmentationTask(apply_overrides(get_experiment("seg_shapes"), ["prompts.prompt=points"]))
    from workbench.tasks.detection import DetectionTask
    with pytest.raises(ValueError, match="data.crop_size=96 is set, but task 'detection' does not read it"):
        DetectionTask(apply_overrides(get_experiment("yolox_nano_shapes"), ["data.crop_size=96"]))
    with pytest.raises(ValueError, match="data.img_size=320 is set, but task 'segmentation'"):
        SegmentationTask(apply_overrides(get_experiment("seg_shapes"), ["data.img_size=320"]))
    Learner(seg, tmp_path/"run").fit()
    saved = (tmp_path/"run"/"config.yaml").read_text()
    assert "detection:" not in saved and "prompts:" not in saved and "data:" in saved  # only what it reads
    assert load_config(tmp_path/"run"/"config.yaml").train.epochs == 1
