"""Click-to-segment in a real JupyterLab with real mouse clicks: `nbs/15_click_segment.ipynb`'s `ClickSegmenter`.

In one JupyterLab and one headless Chromium (`tools/jupyterlab_browser.py`: 127.0.0.1, random token, offline,
autosave off), open the notebook, Run All (no cell may fail), then on the segmenter it displays (`.wb-click`):

1. set the export folder and name (its text boxes), press *clear*: no prompt;
2. click on the image: one positive point, a mask (the status line says its area), the image redrawn;
3. shift-click: a negative point; alt-click would do the same (the notebook tests both with event dicts);
4. drag: a box; the candidate button *mask 1* shows candidate 1;
5. *undo*: back to the two points, the status and the image as they were after step 3;
6. *export*: the kernel writes `masks/<name>.png`, `json/<name>.json`; here the PNG and the COCO RLE decode to
   the same mask, whose area is the one the status line shows, and the prompts are where the mouse clicked
   (image pixels, within 1.5 px: the browser's coordinates are whole CSS pixels);
7. no traceback in the page or the Log Console.

The clicks' positions are image pixels mapped onto the element's box on the page, so the test does not depend
on the display size. The time from a click to the redrawn status line is printed, not asserted. Screenshots of
the image after each step go to `$WORKBENCH_SCREENSHOTS/click_segment/`, else
`tests/.tmp/screenshots/click_segment/`. Without Playwright, `/usr/bin/chromium`, JupyterLab or ipyevents the test
is skipped, unless `WORKBENCH_REQUIRE_BROWSER=1` (CI), which makes that a failure.
"""
import json, os, re, sys, time
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/"tools"))
import jupyterlab_browser as jb  # noqa: E402

NOTEBOOK = "nbs/15_click_segment.ipynb"
STEP_TIMEOUT = 60.0   # seconds for one click to come back redrawn (the machine is shared)
# image pixels (the notebook's scene is 384×288): a point, a negative point, a box's corners
POSITIVE, NEGATIVE, BOX = (200, 150), (60, 40), ((120, 90), (300, 230))

BROWSER_TEST = "click-to-segment browser test"
BROWSER_NEEDS = {"ipyevents": "ipyevents (pip install ipyevents)", "pycocotools": "pycocotools"}   # + conftest's

def shots_dir() -> Path:
    d = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or REPO/"tests"/".tmp"/"screenshots").resolve()/"click_segment"
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("*.png"): old.unlink()
    return d

class Segmenter:
    "The `.wb-click` widget on the page: its parts by CSS class, clicks in image pixels, the status line."
    def __init__(self, page):
        self.page, self.root = page, page.locator(".jp-Notebook .wb-click").first
        self.root.wait_for(timeout=60_000)
        self.image = self.root.locator("img.wb-click-image, .wb-click-image img").first

    def part(self, key): return self.root.locator(f".wb-click-{key}").first
    def text(self, key) -> str: return self.part(key).inner_text().strip()

    def to_page(self, x, y) -> tuple:
        "Image pixel (x, y) -> page coordinates on the displayed image (any display scaling)."
        self.image.scroll_into_view_if_needed()
        b = self.image.bounding_box()
        nw, nh = self.image.evaluate("im => [im.naturalWidth, im.naturalHeight]")
        return b["x"] + x * b["width"] / nw, b["y"] + y * b["height"] / nh

    def wait(self, key, pattern, before=None, timeout=STEP_TIMEOUT) -> tuple:
        "Wait until part `key`'s text matches `pattern` (and differs from `before`); returns (text, seconds)."
        t0, text = time.monotonic(), ""
        while time.monotonic() - t0 < timeout:
            text = self.text(key)
            if re.search(pattern, text) and text != before: return text, time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError(f"{key} line did not come to match {pattern!r} within {timeout:.0f}s; it says {text!r}")

    def shot(self, path) -> Path:
        self.image.scroll_into_view_if_needed()
        time.sleep(0.3)   # the new PNG decoded and painted
        self.image.screenshot(path=str(path))
        return path

def _area(status) -> int:
    m = re.search(r"mask (\d) of 3: (\d+) px", status)
    assert m, f"no mask area in the status line {status!r}"
    return int(m.group(2))

