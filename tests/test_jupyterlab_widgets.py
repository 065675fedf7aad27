"""Widgets in a real JupyterLab in a real browser: Run All, no errors, and the browse slider redraws its figure.

Which notebooks: every notebook under `nbs/` (recursively, so `nbs/tutorials/` too; not `.ipynb_checkpoints`, not
names starting with `_`) with a *code* cell that calls `browse(` (`viz.browse`, `browse`, any `x.browse(`) or
mentions `ipywidgets` (imports it or uses a widget class from it). Markdown cells do not count. This selects the
notebooks that can show a widget; the check then asks the page itself what it shows.

For each of them, in one JupyterLab (`tools/jupyterlab_browser.py`: 127.0.0.1, random token, offline, autosave
off, its own settings folders) and one headless Chromium (`/usr/bin/chromium`):

1. open `/lab/tree/nbs/<name>.ipynb`, wait for an idle kernel, Run All (`notebook:run-all-cells`, the command
   behind Run → Run All Cells) and wait until it has finished and the kernel is idle;
2. every code cell has an execution count (Run All stops at the first failing cell), no cell has an error output
   (read from JupyterLab's notebook model), every widget output is rendered, and the page shows no traceback
   (stderr outputs that are not tracebacks, e.g. warnings, are allowed) and no "Error displaying widget"; after
   the slider checks below, the notebook's Log Console (where outputs of widget callbacks go) is opened and
   checked for tracebacks too;
3. a notebook that calls `browse(` (not `def browse(`, not with `live=False` on the line) shows at least one
   slider browser (the `.wb-browse` container, else a `.widget-vbox` with a `.widget-slider` and a
   `.widget-output`/`.widget-image`); for each: screenshot its figure area, move the slider (the "next" button when there is one, else ArrowRight on the slider handle), wait for the
   redraw, screenshot again and require the slider value and the figure's pixels to have changed; with a next
   button, ArrowRight on the handle is checked the same way; a browser with filter dropdowns (`.wb-browse-filter`,
   `viz.browse(..., filters=...)`) then has each dropdown used as a user would: choose an option that keeps fewer
   rows than the browser holds (its label's "(N images)" when it says N, else any that changes the caption), require
   the caption to start again at item 1 of N, move to the next row (slider and figure change as above), choose
   "all" and require every row back;
4. JupyterLab never saved the notebook (its contents model keeps the last-modified time it was opened with).

Screenshots (per notebook: `page.png`, `browser<i>_before.png`, `_after.png`, `_after_key.png`,
`_filter_<key>.png`, `_filter_<key>_next.png`, `_filter_<key>_widget.png`: the whole browser) go to
`$WORKBENCH_SCREENSHOTS`, else `tests/.tmp/screenshots/`; the folder is printed and named in every failure.

Without Playwright, `/usr/bin/chromium` or JupyterLab the tests are skipped, unless `WORKBENCH_REQUIRE_BROWSER=1`
(CI), which makes that a failure. `WORKBENCH_WIDGET_ROOT=<folder>` runs the check on `<folder>/nbs/` instead of
this repository's notebooks (a way to try it on scratch notebooks).
"""
import contextlib, json, os, re, sys, time
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("WORKBENCH_WIDGET_ROOT") or REPO).resolve()
sys.path.insert(0, str(REPO/"tools"))
import jupyterlab_browser as jb  # noqa: E402

WIDGET_CODE = re.compile(r"\bbrowse\s*\(|\bipywidgets\b")
BROWSE_CALL = re.compile(r"(?<!def )\bbrowse\s*\((?![^\n]*\blive\s*=\s*False)")   # a call that may show the widget
OPEN_TIMEOUT, RUN_TIMEOUT, REDRAW_TIMEOUT = 240, 420, 60   # seconds; generous, the machine is shared

def code_sources(path) -> list:
    "The source of every code cell of the notebook at `path`."
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]

def widget_notebooks(nbs_dir) -> list:
    "The notebooks under `nbs_dir` (recursively) with a code cell that calls `browse(` or mentions ipywidgets."
    found = []
    for p in sorted(Path(nbs_dir).rglob("*.ipynb")):
        if ".ipynb_checkpoints" in p.parts or p.name.startswith("_"): continue
        if any(WIDGET_CODE.search(s) for s in code_sources(p)): found.append(p)
    return found

