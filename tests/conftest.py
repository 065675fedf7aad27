"""Shared fixtures: a tiny synthetic dataset, a helper that runs `workbench/train.py` as a script, and the
JupyterLab + Chromium pair of the real-browser tests (`tools/jupyterlab_browser.py`)."""
import os, socket, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO/"workbench"/"train.py"

@pytest.fixture(scope="module")
def one_thread():
    "torch on one thread for a module's tests (`pytestmark = pytest.mark.usefixtures('one_thread')`)."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)

@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    "A small shapes dataset (24 train / 9 val images, all four formats); returns its root."
    from workbench.data.synthetic import generate
    return generate(tmp_path_factory.mktemp("data")/"shapes", n_train=24, n_val=9, seed=1)

def tiny_args(voc_root, out, name, *extra):
    "Arguments for a seconds-long CPU run of the default segmentation task on `voc_root`."
    return ["--exp", "seg_shapes", "--output", str(out), "--name", name, "--set", "model.name=simple_fcn",
            f"data.root={voc_root}", "data.batch_size=4", "data.eval_batch_size=1", "data.base_size=64",
            "data.crop_size=64", "data.eval_size=0", "model.tta=false", "train.epochs=2", *extra]

def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def train(*args, nproc=1, timeout=600, cwd=None, env=None, check=True):
    "Run the training script (under torchrun with `nproc` CPU processes when > 1); returns the CompletedProcess."
    cmd = [sys.executable, str(SCRIPT), *args]
    if nproc > 1: cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                         f"--master_port={free_port()}", str(SCRIPT), *args]
    e = {**os.environ, "ACCELERATE_USE_CPU": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1" if nproc > 1 else os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
    r = subprocess.run(cmd, cwd=cwd or REPO, env=e, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0: raise AssertionError(f"exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-5000:]}")
    return r

# The real-browser tests. A module sets `BROWSER_NEEDS` ({import name: what to install}, beyond what
# `jupyterlab_browser.missing` always checks), `BROWSER_TEST` (its name in the skip message) and, optionally,
# `LAB_ROOT` (the folder JupyterLab serves; default: this repository).
def _jb():
    sys.path.insert(0, str(REPO/"tools"))
    import jupyterlab_browser
    return jupyterlab_browser

@pytest.fixture(scope="module")
def browser_env(request):
    "Skip the module when this machine lacks what it needs; with WORKBENCH_REQUIRE_BROWSER=1 (CI) that fails."
    missing = _jb().missing(getattr(request.module, "BROWSER_NEEDS", None))
    if missing:
        msg = f"{getattr(request.module, 'BROWSER_TEST', request.module.__name__)} needs " + "; ".join(missing)
        if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1": pytest.fail(msg + " (WORKBENCH_REQUIRE_BROWSER=1)")
        pytest.skip(msg)

@pytest.fixture(scope="module")
def lab(browser_env, request):
    "A JupyterLab on 127.0.0.1 serving the module's `LAB_ROOT` (default: the repository), stopped after it."
    server = _jb().JupyterLab(getattr(request.module, "LAB_ROOT", REPO))
    server.start()
    yield server
    server.stop()

@pytest.fixture(scope="module")
def chrome(browser_env):
    "A headless Chromium driven by Playwright, stopped after the module."
    browser = _jb().Chromium()
    browser.start()
    yield browser
    browser.stop()
