"""COCO bbox evaluation: plain pycocotools (the reference) vs `coco_eval` with each backend.

usage: OMP_NUM_THREADS=1 python bench/bench_coco_eval.py [--gt GT.json] [--results RES.json]
                                                          [--repeats 15]

Default pair: the cocoapi evaluation demo (tests/reference/coco_demo: COCO val2014, 100 images, the
734 fake bbox results of pycocoEvalDemo.ipynb). Each repeat runs, in a rotating order, the reference
(`COCO(gt)`, `loadRes(results)`, `COCOeval` evaluate/accumulate/summarize, as the demo does) and
`coco_eval(gt, results, backend=...)` for each backend, every one reading both JSON files itself.
Prints the median seconds of each, the ratio reference / ours (> 1: ours faster; the issue's goal is
>= 5 with the default backend) and asserts that the 12 stats agree: bit for bit with the pycocotools
backend, to 1e-12 (and to the 3 printed decimals) with faster-coco-eval, whose C++ accumulation may
round a last bit differently.
"""
import argparse, contextlib, io, json, statistics, time
from pathlib import Path
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from workbench.detection.postprocess import COCO_BACKENDS, STAT_NAMES, coco_eval, coco_backend

DEMO = Path(__file__).resolve().parents[1]/"tests"/"reference"/"coco_demo"

def reference(gt_path, res_path) -> np.ndarray: # [12]
    "The cocoapi demo, as written: pycocotools alone."
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        E = COCOeval(gt, gt.loadRes(str(res_path)), "bbox")
        E.evaluate(); E.accumulate(); E.summarize()
    return E.stats

def ours(gt_path, res_path, backend) -> np.ndarray: # [12], -1 where undefined (as pycocotools)
    m = coco_eval(gt_path, json.loads(Path(res_path).read_text()), backend=backend)
    return np.array([-1.0 if np.isnan(m[k]) else m[k] for k in STAT_NAMES])

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gt", default=DEMO/"instances_val2014_100.json")
    p.add_argument("--results", default=DEMO/"instances_val2014_fakebbox100_results.json")
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args()
    runs = {"pycocotools (reference)": lambda: reference(a.gt, a.results)}
    runs |= {f"coco_eval {b}": (lambda b=b: ours(a.gt, a.results, b)) for b in COCO_BACKENDS}
    stats = {k: f() for k, f in runs.items()}  # warm-up (imports, caches), and the numbers
    times = {k: [] for k in runs}
    for i in range(a.repeats):  # interleaved, the order rotated each repeat
        for k in list(runs)[i % len(runs):] + list(runs)[:i % len(runs)]:
            t = time.perf_counter(); runs[k](); times[k].append(time.perf_counter() - t)
    ref_key, ref = next(iter(runs)), stats[next(iter(runs))]
    print(f"{a.gt} + {a.results}: median of {a.repeats} interleaved repeats; auto = "
          f"{coco_backend()[0]}")
    t_ref = statistics.median(times[ref_key])
    for k, ts in times.items():
        t = statistics.median(ts)
        print(f"  {k:<28} {t:8.4f} s   reference / this = {t_ref / t:5.2f}")
    print("  stats  " + " ".join(f"{n}={v:.3f}" for n, v in zip(STAT_NAMES, ref)))
    for k, s in stats.items():
        diff = float(np.abs(s - ref).max())
        print(f"  {k:<28} max |stat - reference| = {diff:.1e}")
        assert [f"{v:.3f}" for v in s] == [f"{v:.3f}" for v in ref], (k, s, ref)
        assert diff <= 1e-12, (k, diff)
    assert np.array_equal(stats["coco_eval pycocotools"], ref)  # same library: bit for bit

if __name__ == "__main__":
    main()