def calls_browse(path) -> bool: return any(BROWSE_CALL.search(s) for s in code_sources(path))

def screenshots_dir() -> Path:
    d = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or REPO/"tests"/".tmp"/"screenshots").resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d

NOTEBOOKS = widget_notebooks(ROOT/"nbs")
_SHOTS = []   # screenshot folders written by this run

BROWSER_TEST, LAB_ROOT = "JupyterLab widget test", ROOT   # the fixtures browser_env, lab, chrome: conftest.py

@pytest.fixture(scope="module", autouse=True)
def report_screenshots(request):
    "The screenshot folder, as the last line of the run (pytest captures prints; its terminal reporter does not)."
    yield
    tr, capture = (request.config.pluginmanager.getplugin(n) for n in ("terminalreporter", "capturemanager"))
    if tr is None or not _SHOTS: return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        tr.write_line(f"\nJupyterLab widget screenshots: {screenshots_dir()}")

def test_discovery_rule(tmp_path):
    "The rule selects code cells calling browse( or using ipywidgets, not markdown, not checkpoints."
    import nbformat
    def write(name, *cells):
        p = tmp_path/name; p.parent.mkdir(parents=True, exist_ok=True)
        nb = nbformat.v4.new_notebook(); nb.cells = list(cells); nbformat.write(nb, p)
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    write("a.ipynb", code("w = viz.browse(ds, show)"))
    write("static.ipynb", code("def browse(items): ...\nfig = browse(ds, show, live=False)"))
    write("tutorials/b.ipynb", md("no code"), code("import ipywidgets as W\nW.IntSlider()"))
    write("c.ipynb", md("`viz.browse(ds, show)` in prose"), code("x = 1  # browser, browsed"))
    write(".ipynb_checkpoints/a-checkpoint.ipynb", code("browse(ds, show)"))
    write("_draft.ipynb", code("browse(ds, show)"))
    assert [p.relative_to(tmp_path).as_posix() for p in widget_notebooks(tmp_path)] == ["a.ipynb", "static.ipynb", "tutorials/b.ipynb"]
    assert calls_browse(tmp_path/"a.ipynb")
    assert not calls_browse(tmp_path/"tutorials/b.ipynb") and not calls_browse(tmp_path/"static.ipynb")
    if ROOT == REPO:   # the notebook that defines and shows the browser must be among this repository's
        assert REPO/"nbs"/"05_viz.ipynb" in NOTEBOOKS, f"discovery missed nbs/05_viz.ipynb: {NOTEBOOKS}"

def _cell_line(state, i) -> str:
    c = state["cells"][i] if 0 <= i < len(state["cells"]) else {}
    return f"cell {i} ({c.get('source', '?')!r})"

def _move_and_compare(page, i, where, how, before_png, after_png, shots) -> list:
    "Move browser `i` (`how`: 'next' or 'key'), wait for the redraw, screenshot; the problems found, as text."
    value0, sig0 = jb.slider_value(page, i), jb.figure_signature(page, i)
    if how == "next": page.locator(f'[data-wb-next="{i}"]').click(timeout=30_000)
    else:
        handle = page.locator(f'[data-wb-browser="{i}"] .noUi-handle, [data-wb-browser="{i}"] [role=slider]').first
        handle.focus(timeout=30_000); page.keyboard.press("ArrowRight")
    redrawn = jb.wait_figure_change(page, i, sig0, timeout=REDRAW_TIMEOUT)
    value1 = jb.slider_value(page, i)
    jb.screenshot_figure(page, i, after_png)
    d = jb.image_difference(before_png, after_png)
    label = "the next button" if how == "next" else "ArrowRight on the slider handle"
    problems = []
    if value1 == value0: problems.append(f"{where}: {label} did not move the slider (value stays {value0!r})")
    if not redrawn:
        problems.append(f"{where}: after {label} (slider {value0!r} -> {value1!r}) the figure area did not redraw "
                        f"within {REDRAW_TIMEOUT}s")
    if not d["size_changed"] and d["changed"] < max(50, 5e-4 * d["shapes"][0][0] * d["shapes"][0][1]):
        problems.append(f"{where}: after {label} (slider {value0!r} -> {value1!r}) the figure looks the same: "
                        f"{d['changed']} pixels changed ({d['fraction']:.4%}); compare {before_png.name} and "
                        f"{after_png.name} in {shots}")
    return problems

