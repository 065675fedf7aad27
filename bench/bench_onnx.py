"""onnxruntime against eager PyTorch on CPU, one thread each, on the graphs `workbench/export.py` writes.

    nice -n 19 python bench/bench_onnx.py                 # all cases, 5 rounds
    python bench/bench_onnx.py --rounds 9 --only yolox    # cases whose name contains "yolox"

Each case is exported once (random weights: the speed does not depend on them), checked, then timed in
rounds that alternate PyTorch and onnxruntime on the same input (after one warm-up call of each), so
that both see the same machine load. Prints one row per graph: input shape, median milliseconds of
each, the ratio onnxruntime / eager (below 1: onnxruntime is faster), and the max abs difference.
"""
import argparse, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import workbench.models as wm
from workbench.export import GRAPHS, export_onnx, graph_paths, ort_session

CASES = [  # (label, model name, builder kwargs, (H, W))
    ("upernet_pyramid w24 (seg_shapes)", "upernet_pyramid", {"num_classes": 6, "width": 24}, (216, 216)),
    ("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", {"num_classes": 21}, (256, 256)),
    ("yolox_nano", "yolox_nano", {"num_classes": 80}, (416, 416)),
    ("yolox_s", "yolox_s", {"num_classes": 80}, (640, 640)),
    ("efficient_sam_vitt", "efficient_sam_vitt", {}, (1024, 1024)),
]

def timed(fn) -> float:
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def bench_graph(spec, path, rounds:int) -> dict:
    "Export one graph, then median times of eager and onnxruntime on its example, interleaved."
    example = spec.samples[0]
    rep = export_onnx(spec.module, path, example, spec.output_names, spec.dynamic_axes)
    sess, feed = ort_session(path), {k: v.numpy() for k, v in example.items()}
    with torch.no_grad():
        eager, ort = lambda: spec.module(*example.values()), lambda: sess.run(None, feed)
        eager(); ort()  # warm-up
        times = [(timed(eager), timed(ort)) for _ in range(rounds)]
    te, to = (statistics.median(t) * 1e3 for t in zip(*times))
    shape = "x".join(map(str, next(iter(example.values())).shape))
    return dict(shape=shape, eager=te, ort=to, ratio=to / te, diff=rep.max_abs)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", default="", help="run the cases whose label contains this")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, "
          f"1 thread each, {args.rounds} interleaved rounds, medians")
    print(f"{'graph':<44} {'input':<16} {'eager ms':>9} {'ort ms':>9} {'ort/eager':>9} {'max abs':>9}")
    tmp = Path(tempfile.mkdtemp())
    for label, name, kw, size in CASES:
        if args.only not in label: continue
        model, meta = wm.create_model(name, **kw).eval(), wm.model_meta(name)
        specs = GRAPHS.lookup(meta["task"])(model, size, meta)
        for spec, path in zip(specs, graph_paths(tmp/f"{name}.onnx", [s.suffix for s in specs])):
            r = bench_graph(spec, path, args.rounds)
            print(f"{label + spec.suffix:<44} {r['shape']:<16} {r['eager']:9.1f} {r['ort']:9.1f} "
                  f"{r['ratio']:9.2f} {r['diff']:9.1e}", flush=True)

if __name__ == "__main__":
    main()
