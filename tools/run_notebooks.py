"""Run All for notebooks: execute every cell of each notebook in a live ipykernel, as JupyterLab does.

Unlike `nbdev_test`, no cell is skipped (`#| eval: false` and test flags are ignored) and figures are
drawn by the inline backend. Executed copies, with their outputs, go to `--out` (the docs site is
rendered from them); the source notebooks are not touched. Fails on any error output.

    python tools/run_notebooks.py                      # every notebook under nbs/
    python tools/run_notebooks.py nbs/05_viz.ipynb --out /tmp/executed
"""
import argparse, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

def notebooks(paths): # list of Path
    "The notebooks to run: the paths given (files or folders), else every notebook under nbs/."
    found = []
    for p in map(Path, paths or [ROOT/"nbs"]):
        found += sorted(p.rglob("*.ipynb")) if p.is_dir() else [p]
    return [p.resolve() for p in found
            if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_")]

def kernel_env(jobs:int=1) -> dict:
    """A kernel's environment as JupyterLab gives it (no forced Agg backend: figures show inline), with a
    share of the cores per kernel when several run at once (torch threads beyond the cores thrash)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    if jobs > 1: env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return env

def errors(nb) -> list:
    "`(cell index, 'Name: message')` for every error output of an executed notebook."
    return [(i, f"{o.get('ename')}: {o.get('evalue')}") for i, c in enumerate(nb.cells)
            if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]

def run_one(path:Path, out:Path|None, timeout:int, jobs:int=1):
    "Execute `path` top to bottom in its own folder; returns (path, seconds, errors)."
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try: client.execute(env=kernel_env(jobs))
    except Exception as e:  # a cell timeout, a dead kernel: this notebook fails, the others still run
        first = (str(e).strip() or "?").splitlines()[0]
        return path, time.perf_counter() - t0, [(-1, f"{type(e).__name__}: {first}")]
    secs = time.perf_counter() - t0
    if out is not None:
        nbs = ROOT/"nbs"
        dest = out/(path.relative_to(nbs) if path.is_relative_to(nbs) else path.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)
    return path, secs, errors(nb)

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: nbs/)")
    p.add_argument("--out", type=Path, help="folder for the executed copies (mirrors nbs/)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    p.add_argument("-j", "--jobs", type=int, default=1, help="notebooks run at once")
    a = p.parse_args(argv)
    nbs, failed, t0 = notebooks(a.paths), 0, time.perf_counter()
    with ThreadPoolExecutor(a.jobs) as pool:
        for path, secs, errs in pool.map(lambda n: run_one(n, a.out, a.timeout, a.jobs), nbs):
            failed += bool(errs)
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            print(f"{'FAIL' if errs else 'ok  '} {secs:6.1f}s  {name}", flush=True)
            for i, msg in errs: print(f"       cell {i}: {msg}", flush=True)
    print(f"Run All of {len(nbs)} notebooks took {time.perf_counter() - t0:.0f}s")
    print(f"Run All: {len(nbs) - failed} passed, {failed} failed")
    return 1 if failed or not nbs else 0

if __name__ == "__main__": sys.exit(main())
