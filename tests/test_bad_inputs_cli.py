"""Bad settings, files and disks through `workbench/train.py` (in process): one clear line, exit 2.

Issue 14: malformed YAML, impossible settings, corrupt / foreign weights, unreadable checkpoints,
write failures, `--eval-only` without a usable train split."""
import errno, json, os
from pathlib import Path
import pytest, torch
from torch import nn
from safetensors.torch import save_file, load_file
from workbench.cli import main
from workbench.learner import checkpoint_state, read_results

pytestmark = pytest.mark.usefixtures("one_thread")


def seg_args(shapes, out, name, *extra):
    "A seconds-long segmentation run on the small shapes data (VOC layout)."
    return ["--exp", "seg_shapes", "--output", str(out), "--name", name, "--set",
            "model.name=simple_fcn", f"data.root={shapes/'voc'}", "data.batch_size=4",
            "data.base_size=64", "data.crop_size=64", "train.epochs=2", *extra]


def run(capsys, argv):
    "(exit code, stdout, stderr) of `main(argv)`."
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory):
    "A finished 2-epoch run (state/ = epoch 2, state.old/ = epoch 1)."
    out = tmp_path_factory.mktemp("runs")
    assert main(seg_args(shapes, out, "base")) == 0
    return out/"seg_shapes"/"base"


# -- the config file and --set ---------------------------------------------------------------------
@pytest.mark.parametrize("text, where", [
    ("optim:\n  lr: [0.1\ntrain:\n  epochs: 2\n", "line 3, column 6"),  # unclosed [
    ("train:\n\tepochs: 2\n", "line 2, column 1"),  # a tab
    ("train:\n  epochs: 2\n   lr: 3\n", "line 3"),  # indentation
    ("- train.epochs=2\n", "expected a mapping"),  # a list, not sections
    ("train: 3\n", "train"),  # a section given a value
])
def test_malformed_config_names_the_file_and_line(capsys, tmp_path, text, where):
    f = tmp_path/"my_config.yaml"
    f.write_text(text)
    code, _, err = run(capsys, ["--config", f, "--output", tmp_path/"runs"])
    assert code == 2 and "my_config.yaml" in err and where in err, err
    assert "Traceback" not in err and not (tmp_path/"runs").exists()


def test_binary_config_file(capsys, tmp_path):
    f = tmp_path/"weights.yaml"
    f.write_bytes(bytes(range(256)) * 4)
    code, _, err = run(capsys, ["--config", f, "--output", tmp_path/"runs"])
    assert code == 2 and "weights.yaml: not a text (YAML) file" in err


def test_set_value_that_is_not_yaml(capsys, tmp_path):
    code, _, err = run(capsys, ["--set", "optim.lr=[0.1", "--output", tmp_path/"runs"])
    assert code == 2 and "'optim.lr=[0.1'" in err


@pytest.mark.parametrize("setting, named", [
    ("train.epochs=0", "train.epochs=0 trains nothing"),
    ("train.epochs=-3", "train.epochs=-3"),
    ("data.batch_size=0", "data.batch_size=0"),
    ("data.eval_batch_size=0", "data.eval_batch_size=0"),
    ("optim.lr=-0.01", "optim.lr=-0.01"),
    ("optim.lr=.nan", "optim.lr=nan"),
    ("data.hflip=1.5", "data.hflip=1.5"),
    ("data.scale=[2.0, 0.5]", "data.scale=(2.0, 0.5)"),
    ("train.eval_every=0", "train.eval_every=0"),
    ("train.grad_accum=0", "train.grad_accum=0"),
    ("data.img_size=100", "data.img_size=100"),
    ("train.mixed_precision=fp8", "train.mixed_precision='fp8'"),
    ("sched.name=linear", "sched.name='linear'"),
    ("optim.name=lamb", "optim.name='lamb'"),
    ("data.num_workers=-1", "data.num_workers=-1"),
    ("detection.mosaic_prob=2", "detection.mosaic_prob=2.0"),
    ("model.test_mode=slide", "model.test_mode=slide needs model.test_crop"),
])
def test_impossible_settings_fail_before_any_work(capsys, tmp_path, setting, named):
    code, out, err = run(capsys, ["--set", setting, "--output", tmp_path/"runs"])
    assert code == 2 and named in err, err
    assert not (tmp_path/"runs").exists()  # no run folder, nothing built


def test_impossible_settings_in_a_notebook_learner(tmp_path):
    from workbench.config import get_experiment, apply_overrides
    from workbench.learner import Learner
    cfg = apply_overrides(get_experiment("seg_shapes"), ["train.epochs=0"])
    with pytest.raises(ValueError, match="train.epochs=0 trains nothing"):
        Learner(cfg, tmp_path/"run")


def test_debug_env_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_DEBUG", "1")
    with pytest.raises(ValueError, match="train.epochs=0"):
        main(["--set", "train.epochs=0", "--output", str(tmp_path/"runs")])


