"A 2-process run started from a notebook (`workbench.cli.launch` in a live kernel) equals the CLI's."
import json, os
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from safetensors.torch import load_file
import torch
from conftest import REPO, train, tiny_args

def run_in_kernel(code:str, cwd:Path, env:dict) -> list:
    "Execute `code` as one cell of a notebook in a fresh ipykernel; returns the cell's outputs."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb.cells[0].outputs

def test_two_processes_from_a_notebook_equal_the_cli(shapes, tmp_path):
    args = lambda name: tiny_args(shapes/"voc", tmp_path/"runs", name, "train.deterministic=true")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MPLBACKEND", None)
    outputs = run_in_kernel(f"from workbench.cli import launch\nassert launch({args('nb')!r}, num_processes=2) == 0",
                            REPO, env)
    text = "".join(o.get("text", "") for o in outputs)
    assert not [o for o in outputs if o.output_type == "error"], text
    assert "2 process(es) (gloo) on cpu" in text, text
    train(*args("cli"), nproc=2)
    runs = tmp_path/"runs"/"seg_shapes"
    assert sorted(p.name for p in runs.iterdir()) == ["cli", "nb"]  # one folder per run, not per process
    metrics = lambda r: json.loads((runs/r/"metrics.json").read_text())
    assert metrics("nb") == metrics("cli")
    a, b = (load_file(runs/r/"weights"/"last.safetensors") for r in ("nb", "cli"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