def test_click_segment_in_jupyterlab(lab, chrome, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils
    shots, page = shots_dir(), chrome.new_page()
    with capsys.disabled(): print(f"\n[{NOTEBOOK}] screenshots: {shots}", flush=True)
    try:
        t0 = time.monotonic()
        jb.open_notebook(page, lab, NOTEBOOK, timeout=240, workspace="click-segment")
        result = jb.run_all(page, NOTEBOOK, timeout=300)
        state = jb.notebook_state(page, NOTEBOOK)
        errors = [f"cell {c['index']}: {e}" for c in state["cells"] if c["type"] == "code" for e in c["errors"]]
        assert not errors and result and result.get("ok") is not False, f"Run All: {result}, errors {errors}"
        t_run = time.monotonic() - t0
        seg, out = Segmenter(page), tmp_path/"exports"
        seg.part("folder").locator("input").fill(str(out))
        seg.part("name").locator("input").fill("browser_obj")
        # 1. clear
        seg.part("clear").click()
        s0, _ = seg.wait("status", r"^prompts: 0 \(")
        before = seg.shot(shots/"0_cleared.png")
        # 2. a click: a positive point and a mask
        seg.page.mouse.click(*seg.to_page(*POSITIVE))
        s1, dt1 = seg.wait("status", r"^prompts: 1 \(1 positive, 0 negative, no box\) · mask \d of 3: \d+ px")
        d = jb.image_difference(before, seg.shot(shots/"1_positive.png"))
        assert d["changed"] > 20, f"the image did not change after the click: {d}"
        # 3. shift-click: a negative point
        seg.page.keyboard.down("Shift")
        seg.page.mouse.click(*seg.to_page(*NEGATIVE))
        seg.page.keyboard.up("Shift")
        s2, dt2 = seg.wait("status", r"^prompts: 2 \(1 positive, 1 negative, no box\) · mask")
        after2 = seg.shot(shots/"2_negative.png")
        assert jb.image_difference(shots/"1_positive.png", after2)["changed"] > 20
        # 4. drag a box, then candidate 1
        seg.page.mouse.move(*seg.to_page(*BOX[0]))
        seg.page.mouse.down()
        seg.page.mouse.move(*seg.to_page(*BOX[1]), steps=8)
        seg.page.mouse.up()
        s3, dt3 = seg.wait("status", r"^prompts: 3 \(1 positive, 1 negative, a box\) · mask")
        d = jb.image_difference(after2, seg.shot(shots/"3_box.png"))
        assert d["changed"] > 100, f"the image did not change after the drag: {d}"
        seg.part("cand1").click()
        s4, _ = seg.wait("status", r"mask 1 of 3: \d+ px, predicted IoU -?[\d.]+ \(chosen\)$")
        seg.shot(shots/"4_candidate1.png")
        # 5. undo: the two points again, as they were
        seg.part("undo").click()
        s5, _ = seg.wait("status", r"^prompts: 2 \(", before=s4)
        assert s5 == s2, f"after undo the status says {s5!r}, before the drag it said {s2!r}"
        d = jb.image_difference(after2, seg.shot(shots/"5_undo.png"))
        assert d["changed"] < 20, f"after undo the image differs from the one before the drag: {d}"
        # 6. export: the kernel writes, the test reads
        seg.part("export").click()
        msg, _ = seg.wait("message", r"^exported mask")
        png, js = out/"masks"/"browser_obj.png", out/"json"/"browser_obj.json"
        assert png.is_file() and js.is_file(), f"export wrote {sorted(p.name for p in out.rglob('*'))}: {msg}"
        obj = json.loads(js.read_text())["objects"][0]
        rle = {**obj["segmentation"], "counts": obj["segmentation"]["counts"].encode()}
        from_rle, from_png = mask_utils.decode(rle).astype(bool), np.asarray(Image.open(png)) == 1
        assert from_rle.shape == (288, 384) and (from_rle == from_png).all(), "the PNG and the RLE differ"
        assert int(from_rle.sum()) == _area(s5) == obj["area"], (from_rle.sum(), s5, obj["area"])
        assert obj["point_labels"] == [1, 0] and obj["box_xyxy"] is None, obj
        got, want = np.array(obj["points"]), np.array([POSITIVE, NEGATIVE], float)
        assert np.abs(got - want).max() <= 1.5, f"points exported at {got.tolist()}, clicked at {want.tolist()}"
        # 7. nothing went wrong where the user would not see it
        jb.open_log_console(page, NOTEBOOK)
        tbs = jb.page_tracebacks(page)
        assert not tbs and not jb.widget_display_errors(page), tbs
        with capsys.disabled():
            print(f"[{NOTEBOOK}] Run All {t_run:.0f}s; click -> status redrawn: point {dt1 * 1e3:.0f} ms, "
                  f"negative {dt2 * 1e3:.0f} ms, box {dt3 * 1e3:.0f} ms; areas {[_area(s) for s in (s1, s2, s3)]} px; "
                  f"{seg.text('timing')}; {time.monotonic() - t0:.0f}s in all", flush=True)
    finally:
        try: page.screenshot(path=str(shots/"page.png"), full_page=True)
        except Exception: pass
        page.close()
        lab.shutdown_kernels()