# -- weights ---------------------------------------------------------------------------------------
def test_corrupt_weights_files_are_named(capsys, shapes, tmp_path, trained):
    good = trained/"weights"/"best.safetensors"
    trunc = tmp_path/"truncated.safetensors"
    trunc.write_bytes(good.read_bytes()[:1000])
    text = tmp_path/"notes.pth"
    text.write_text("these are not weights")
    lst = tmp_path/"list.pt"
    torch.save([1, 2, 3], lst)
    for f, why in [(trunc, "cannot read weights"), (text, "cannot read weights"),
                   (lst, "holds no state_dict")]:
        for argv in (seg_args(shapes, tmp_path, "x", f"model.weights={f}"),
                     seg_args(shapes, tmp_path, "y") + ["--eval-only", "--weights", f]):
            code, _, err = run(capsys, argv)
            assert code == 2 and f.name in err and why in err, err
            assert "Traceback" not in err


def test_weights_of_another_model_are_an_error_unless_partial(capsys, shapes, tmp_path):
    other = tmp_path/"other.safetensors"
    save_file(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).state_dict(), other)
    code, _, err = run(capsys, seg_args(shapes, tmp_path, "a", f"model.weights={other}"))
    assert code == 2 and "other.safetensors: only 0 of" in err and "weights_partial" in err
    code, out, _ = run(capsys, seg_args(shapes, tmp_path, "b", f"model.weights={other}",
                                        "model.weights_partial=true", "train.epochs=1"))
    assert code == 0 and "loaded " in out and "other.safetensors: 0/" in out


def test_matching_weights_load_and_say_how_many(capsys, shapes, tmp_path, trained):
    w = trained/"weights"/"best.safetensors"
    n = sum(v.is_floating_point() for v in load_file(w).values())  # not BatchNorm step counts
    code, out, _ = run(capsys, seg_args(shapes, tmp_path, "c", f"model.weights={w}",
                                        "train.epochs=1"))
    assert code == 0 and f"loaded {w}: {n}/{n} tensors" in out