OPTION_COUNT = re.compile(r"\((\d+)\s\w+\)$")   # an option label such as "circle (3 images)": the rows it keeps
CAPTION = re.compile(r"^index (\d+) \(item \d+ of (\d+)\)")   # viz.browse's caption

def _caption(text):
    "(index, rows) of a browser caption, or None."
    m = CAPTION.match(text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None

def _use_filters(page, i, where, shots) -> list:
    "Use each filter dropdown of browser `i` (see the module's docstring, step 3); the problems found, as text."
    problems, used = [], 0
    for f in jb.browser_filters(page, i):
        key, first = f["key"], jb.browser_label(page, i)
        total, fw, chosen = (_caption(first) or (0, 0))[1], f"{where}, filter {key!r}", False
        for opt in f["options"][1:]:
            m = OPTION_COUNT.search(opt)
            n = int(m.group(1)) if m else None
            if n is not None and not 0 < n < total: continue   # it would keep every row, or none
            jb.choose_filter(page, i, key, opt)
            chosen = True
            text = jb.wait_label(page, i, lambda t: t != first and _caption(t) is not None,
                                 REDRAW_TIMEOUT if n else 10)
            got = _caption(text)
            if n is None and (got is None or got[1] >= total): continue   # kept every row, or none
            used += 1
            if got is None or got[0] != 0 or (n is not None and got[1] != n):
                problems.append(f"{fw}: after choosing {opt!r} the caption says {text or jb.browser_label(page, i)!r}, "
                                f"expected 'index 0 (item 1 of {n})'")
                break
            png = jb.screenshot_figure(page, i, shots/f"browser{i}_filter_{key}.png")
            page.locator(f'[data-wb-browser="{i}"]').screenshot(path=str(shots/f"browser{i}_filter_{key}_widget.png"))
            if got[1] > 1:
                problems += _move_and_compare(page, i, f"{fw} = {opt!r}", "next", png,
                                              shots/f"browser{i}_filter_{key}_next.png", shots)
            break
        if not chosen: continue
        jb.choose_filter(page, i, key, "all")
        if jb.wait_label(page, i, lambda t: _caption(t) == (0, total), REDRAW_TIMEOUT) is None:
            problems.append(f"{fw}: back on 'all' the caption says {jb.browser_label(page, i)!r}, expected "
                            f"'index 0 (item 1 of {total})'")
    if not used:
        problems.append(f"{where}: no option of its filters {jb.browser_filters(page, i)} kept fewer rows than all")
    return problems

@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in NOTEBOOKS])
def test_notebook_widgets_in_jupyterlab(notebook, lab, chrome, capsys):
    rel = notebook.relative_to(ROOT).as_posix()
    shots = screenshots_dir()/notebook.relative_to(ROOT/"nbs").with_suffix("").as_posix().replace("/", "__")
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"): old.unlink()
    _SHOTS.append(shots)
    with capsys.disabled(): print(f"\n[{rel}] screenshots: {shots}", flush=True)
    where = f"{rel} (screenshots: {shots})"
    stat0 = notebook.stat().st_mtime_ns
    page, t0 = chrome.new_page(), time.monotonic()
    problems, bad_cells, browser_cells = [], [], []   # what is wrong; page.png shows a failing cell, else a browser
    try:
        jb.open_notebook(page, lab, rel, timeout=OPEN_TIMEOUT, workspace=re.sub(r"\W+", "-", rel))
        saved0 = jb.saved_at(page, rel)
        t_open = time.monotonic() - t0
        result = jb.run_all(page, rel, timeout=RUN_TIMEOUT)
        t_run = time.monotonic() - t0 - t_open
        state = jb.notebook_state(page, rel)
        code = [c for c in state["cells"] if c["type"] == "code"]
        # 2. errors, cells Run All did not reach, tracebacks and widget errors in the page
        for c in code:
            for e in c["errors"]:
                problems.append(f"{where}: {_cell_line(state, c['index'])} raised {e}"); bad_cells.append(c["index"])
        not_run = [c["index"] for c in code if c["count"] is None and not c["blank"]]
        if not_run:
            problems.append(f"{where}: Run All did not execute cells {not_run} (it stops at the first error); "
                            f"first: {_cell_line(state, not_run[0])}")
        if result is None or "error" in result:
            problems.append(f"{where}: notebook:run-all-cells failed: {result}")
        elif result.get("ok") is False and not problems:
            problems.append(f"{where}: Run All reported a failed cell, but no cell has an error output")
        n_widget_outputs = sum("application/vnd.jupyter.widget-view+json" in o for c in code for o in c["outputs"])
        deadline = time.monotonic() + 60
        while jb.rendered_widgets(page) < n_widget_outputs and not jb.widget_display_errors(page) and time.monotonic() < deadline:
            time.sleep(0.5)
        n_rendered = jb.rendered_widgets(page)
        if n_rendered < n_widget_outputs:
            problems.append(f"{where}: {n_widget_outputs} widget outputs but {n_rendered} rendered widget views "
                            "(no widget manager in the page, or one it could not show: see below)")
        # 3. the browsers
        browsers = jb.find_browsers(page)
        if calls_browse(notebook) and not browsers:
            problems.append(f"{where}: the notebook calls browse( but the page shows no slider browser "
                            f"(.wb-browse, or .widget-vbox with .widget-slider and a figure area); "
                            f"{n_rendered} widget views rendered")
        browser_cells[:] = [b["cell"] for b in browsers]
        for b in browsers:
            i, bw = b["index"], f"{where}, browser {b['index']} in {_cell_line(state, b['cell'])}"
            if not b["figure"]:
                problems.append(f"{bw}: no figure area (.widget-output or .widget-image) in the browser"); continue
            before = jb.screenshot_figure(page, i, shots/f"browser{i}_before.png")
            problems += _move_and_compare(page, i, bw, "next" if b["next"] else "key", before,
                                          shots/f"browser{i}_after.png", shots)
            if b["next"] and not jb.slider_at_max(page, i):
                problems += _move_and_compare(page, i, bw, "key", shots/f"browser{i}_after.png",
                                              shots/f"browser{i}_after_key.png", shots)
            if b["filters"]: problems += _use_filters(page, i, bw, shots)
        n_log = jb.open_log_console(page, rel)   # outputs of widget callbacks (not of a cell) are shown there
        for tb in jb.page_tracebacks(page):
            place = ("the Log Console (output of a widget callback)" if tb["inLogConsole"] else
                     _cell_line(state, tb["cell"]) + (" inside a widget" if tb["inWidget"] else ""))
            problems.append(f"{where}: the page shows a traceback in {place}: {tb['text']}"); bad_cells.append(tb["cell"])
        for d in jb.widget_display_errors(page):
            problems.append(f"{where}: {_cell_line(state, d['cell'])} says {d['text']!r}"); bad_cells.append(d["cell"])
        # 4. never saved
        saved1 = jb.saved_at(page, rel)
        if saved1 != saved0: problems.append(f"{where}: JupyterLab saved the notebook ({saved0} -> {saved1})")
        with capsys.disabled():
            print(f"[{rel}] opened in {t_open:.0f}s, Run All {t_run:.0f}s, {len(code)} code cells, "
                  f"{n_rendered} widget views, {len(browsers)} browsers ({', '.join(b['kind'] + ' with filters' * bool(b['filters']) for b in browsers)}), "
                  f"{n_log} Log Console entries, {len(problems)} problems, {time.monotonic() - t0:.0f}s in all", flush=True)
    except Exception as e:   # a timeout or a page that is not what was expected: say where, keep the screenshots
        try: running = jb.running_cells(page)
        except Exception: running = "?"
        problems.append(f"{where}: {type(e).__name__}: {str(e)[:2000]}\n--- cells shown as running [*]: {running}"
                        f"\n--- JupyterLab log (tail)\n{lab.log_tail(1500)}")
    finally:
        try:
            shown = [c for c in bad_cells if c >= 0] or [c for c in browser_cells if c >= 0]
            if shown: jb.scroll_to_cell(page, shown[0])
            page.screenshot(path=str(shots/"page.png"), full_page=True)
        except Exception as e: problems.append(f"{where}: page screenshot failed: {e}")
        try: page.close()
        except Exception: pass
        lab.shutdown_kernels()
    if ROOT == REPO and notebook.stat().st_mtime_ns != stat0 and problems:
        problems.append(f"{where}: note: {rel} changed on disk during the test (another editor, or a save)")
    if problems: pytest.fail("\n".join(problems), pytrace=False)
