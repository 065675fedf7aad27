"""How COCO bbox evaluation time grows with the number of images: plain pycocotools vs `coco_eval`.

usage: OMP_NUM_THREADS=1 python bench/bench_coco_scaling.py [--sizes 100 500 1000 2000 5000]
                                                             [--repeats 3] [--out PNG]

Synthetic COCO data (seeded): 640×480 images with Poisson(7) ground-truth boxes of 5 categories,
log-uniform sizes from 8 to 300 px (every area range), 3 % crowd, and 20 scored detections per
image (jittered copies of the boxes, a tenth mislabelled, the rest false positives). Both sides
read the same two JSON files: the reference is pycocotools alone (`COCO`, `loadRes`, `COCOeval`
evaluate/accumulate/summarize), ours `coco_eval(gt, results)` with the default ("auto") backend.
For each size the two run interleaved `--repeats` times; the table gives the median seconds, the
ratio reference / ours and the milliseconds per image, then the exponent b of a fit time ~ n^b.
The 12 stats of both are asserted equal to 1e-12. The plot (seconds and ratio against images)
goes to `--out` (default bench/out/coco_scaling.png).
"""
import argparse, contextlib, io, json, statistics, tempfile, time
from pathlib import Path
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from workbench.detection.postprocess import STAT_NAMES, coco_backend, coco_eval

def synthetic(n_images, seed=0, gt_per_image=7, dets_per_image=20, n_cats=5) -> tuple:
    "(ground truth dict, results list) as described above."
    rng, size = np.random.default_rng(seed), np.array([640.0, 480.0])
    images = [{"id": i, "width": 640, "height": 480} for i in range(1, n_images + 1)]
    anns, res = [], []
    for i in range(1, n_images + 1):
        k = int(rng.poisson(gt_per_image))
        wh = np.exp(rng.uniform(np.log(8), np.log(300), (k, 2)))
        boxes, cats = np.concatenate([rng.uniform(0, 1, (k, 2)) * (size - wh), wh], 1), \
            rng.integers(1, n_cats + 1, k)
        anns += [{"id": len(anns) + j + 1, "image_id": i, "category_id": c, "bbox": b,
                  "area": b[2] * b[3], "iscrowd": int(rng.random() < 0.03)}
                 for j, (b, c) in enumerate(zip(boxes.round(2).tolist(), cats.tolist()))]
        tp = min(k, dets_per_image)
        jit = boxes[:tp] + rng.normal(0, 0.08, (tp, 4)) * np.tile(wh[:tp], 2)
        fwh = np.exp(rng.uniform(np.log(8), np.log(300), (dets_per_image - tp, 2)))
        fp = np.concatenate([rng.uniform(0, 1, (len(fwh), 2)) * (size - fwh), fwh], 1)
        dets = np.concatenate([jit, fp]); dets[:, 2:] = dets[:, 2:].clip(1)
        labels = np.concatenate([np.where(rng.random(tp) < 0.9, cats[:tp],
                                          rng.integers(1, n_cats + 1, tp)),
                                 rng.integers(1, n_cats + 1, len(fp))])
        scores = np.concatenate([rng.uniform(0.3, 1, tp), rng.uniform(0, 0.7, len(fp))])
        res += [{"image_id": i, "category_id": c, "bbox": b, "score": s} for b, c, s in
                zip(dets.round(2).tolist(), labels.tolist(), scores.round(4).tolist())]
    cats = [{"id": c, "name": f"class{c}"} for c in range(1, n_cats + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, res

def reference(gt_path, res_path) -> np.ndarray: # [12]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        E = COCOeval(gt, gt.loadRes(str(res_path)), "bbox")
        E.evaluate(); E.accumulate(); E.summarize()
    return E.stats

def ours(gt_path, res_path) -> np.ndarray: # [12], -1 where undefined
    m = coco_eval(gt_path, json.loads(Path(res_path).read_text()))
    return np.array([-1.0 if np.isnan(m[k]) else m[k] for k in STAT_NAMES])

def time_size(n, repeats, tmp) -> dict:
    gt, res = synthetic(n)
    gt_path, res_path = tmp/f"gt_{n}.json", tmp/f"res_{n}.json"
    gt_path.write_text(json.dumps(gt)); res_path.write_text(json.dumps(res))
    runs = {"reference": lambda: reference(gt_path, res_path),
            "ours": lambda: ours(gt_path, res_path)}
    times, stats = {k: [] for k in runs}, {}
    for r in range(repeats):  # interleaved, the order alternated
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t = time.perf_counter(); stats[k] = runs[k](); times[k].append(time.perf_counter() - t)
    assert np.abs(stats["ours"] - stats["reference"]).max() <= 1e-12, (n, stats)
    return {"n": n, "gt": len(gt["annotations"]), "dets": len(res), "AP": stats["ours"][0],
            **{k: statistics.median(v) for k, v in times.items()}}

def plot(rows, out:Path, backend:str):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = [r["n"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(n, [r["reference"] for r in rows], "o-", label="pycocotools (reference)")
    a.loglog(n, [r["ours"] for r in rows], "s-", label=f"coco_eval ({backend})")
    a.set(xlabel="images (~7 GT boxes, 20 detections each)", ylabel="seconds (median)",
          title="COCO bbox evaluation time")
    a.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    a.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    a.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a.grid(True, which="both", alpha=0.3); a.legend()
    b.semilogx(n, [r["reference"] / r["ours"] for r in rows], "o-", color="C2")
    b.axhline(5, color="gray", ls="--", lw=1, label="5×")
    b.set(xlabel="images", ylabel="reference / ours", title="speed-up", ylim=(0, None))
    b.grid(True, which="both", alpha=0.3); b.legend()
    for ax in (a, b):
        ax.set_xticks(n, [str(v) for v in n])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    fig.tight_layout(); out.parent.mkdir(parents=True, exist_ok=True); fig.savefig(out, dpi=120)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 2000, 5000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent/"out"/"coco_scaling.png")
    a = p.parse_args()
    backend = coco_backend()[0]
    with tempfile.TemporaryDirectory() as tmp:
        time_size(50, 1, Path(tmp))  # warm-up: imports
        print(f"median of {a.repeats} interleaved repeats; ours: coco_eval, backend {backend}")
        print(f"{'images':>7} {'GT':>7} {'dets':>7} {'AP':>6} {'reference s':>12} {'ours s':>9} "
              f"{'ratio':>6} {'ref ms/img':>10} {'ours ms/img':>11}")
        rows = []
        for n in a.sizes:
            r = time_size(n, a.repeats, Path(tmp)); rows.append(r)
            print(f"{n:7d} {r['gt']:7d} {r['dets']:7d} {r['AP']:6.3f} {r['reference']:12.3f} "
                  f"{r['ours']:9.3f} {r['reference'] / r['ours']:6.2f} "
                  f"{1e3 * r['reference'] / n:10.2f} {1e3 * r['ours'] / n:11.2f}", flush=True)
    if len(rows) > 1:
        ln = np.log([r["n"] for r in rows])
        fit = {k: np.polyfit(ln, np.log([r[k] for r in rows]), 1)[0] for k in ("reference", "ours")}
        print(f"time ~ n^b: reference b = {fit['reference']:.2f}, ours b = {fit['ours']:.2f}")
    plot(rows, a.out, backend)
    print(f"plot: {a.out}")

if __name__ == "__main__":
    main()
