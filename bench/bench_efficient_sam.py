"""EfficientSAM-Ti on CPU: image-encoder and mask-decoder latency at 1024 (official) and 256, and what caching the
image embedding saves when one image gets many prompts.

    python bench/bench_efficient_sam.py [--model efficient_sam_vitt] [--sizes 1024 256] [--prompts 16] [--reps 3]

Per working resolution S (batch of one image, random weights: the cost does not depend on them), medians of at least
`--reps` runs (calls cheaper than 1 s / reps get more runs, up to 50, so that one slow run on a busy machine does not count):
- encoder: `get_image_embeddings` (resize + normalise + ViT + neck);
- decoder, 1 prompt: `predict_masks` for one box prompt (prompt encoder + two-way transformer + upscaling + the
  bicubic upsampling of the 3 masks to the 512×512 input);
- decoder, N prompts: `predict_masks` for N box prompts in one call ([1, N, 2, 2]), and N one-prompt calls (timed once).
Caching: "encode per prompt" = N full forwards (encoder + 1-prompt decoder each) against "encode once" = 1 encoder +
the N-prompt decoder call. At S = 1024 the N full forwards are not run (minutes): their time is N × (encoder +
1-prompt decoder), from the medians above; at smaller S they are run and timed (once). About 1 minute on 2 idle CPU
cores (timings on a shared, busy machine are noisy: compare ratios from one run).
"""
import argparse, statistics, time
import torch
from workbench.models.efficient_sam import boxes_to_prompts
from workbench.models.registry import create_model
import workbench.models.efficient_sam  # registers the models

def median_time(fn, reps:int, warmup:int=1, min_seconds:float=1.0, max_reps:int=50) -> float:
    "Median seconds of `fn()` over at least `reps` runs, more (up to `max_reps`) until `min_seconds` are spent: cheap calls get many samples."
    for _ in range(warmup): fn()
    ts, t0 = [], time.perf_counter()
    while len(ts) < reps or (time.perf_counter() - t0 < min_seconds and len(ts) < max_reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    SPREAD.append(max(ts) / min(ts))
    return statistics.median(ts)

SPREAD = []  # max/min of each measurement: a large value means a busy machine

def boxes(n:int, size:int=512, seed:int=0): # [1, n, 4] random xyxy boxes inside a size×size image
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(1, n, 2, generator=g) * size * 0.6
    wh = (0.1 + 0.3 * torch.rand(1, n, 2, generator=g)) * size
    return torch.cat([xy, xy + wh], -1)

def bench_size(name:str, S:int, n:int, reps:int, in_size:int=512) -> dict:
    torch.manual_seed(0)
    m = create_model(name, image_size=S).eval()
    img = torch.rand(1, 3, in_size, in_size)
    p1, l1 = boxes_to_prompts(boxes(1, in_size)); pn, ln = boxes_to_prompts(boxes(n, in_size))
    kw = dict(input_h=in_size, input_w=in_size, output_h=in_size, output_w=in_size)
    r = {}
    with torch.inference_mode():
        emb = m.get_image_embeddings(img)
        r["enc"] = median_time(lambda: m.get_image_embeddings(img), reps)
        r["dec1"] = median_time(lambda: m.predict_masks(emb, p1, l1, **kw), reps)
        r["decN"] = median_time(lambda: m.predict_masks(emb, pn, ln, **kw), reps)
        r["decN_loop"] = median_time(lambda: [m.predict_masks(emb, pn[:, i:i+1], ln[:, i:i+1], **kw) for i in range(n)], 1, 0, 0.0) # n calls already
        r["cached"] = r["enc"] + r["decN"]
        if S <= 512:
            r["per_prompt"] = median_time(lambda: [m(img, pn[:, i:i+1], ln[:, i:i+1]) for i in range(n)], reps, 0, 0.0)
            r["per_prompt_how"] = "measured"
        else:
            r["per_prompt"] = n * (r["enc"] + r["dec1"]); r["per_prompt_how"] = f"{n} × (encoder + 1-prompt decoder)"
    return r

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficient_sam_vitt"); ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 256])
    ap.add_argument("--prompts", type=int, default=16); ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"{a.model}, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; 1 image (512×512 input), "
          f"medians of >= {a.reps} runs (cheap calls: as many as fit in 1 s, up to 50); N = {a.prompts} box prompts")
    res = {}
    for S in a.sizes:
        r = res[S] = bench_size(a.model, S, a.prompts, a.reps)
        print(f"\nS = {S} ({S // 16}×{S // 16} tokens, low-res masks {S // 4}×{S // 4})")
        print(f"  image encoder            {r['enc'] * 1e3:9.1f} ms")
        print(f"  decoder, 1 prompt        {r['dec1'] * 1e3:9.1f} ms")
        print(f"  decoder, {a.prompts} prompts, 1 call {r['decN'] * 1e3:9.1f} ms  ({r['decN'] / a.prompts * 1e3:.1f} ms/prompt)")
        print(f"  decoder, {a.prompts} calls of 1     {r['decN_loop'] * 1e3:9.1f} ms")
        print(f"  encode once + decode {a.prompts}  {r['cached'] * 1e3:9.1f} ms")
        print(f"  encode per prompt        {r['per_prompt'] * 1e3:9.1f} ms  ({r['per_prompt_how']})")
        print(f"  caching speed-up         {r['per_prompt'] / r['cached']:9.1f}x   encoder/decoder(1 prompt) {r['enc'] / r['dec1']:.1f}x")
    if len(res) > 1:
        big, small = max(res), min(res)
        print(f"\nS = {big} vs {small}: encoder {res[big]['enc'] / res[small]['enc']:.1f}x slower, "
              f"decoder (1 prompt) {res[big]['dec1'] / res[small]['dec1']:.1f}x slower")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; slowest/fastest run within one measurement: up to {max(SPREAD):.1f}x"
          + ("  (busy machine: timings unreliable, run again)" if max(SPREAD) > 3 else ""))

if __name__ == "__main__": main()
