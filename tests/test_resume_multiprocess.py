"Exact resume after a kill mid-epoch, and 2 CPU processes scoring exactly like 1."
import csv, json, os, signal, subprocess, sys, time
from pathlib import Path
import torch
from safetensors.torch import load_file
from conftest import REPO, SCRIPT, train, tiny_args

def _same_weights(a, b):
    sa, sb = load_file(a), load_file(b)
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa)

def _step(run):
    "Optimizer steps of the run's last checkpoint (its registered `TrainState`), -1 while there is none."
    try: return torch.load(run/"state"/"custom_checkpoint_0.pkl", weights_only=False)["step"]
    except (FileNotFoundError, EOFError, RuntimeError, KeyError): return -1

def test_kill_mid_epoch_then_resume_equals_uninterrupted(shapes, tmp_path):
    args = lambda name: tiny_args(shapes/"voc", tmp_path/"runs", name, "train.epochs=3", "train.save_every_steps=1",
                                  "train.deterministic=true", "data.crop_size=96")
    train(*args("full"))
    run = tmp_path/"runs"/"seg_shapes"/"killed"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "MPLBACKEND": "Agg"}
    p = subprocess.Popen([sys.executable, str(SCRIPT), *args("killed")], cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while _step(run) < 8 and p.poll() is None and time.time() - t0 < 300: time.sleep(0.01)
    p.send_signal(signal.SIGKILL); p.wait()
    killed_at = _step(run)
    assert 8 <= killed_at < 18 and not (run/"metrics.json").exists(), f"the run was not killed mid-training ({killed_at})"
    assert killed_at % 6 != 0 or True  # 6 steps per epoch: any step from 8 on is inside epoch 2 or 3
    train(*args("killed"), "--resume", "auto")
    full = tmp_path/"runs"/"seg_shapes"/"full"
    assert _same_weights(full/"weights"/"last.safetensors", run/"weights"/"last.safetensors")
    rows = lambda r: [row for row in csv.reader((r/"results.csv").open())]
    assert rows(full) == rows(run)  # same losses, LRs and metrics, each epoch logged once

def test_two_processes_score_like_one(shapes, tmp_path):
    train(*tiny_args(shapes/"voc", tmp_path/"runs", "t", "train.epochs=1"))
    w = str(tmp_path/"runs"/"seg_shapes"/"t"/"weights"/"best.safetensors")
    # 9 val images over 2 processes: Accelerate repeats a sample to even out the last batch; gather_for_metrics must drop it
    train(*tiny_args(shapes/"voc", tmp_path/"runs", "e1"), "--eval-only", "--weights", w)
    r = train(*tiny_args(shapes/"voc", tmp_path/"runs", "e2"), "--eval-only", "--weights", w, nproc=2)
    assert "2 process(es)" in r.stdout, r.stdout
    m1 = json.loads((tmp_path/"runs/seg_shapes/e1/metrics.json").read_text())
    m2 = json.loads((tmp_path/"runs/seg_shapes/e2/metrics.json").read_text())
    assert m1 == m2

def test_two_process_training_with_accumulation_ends_at_min_lr(shapes, tmp_path):
    r = train(*tiny_args(shapes/"voc", tmp_path/"runs", "ddp", "train.grad_accum=2", "sched.name=cosine",
                         "sched.min_lr_ratio=0.1", "optim.lr=0.01"), nproc=2)
    assert "2 process(es)" in r.stdout, r.stdout
    run = tmp_path/"runs"/"seg_shapes"/"ddp"
    rows = list(csv.DictReader((run/"results.csv").open()))
    # 24 images / (2 processes × 4) = 3 micro-batches per process per epoch -> 2 optimizer steps per epoch
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert abs(float(rows[-1]["lr"]) - 0.001) < 1e-9  # the configured minimum, 0.1 × 0.01
    assert (run/"metrics.json").is_file()
