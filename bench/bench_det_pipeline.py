"""Detection data pipeline throughput of ONE DataLoader worker (single-threaded, as in a worker), at 640:
the YOLOX training pipeline (mosaic + affine + MixUp + HSV + flip + letterbox) against the eval pipeline
(letterbox only), on the synthetic shapes data. Prints images/s and the cost ratio. Runs in well under a minute.

    python bench/bench_det_pipeline.py [--size 640] [--seconds 4] [--data-root DIR]
"""
import argparse, random, tempfile, time
from pathlib import Path
import cv2, numpy as np, torch
from workbench.data.coco import COCODetection
from workbench.data.synthetic import generate
from workbench.detection.transforms import MosaicDataset, DetEvalDataset, detection_collate

def rate(ds, seconds:float, batch:int=0) -> float:
    "Samples per second of `ds[i]` (plus `detection_collate` every `batch` samples) over about `seconds`."
    random.seed(0); np.random.seed(0)
    for i in range(3): ds[i]  # warm-up
    n, items, t0 = 0, [], time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        items.append(ds[n % len(ds)]); n += 1
        if batch and len(items) == batch: detection_collate(items); items = []
    return n / (time.perf_counter() - t0)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    ap.add_argument("--data-root", default=None, help="a shapes dataset root (default: 64 generated images in a temp folder)")
    a = ap.parse_args(argv)
    cv2.setNumThreads(0); torch.set_num_threads(1)  # what a DataLoader worker runs with (det_worker_init)
    root = Path(a.data_root) if a.data_root else generate(Path(tempfile.mkdtemp())/"shapes", n_train=64, n_val=1, seed=0, formats="coco")
    ds = COCODetection(root/"coco", "annotations/instances_train.json")
    h, w = (int(v) for v in np.median(ds.sizes, 0))
    print(f"{len(ds)} images of about {h}x{w} px -> {a.size}x{a.size}; 1 thread, {a.seconds:g} s per row")
    rows = [("decode only (COCODetection)", ds, 0),
            ("letterbox only (eval)", DetEvalDataset(ds, a.size), 0),
            ("mosaic + affine + HSV + flip + letterbox", MosaicDataset(ds, a.size, enable_mixup=False), 0),
            ("  + MixUp (YOLOX default)", MosaicDataset(ds, a.size), 0),
            ("  + MixUp + collate (batch 16)", MosaicDataset(ds, a.size), 16)]
    res = {name: rate(d, a.seconds, b) for name, d, b in rows}
    for name, r in res.items(): print(f"{name:42s} {r:8.1f} images/s per worker")
    base, full = res["letterbox only (eval)"], res["  + MixUp (YOLOX default)"]
    print(f"ratio: the training pipeline costs {base / full:.1f}x the letterbox-only one "
          f"({full:.0f} vs {base:.0f} images/s); a batch of 64 at this rate needs {64 / full:.2f} s of one worker")

if __name__ == "__main__": main()