# -- checkpoints -----------------------------------------------------------------------------------
def copy_run(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncate_model", "truncate_state", "delete_custom"])
def test_resume_from_a_corrupt_state_falls_back_to_state_old(capsys, shapes, tmp_path, trained,
                                                             damage):
    run_dir = copy_run(trained, tmp_path/"seg_shapes"/"r")
    st = run_dir/"state"
    if damage == "truncate_model":
        (st/"model.safetensors").write_bytes((st/"model.safetensors").read_bytes()[:100])
    elif damage == "truncate_state":
        (st/"optimizer.bin").write_bytes((st/"optimizer.bin").read_bytes()[:50])
    else:
        (st/"custom_checkpoint_0.pkl").unlink()
    code, out, err = run(capsys, seg_args(shapes, tmp_path, "r") + ["--resume", run_dir])
    assert code == 0, err
    assert "is unreadable" in out and "state.old" in out
    # epoch 2 trained again from the epoch-1 checkpoint: the same weights as the first time
    a = load_file(trained/"weights"/"last.safetensors")
    b = load_file(run_dir/"weights"/"last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in read_results(run_dir/"results.csv")] == ["1", "2"]


def test_resume_with_no_readable_checkpoint_is_one_line(capsys, shapes, tmp_path, trained):
    run_dir = copy_run(trained, tmp_path/"seg_shapes"/"r")
    for d in ("state", "state.old"):
        (run_dir/d/"model.safetensors").write_bytes(b"\0" * 10)
    code, _, err = run(capsys, seg_args(shapes, tmp_path, "r") + ["--resume", run_dir])
    assert code == 2 and "cannot resume from" in err and "unreadable" in err
    assert "Traceback" not in err


def test_resume_of_a_missing_run_names_it(capsys, tmp_path):
    code, _, err = run(capsys, ["--resume", tmp_path/"nowhere", "--output", tmp_path])
    assert code == 2 and "nowhere" in err


# -- disks -----------------------------------------------------------------------------------------
def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(capsys, shapes, tmp_path,
                                                                 trained, monkeypatch):
    run_dir = copy_run(trained, tmp_path/"seg_shapes"/"r")
    def full(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    code, _, err = run(capsys, seg_args(shapes, tmp_path, "r", "train.epochs=3")
                       + ["--resume", run_dir])
    assert code == 2 and "cannot write the checkpoint" in err and "No space left" in err, err
    errors = [l for l in err.splitlines() if "error" in l.lower()]  # stderr also has tqdm's bars
    assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in err
    monkeypatch.undo()
    assert checkpoint_state(run_dir)["epoch"] == 2 and not (run_dir/"state.tmp").exists()


def test_unwritable_output_folder_is_one_line(capsys, tmp_path):
    blocker = tmp_path/"a_file"
    blocker.write_text("")
    code, _, err = run(capsys, ["--output", blocker/"runs"])
    assert code == 2 and "cannot write the run folder" in err and "a_file" in err
    assert "Traceback" not in err


def test_full_disk_writing_results_names_the_file(capsys, shapes, tmp_path, monkeypatch):
    import workbench.core
    real = workbench.core.os.replace
    def full(src, dst):
        if str(dst).endswith("results.csv"): raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(workbench.core.os, "replace", full)
    code, _, err = run(capsys, seg_args(shapes, tmp_path, "d", "train.epochs=1"))
    assert code == 2 and "results.csv: No space left on device" in err, err


# -- --eval-only -----------------------------------------------------------------------------------
def test_eval_only_does_not_read_the_train_split(capsys, shapes, tmp_path, trained):
    w = trained/"weights"/"last.safetensors"  # the weights metrics.json was computed with
    code, out, err = run(capsys, seg_args(shapes, tmp_path, "e", "data.batch_size=1000",
                                          "data.train_split=no_such_split")
                         + ["--eval-only", "--weights", w])
    assert code == 0, err
    assert "evaluation only" in out
    run_dir = tmp_path/"seg_shapes"/"e"
    m = json.loads((run_dir/"metrics.json").read_text())
    assert m["mIoU"] == pytest.approx(json.loads((trained/"metrics.json").read_text())["mIoU"])
    assert (run_dir/"config.yaml").is_file()


# -- run folders, data roots, odd weights files ----------------------------------------------------
def test_a_new_run_never_writes_into_an_existing_one(capsys, shapes, tmp_path, trained):
    out = trained.parent.parent
    code, _, err = run(capsys, seg_args(shapes, out, trained.name))
    assert code == 2 and "holds a run already" in err and "--resume" in err
    assert [r["epoch"] for r in read_results(trained/"results.csv")] == ["1", "2"]


def test_missing_data_root_is_named(capsys, tmp_path):
    code, _, err = run(capsys, ["--data-root", tmp_path/"no_data_here", "--output", tmp_path])
    assert code == 2 and "no_data_here" in err and "no such folder" in err


def test_weights_with_nan_or_a_folder_are_named(capsys, shapes, tmp_path, trained):
    sd = load_file(trained/"weights"/"best.safetensors")
    k = next(k for k, v in sd.items() if v.is_floating_point())
    sd[k] = sd[k].clone().fill_(float("nan"))
    save_file(sd, tmp_path/"nan.safetensors")
    nan = tmp_path/"nan.safetensors"
    code, _, err = run(capsys, seg_args(shapes, tmp_path, "n", f"model.weights={nan}"))
    assert code == 2 and "nan.safetensors" in err and "NaN or Inf" in err and k in err
    code, _, err = run(capsys, seg_args(shapes, tmp_path, "f", f"model.weights={trained/'weights'}"))
    assert code == 2 and "is a folder" in err


def test_val_images_that_are_train_images_are_reported(capsys, shapes, tmp_path):
    code, out, _ = run(capsys, seg_args(shapes, tmp_path, "o", "data.val_split=train",
                                        "train.epochs=1"))
    assert code == 0 and "data (val):" in out and "train_overlap 24" in out
    code, _, err = run(capsys, seg_args(shapes, tmp_path, "p", "data.val_split=train",
                                        "data.strict=true"))
    assert code == 2 and "train_overlap" in err and "data.strict=true" in err


@pytest.mark.parametrize("setting, named", [
    ("detection.multiscale=[320]", "detection.multiscale=(320,) must be 2 multiples of 32"),
    ("data.classes=[a,a,b,c,d,e]", "data.classes names a class twice"),
])
def test_more_impossible_settings(capsys, tmp_path, setting, named):
    code, _, err = run(capsys, ["--set", setting, "--output", tmp_path/"runs"])
    assert code == 2 and named in err, err


@pytest.mark.parametrize("exp, setting, named", [
    ("seg_shapes", "model.freeze=encoder", "model.freeze='encoder' is set, but task 'segmentation'"),
    ("seg_shapes", "model.nms=yolov3_eval", "model.nms='yolov3_eval' is set"),
    ("yolox_nano_shapes", "model.backbone_only=true", "model.backbone_only=True is set"),
    ("yolox_nano_shapes", "model.nms=foo", "model.nms='foo': expected one of"),
    ("efficient_sam_shapes", "model.test_mode=slide", "model.test_mode='slide' is set"),
])
def test_model_fields_a_task_does_not_read_are_errors(capsys, tmp_path, exp, setting, named):
    extra = ["model.test_crop=8", "model.test_stride=8"] if "slide" in setting else []
    code, _, err = run(capsys, ["--exp", exp, "--set", setting, *extra, "--output", tmp_path])
    assert code == 2 and named in err, err
