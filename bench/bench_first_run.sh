#!/usr/bin/env bash
# Goal: the README's quick start, line 1, in a fresh clone and a fresh venv, in <= 10 minutes (install included)
# at validation mIoU >= 0.85. Times the literal line N times (default 3), one after another:
#
#     bash bench/bench_first_run.sh [N] [WORKDIR]      # WORKDIR default: a new folder under /tmp
#
# Each repeat clones this checkout's HEAD, makes a venv, then runs exactly
# `pip install -e . && accelerate launch workbench/train.py`. Prints per repeat: total seconds, seconds until the
# run folder appeared (install + start-up), the data generation time, the final mIoU; then the median and the
# spread. pip's own cache is whatever this machine has (a first install ever also downloads torch).
set -uo pipefail
n=${1:-3}; work=${2:-$(mktemp -d /tmp/first_run.XXXX)}
src=$(cd "$(dirname "$0")/.." && pwd)
line='pip install -e . && accelerate launch workbench/train.py'
for i in $(seq 1 "$n"); do
    d=$work/$i; rm -rf "$d"; mkdir -p "$d"
    git clone -q "$src" "$d/repo" && python -m venv "$d/venv" || exit 1
    ( cd "$d/repo" && source "$d/venv/bin/activate" && unset OMP_NUM_THREADS WORKBENCH_DATA &&
      s=$(date +%s.%N) && bash -c "$line" > "$d/log" 2>&1; rc=$?; e=$(date +%s.%N)
      echo "$s $e $rc" > "$d/times" )
    python - "$d" <<'PY'
import sys, json, re, os, glob
d = sys.argv[1]; s, e, rc = open(f"{d}/times").read().split()
runs = sorted(glob.glob(f"{d}/repo/runs/seg_shapes/run*/"))
r = dict(rc=int(rc), total_s=round(float(e) - float(s), 1))
if runs:
    r["until_run_folder_s"] = round(os.path.getctime(runs[0] + "config.yaml") - float(s), 1)
    m = runs[0] + "metrics.json"
    r["mIoU"] = json.load(open(m))["mIoU"] if os.path.exists(m) else None
g = re.search(r"shapes: .*\(([\d.]+)s\)", open(f"{d}/log", errors="replace").read())
r["data_generation_s"] = float(g.group(1)) if g else None
print(json.dumps(r)); open(f"{d}/result.json", "w").write(json.dumps(r))
PY
done
python - "$work" "$n" <<'PY'
import sys, json, statistics
work, n = sys.argv[1], int(sys.argv[2])
rs = [json.load(open(f"{work}/{i}/result.json")) for i in range(1, n + 1)]
t = [r["total_s"] for r in rs]; m = [r.get("mIoU") or float("nan") for r in rs]
print(f"{n} runs of the quick start: total {statistics.median(t):.0f} s median ({min(t):.0f}-{max(t):.0f}), "
      f"mIoU {statistics.median(m):.3f} median ({min(m):.3f}-{max(m):.3f}); goal <= 600 s at >= 0.85")
PY
