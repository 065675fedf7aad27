"""A real JupyterLab in a real (headless) Chromium, for tests: start both, open a notebook, Run All, read the results.

    with JupyterLab(root_dir) as lab, Chromium() as chrome:
        page = chrome.new_page()
        nb = open_notebook(page, lab, "nbs/05_viz.ipynb")
        run_all(page)
        print(notebook_state(page)["errors"])

JupyterLab runs on 127.0.0.1 with a random token, offline and quiet (no news, no update check, read-only extension
manager, no terminals, no language servers) and with its own settings, workspaces, runtime and config folders in a
temporary directory, so nothing in the user's Jupyter setup changes what it does. Autosave is off there: a notebook
run in the browser is never written back to disk. Chromium is started here (`/usr/bin/chromium`, its own temporary
profile) and Playwright drives it over the DevTools protocol, so both processes are ours, stopped by their pid
(terminate, then kill after a timeout).
"""
import json, os, secrets, shutil, signal, socket, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                 "--mute-audio", "--no-default-browser-check", "--remote-debugging-address=127.0.0.1",
                 "--remote-debugging-port=0"]

# JupyterLab user settings written into the temporary settings folder.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},              # never write the notebook back
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},        # every cell in the DOM
}

def free_port() -> int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def stop_process(proc, timeout=15.0, name="process"):
    "Terminate `proc` (a Popen), then kill it if it has not exited after `timeout` seconds; returns how it ended."
    if proc.poll() is not None: return f"{name} had exited ({proc.returncode})"
    proc.terminate()
    try: proc.wait(timeout); return f"{name} terminated"
    except subprocess.TimeoutExpired: pass
    proc.kill(); proc.wait(10)
    return f"{name} killed after {timeout:.0f}s"

def _descendants(pid) -> list:
    "Processes started by `pid` (kernels of the server), to stop them by pid if the server leaves them behind."
    try:
        import psutil
        return psutil.Process(pid).children(recursive=True)
    except Exception: return []

def _stop_all(procs, timeout=5.0):
    "Terminate, then kill, the psutil processes in `procs` that still run (children a stopped parent left behind)."
    for c in procs:
        try: c.terminate()
        except Exception: pass
    for c in procs:
        try: c.wait(timeout)
        except Exception:
            try: c.kill()
            except Exception: pass

def missing(modules=None) -> list:
    """What a browser test needs and this machine lacks, as text: Chromium at `CHROMIUM`, Playwright, JupyterLab,
    Pillow and numpy, and each of `modules` ({import name: what to install})."""
    need = {"playwright.sync_api": "the playwright Python package (pip install playwright)",
            "jupyterlab": "JupyterLab (pip install jupyterlab)", "PIL": "Pillow", "numpy": "numpy", **(modules or {})}
    found = []
    for mod, what in need.items():
        try: __import__(mod)
        except ImportError: found.append(what)
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    return found

class JupyterLab:
    "JupyterLab serving `root_dir` as a subprocess; a context manager. `url(path)` opens a file in the lab."
    def __init__(self, root_dir, start_timeout=120.0, extra_args=(), env=None):
        self.root_dir, self.start_timeout, self.extra_args, self.env = Path(root_dir).resolve(), start_timeout, list(extra_args), env or {}
        self.token, self.port, self.proc, self.tmp = secrets.token_hex(16), None, None, None

    @property
    def base(self) -> str: return f"http://127.0.0.1:{self.port}"

    def url(self, path, workspace=None) -> str:
        "The lab URL that opens `path` (relative to root_dir), in its own fresh workspace when `workspace` is given."
        ws = f"workspaces/{workspace}/" if workspace else ""
        return f"{self.base}/lab/{ws}tree/{Path(path).as_posix()}?reset&token={self.token}"

    def api(self, method, path, timeout=10.0):
        "A REST call to the server; returns the decoded JSON (or None for an empty body)."
        req = urllib.request.Request(f"{self.base}{path}", method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n=4000) -> str:
        try: return Path(self.tmp, "jupyterlab.log").read_text(errors="replace")[-n:]
        except OSError: return ""

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="wb-jupyterlab-")
        t = Path(self.tmp)
        for plugin, values in LAB_SETTINGS.items():
            f = t/"settings"/f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(values))
        for d in ("config", "runtime", "workspaces", "checkpoints"): (t/d).mkdir()
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}   # figures inline, as in a user's lab
        env.update(JUPYTER_CONFIG_DIR=str(t/"config"), JUPYTER_RUNTIME_DIR=str(t/"runtime"),
                   JUPYTERLAB_SETTINGS_DIR=str(t/"settings"), JUPYTERLAB_WORKSPACES_DIR=str(t/"workspaces"),
                   PYDEVD_DISABLE_FILE_VALIDATION="1", **self.env)
        self.port = free_port()
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root_dir}", "--ServerApp.terminals_enabled=False",
               "--ServerApp.jpserver_extensions={'jupyter_lsp': False}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
               f"--FileCheckpoints.checkpoint_dir={t/'checkpoints'}",   # not .ipynb_checkpoints/ in the repo
               f"--LabApp.user_settings_dir={t/'settings'}", f"--LabApp.workspaces_dir={t/'workspaces'}",
               *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []), *self.extra_args]
        self._log = open(t/"jupyterlab.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}) before answering:\n{self.log_tail()}")
                try:
                    self.api("GET", "/api/status", timeout=5)
                    with urllib.request.urlopen(f"{self.base}/lab?token={self.token}", timeout=10) as r:
                        if r.status == 200: return self
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError): pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer on {self.base} within {self.start_timeout:.0f}s:\n"
                                       f"{self.log_tail()}")
                time.sleep(0.5)
        except BaseException:
            self.stop(); raise

    def shutdown_kernels(self):
        "Shut down every session and kernel through the REST API (the kernels of the notebooks opened)."
        try:
            for s in self.api("GET", "/api/sessions") or []: self.api("DELETE", f"/api/sessions/{s['id']}", timeout=30)
            for k in self.api("GET", "/api/kernels") or []: self.api("DELETE", f"/api/kernels/{k['id']}", timeout=30)
        except Exception: pass

    def stop(self, timeout=20.0) -> str:
        if self.proc is None: return "not started"
        if self.proc.poll() is None: self.shutdown_kernels()
        children = _descendants(self.proc.pid)
        how = stop_process(self.proc, timeout, "JupyterLab")
        _stop_all(children)   # kernels the server left running
        self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return how

    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()

class Chromium:
    "Headless Chromium started here with a fresh profile, driven by Playwright over CDP; a context manager."
    def __init__(self, executable=CHROMIUM, start_timeout=60.0, viewport=(1280, 1000)):
        self.executable, self.start_timeout, self.viewport = executable, start_timeout, viewport
        self.proc = self.pw = self.browser = self.context = None

    def start(self):
        from playwright.sync_api import sync_playwright
        self.tmp = tempfile.mkdtemp(prefix="wb-chromium-")
        self.profile = os.path.join(self.tmp, "profile")
        self._log = open(os.path.join(self.tmp, "chromium.log"), "wb")
        port_file, deadline = Path(self.profile)/"DevToolsActivePort", time.monotonic() + self.start_timeout
        try:
            self.proc = subprocess.Popen([self.executable, *CHROMIUM_ARGS, f"--user-data-dir={self.profile}", "about:blank"],
                                         stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            while not (port_file.exists() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Chromium ({self.executable}) did not open its DevTools port within "
                                       f"{self.start_timeout:.0f}s (exit status {self.proc.poll()}):\n{self.log_tail()}")
                time.sleep(0.2)
            port = port_file.read_text().split()[0]
            self.pw = sync_playwright().start()
            self.browser = self.pw.chromium.connect_over_cdp(f"http://127.0.0.1:{port}", timeout=self.start_timeout * 1000)
            self.context = self.browser.new_context(viewport={"width": self.viewport[0], "height": self.viewport[1]})
        except BaseException:
            self.stop(); raise
        return self

    def log_tail(self, n=3000) -> str:
        try: return Path(self._log.name).read_text(errors="replace")[-n:]
        except (OSError, AttributeError): return ""

    def new_page(self): return self.context.new_page()

    def stop(self, timeout=15.0) -> str:
        "browser.close(); a watchdog kills the Chromium pid if that hangs; then the process is stopped by its pid."
        how = "Chromium not started"
        if self.browser is not None and self.proc is not None:
            watchdog = threading.Timer(timeout, lambda: self.proc.poll() is None and self.proc.kill())
            watchdog.start()
            try: self.browser.close()
            except Exception: pass
            finally: watchdog.cancel()
        children = _descendants(self.proc.pid) if self.proc is not None else []
        if self.proc is not None: how = stop_process(self.proc, timeout, "Chromium")
        _stop_all(children)
        if self.pw is not None:
            try: self.pw.stop()
            except Exception: pass
        self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return how

    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()

# ---------------------------------------------------------------- the notebook in the page (window.jupyterapp)
_PANEL_JS = """(path) => {
  const app = window.jupyterapp; if (!app) return null;
  for (const w of app.shell.widgets('main')) if (w.context && w.context.path === path && w.content && w.content.model) return w;
  return null; }"""

def _panel(expr):   # JS evaluated with `panel` bound to the notebook panel of `path`
    return f"(path) => {{ const panel = ({_PANEL_JS})(path); if (!panel) return null; {expr} }}"

def open_notebook(page, lab, path, timeout=120.0, workspace=None):
    "Open `path` in the lab and wait until its kernel is connected and idle."
    page.goto(lab.url(path, workspace), timeout=timeout * 1000)
    page.wait_for_function("() => !!window.jupyterapp", timeout=timeout * 1000)
    ready, deadline = _panel("""
        const k = panel.sessionContext.session && panel.sessionContext.session.kernel;
        return panel.context.isReady && !!k && k.connectionStatus === 'connected' && k.status === 'idle';"""), \
        time.monotonic() + timeout
    while not page.evaluate(ready, path):
        # a notebook without a kernelspec asks for a kernel: take the one offered (the default, python3)
        dialog = page.locator(".jp-Dialog")
        if dialog.count() and "kernel" in dialog.first.inner_text().lower():
            dialog.first.locator(".jp-mod-accept").first.click()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: no idle kernel {timeout:.0f}s after opening it in JupyterLab; dialogs: "
                               f"{[d.inner_text()[:200] for d in dialog.all()]}")
        time.sleep(0.5)
    page.evaluate(_panel("window.jupyterapp.shell.activateById(panel.id); return true;"), path)

def run_all(page, path, timeout=300.0):
    """Run All (`notebook:run-all-cells`, what Run → Run All Cells calls) and wait until it has finished and the
    kernel is idle. Returns the command's result (false when a cell failed)."""
    page.evaluate(_panel("""
        window.jupyterapp.shell.activateById(panel.id);
        window.__wbRunAll = null;
        window.jupyterapp.commands.execute('notebook:run-all-cells').then(
            r => { window.__wbRunAll = {ok: r}; }, e => { window.__wbRunAll = {error: String(e)}; });
        return true;"""), path)
    page.wait_for_function("() => window.__wbRunAll !== null", timeout=timeout * 1000, polling=500)
    page.wait_for_function(_panel("""
        const k = panel.sessionContext.session && panel.sessionContext.session.kernel;
        return !!k && k.status === 'idle';"""), arg=path, timeout=timeout * 1000, polling=500)
    return page.evaluate("() => window.__wbRunAll")

def saved_at(page, path):
    "The last-modified time of the notebook as JupyterLab last loaded or saved it (changes when the lab saves)."
    return page.evaluate(_panel("return panel.context.contentsModel ? panel.context.contentsModel.last_modified : null;"), path)

def notebook_state(page, path) -> dict:
    """Every cell of the open notebook as JupyterLab holds it: `cells` = [{index, type, count, source (first line),
    errors: ['Name: value'], outputs: [output types / mime types]}], plus the kernel status."""
    return page.evaluate(_panel("""
        const cells = [];
        for (let i = 0; i < panel.content.model.cells.length; i++) {
          const m = panel.content.model.cells.get(i);
          const src = m.sharedModel.getSource();
          const c = {index: i, type: m.type, source: src.trim().split('\\n')[0].slice(0, 120), blank: !src.trim()};
          if (m.type === 'code') {
            const outs = m.outputs.toJSON();
            c.count = m.executionCount;
            c.errors = outs.filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`);
            c.outputs = outs.map(o => o.output_type === 'stream' ? `stream:${o.name}` : o.output_type === 'error' ? 'error'
                                    : Object.keys(o.data || {}).join('|'));
          }
          cells.push(c);
        }
        const k = panel.sessionContext.session && panel.sessionContext.session.kernel;
        return {cells, kernel: k ? k.status : null};"""), path)

def running_cells(page) -> list:
    "Indices of the cells whose prompt shows `[*]` (running or queued)."
    return page.evaluate("""() => Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')).map(
        (c, i) => [i, (c.querySelector('.jp-InputPrompt') || {}).innerText || '']).filter(x => x[1].includes('*')).map(x => x[0])""")

# ---------------------------------------------------------------- what the page shows
# JupyterLab 4 renders an error output and a stream on stderr alike: `.jp-OutputArea-output.jp-RenderedText` with
# data-mime-type="application/vnd.jupyter.stderr" and no class telling them apart. The notebook model says which
# is which (`notebook_state`); inside widgets (an ipywidgets Output) only the text does: a traceback has IPython's
# `Traceback (most recent call last)` header, a `Cell In[n], line m` frame (syntax errors) or an
# `<Name>Error: ...` line at the start of a line, which a warning (`file.py:1: UserWarning: ...`) does not.
TRACEBACKS_JS = r"""(scope) => {
  const root = scope ? document.querySelector(scope) : document;
  const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
  const found = [];
  if (!root) return found;
  for (const o of root.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')) {
    const text = o.innerText || '';
    if (/Traceback \(most recent call last\)/.test(text) || /^\s*Cell In\[\d+\], line \d+/m.test(text)
        || /^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)(: |$)/m.test(text))
      found.push({cell: cells.indexOf(o.closest('.jp-Cell')), inWidget: !!o.closest('.jupyter-widgets'),
                  inLogConsole: !!o.closest('.jp-LogConsole'),
                  text: text.trim().split('\n').slice(-3).join(' | ').slice(0, 400)});
  }
  return found; }"""

def page_tracebacks(page, scope=None) -> list:
    "Tracebacks shown in the page (or under the CSS selector `scope`): [{cell, inWidget, text}]."
    return page.evaluate(TRACEBACKS_JS, scope)

def open_log_console(page, path, timeout=30.0) -> int:
    """Open JupyterLab's Log Console for the notebook (where outputs of widget callbacks land, e.g. the traceback of
    a slider's observer) and return how many entries it shows."""
    page.evaluate(_panel("window.jupyterapp.shell.activateById(panel.id); return true;"), path)
    page.evaluate("() => window.jupyterapp.commands.execute('logconsole:open', {insertMode: 'split-bottom'})")
    page.wait_for_selector(".jp-LogConsole", timeout=timeout * 1000)
    time.sleep(1.0)
    return page.evaluate("() => document.querySelectorAll('.jp-LogConsole .jp-OutputArea-child').length")

def widget_display_errors(page) -> list:
    """Outputs of the notebook saying a widget could not be shown (ipywidgets' 'Error displaying widget'):
    [{cell, text}]."""
    return page.evaluate(r"""() => {
      const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')), out = [], seen = new Set();
      for (const o of document.querySelectorAll('.jp-OutputArea-output'))
        for (const m of (o.innerText || '').matchAll(/Error displaying widget[^\n]*/g)) {
          const cell = cells.indexOf(o.closest('.jp-Cell')), text = m[0].slice(0, 300);
          if (!seen.has(cell + text)) { seen.add(cell + text); out.push({cell, text}); } }
      return out; }""")

def scroll_to_cell(page, i):
    "Scroll cell `i` of the open notebook into view (for the page screenshot of a failure)."
    page.evaluate("""(i) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
                             if (c) c.scrollIntoView({block: 'start'}); }""", i)

def rendered_widgets(page) -> int:
    "How many widget views the notebook's own output areas show (not counting widgets inside widgets)."
    return page.evaluate("""() => Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output > .jupyter-widgets'))
                              .filter(e => !e.parentElement.closest('.jupyter-widgets')).length""")

# A browser widget: the `.wb-browse` container of `workbench.viz.browse`, else (older browse, any slider browser)
# the innermost `.widget-vbox` holding a `.widget-slider` and a figure area (`.widget-output` or `.widget-image`).
FIND_BROWSERS_JS = r"""() => {
  const fig = '.widget-output, .widget-image';
  let found = Array.from(document.querySelectorAll('.jp-Notebook .wb-browse'));
  const kind = found.length ? 'wb-browse' : 'widget-vbox';
  if (!found.length) {
    const c = Array.from(document.querySelectorAll('.jp-Notebook .widget-vbox'))
                   .filter(v => v.querySelector('.widget-slider') && v.querySelector(fig));
    found = c.filter(v => !c.some(o => o !== v && v.contains(o)));
  }
  const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
  return found.map((w, i) => {
    w.setAttribute('data-wb-browser', String(i));
    const f = w.querySelector('.wb-browse-image, ' + fig);
    if (f) f.setAttribute('data-wb-figure', String(i));
    const next = Array.from(w.querySelectorAll('button')).find(
        b => b.classList.contains('wb-browse-next') || /\bnext\b/i.test((b.title || '') + ' ' + b.innerText));
    if (next) next.setAttribute('data-wb-next', String(i));
    return {index: i, kind, cell: cells.indexOf(w.closest('.jp-Cell')), figure: !!f, next: !!next,
            filters: w.querySelectorAll('.wb-browse-filter').length};
  }); }"""

def find_browsers(page) -> list:
    """The slider browsers on the page, tagged `data-wb-browser=i` (figure area `data-wb-figure=i`, next button
    `data-wb-next=i`): [{index, kind, cell, figure, next, filters (how many dropdowns)}]."""
    return page.evaluate(FIND_BROWSERS_JS)

def slider_value(page, i):
    "The value the slider of browser `i` shows (its readout, else the handle's aria-valuenow)."
    return page.evaluate("""(i) => {
      const w = document.querySelector(`[data-wb-browser="${i}"]`), r = w && w.querySelector('.widget-readout');
      if (r && r.innerText.trim()) return r.innerText.trim();
      const h = w && w.querySelector('.noUi-handle, [role=slider]');
      return h ? h.getAttribute('aria-valuenow') : null; }""", i)

def slider_at_max(page, i) -> bool:
    return page.evaluate("""(i) => {
      const h = document.querySelector(`[data-wb-browser="${i}"] .noUi-handle, [data-wb-browser="${i}"] [role=slider]`);
      return !!h && parseFloat(h.getAttribute('aria-valuenow')) >= parseFloat(h.getAttribute('aria-valuemax')); }""", i)

_FIGURE_SIG_JS = """(i) => {
  const f = document.querySelector(`[data-wb-figure="${i}"]`); if (!f) return null;
  const imgs = f.tagName === 'IMG' ? [f] : Array.from(f.querySelectorAll('img'));
  if (imgs.some(im => !im.complete || !im.naturalWidth)) return 'loading';
  let h = 5381; const s = f.tagName === 'IMG' ? f.src : f.innerHTML;
  for (let k = 0; k < s.length; k++) h = ((h * 33) ^ s.charCodeAt(k)) >>> 0;
  return `${s.length}:${h}:${imgs.map(im => im.naturalWidth + 'x' + im.naturalHeight).join(',')}`; }"""

def figure_signature(page, i):
    "A hash of what the figure area of browser `i` holds ('loading' while an image loads, None without one)."
    return page.evaluate(_FIGURE_SIG_JS, i)

def wait_figure_change(page, i, before, timeout=60.0, settle=0.6) -> bool:
    "Wait until the figure of browser `i` differs from signature `before` and stays the same for `settle` s."
    deadline, last, since = time.monotonic() + timeout, None, None
    while time.monotonic() < deadline:
        sig = figure_signature(page, i)
        if sig not in (None, "loading", before):
            if sig != last: last, since = sig, time.monotonic()
            elif time.monotonic() - since >= settle: return True
        else: last = None
        time.sleep(0.2)
    return False

def screenshot_figure(page, i, path):
    """Screenshot the part of browser `i`'s figure area that is visible in the notebook (scrolled into view and
    clipped to the notebook's scroll area, so the toolbars and the status bar are not in it). Returns the path."""
    fig = page.locator(f'[data-wb-figure="{i}"]')
    fig.scroll_into_view_if_needed(timeout=30_000)
    box = page.evaluate("""(i) => {
      const f = document.querySelector(`[data-wb-figure="${i}"]`), r = f.getBoundingClientRect();
      let x0 = Math.max(r.left, 0), y0 = Math.max(r.top, 0), x1 = Math.min(r.right, innerWidth), y1 = Math.min(r.bottom, innerHeight);
      // the notebook's scroll area (JupyterLab 4: .jp-WindowedPanel-outer), not the toolbars and status bar around it
      const sc = f.closest('.jp-WindowedPanel-outer') || f.closest('.jp-NotebookPanel-notebook') || f.closest('.jp-Notebook');
      if (sc) { const c = sc.getBoundingClientRect();
        x0 = Math.max(x0, c.left); y0 = Math.max(y0, c.top); x1 = Math.min(x1, c.right); y1 = Math.min(y1, c.bottom); }
      const x = Math.ceil(x0), y = Math.ceil(y0), w = Math.floor(x1) - x, h = Math.floor(y1) - y;
      return {x, y, width: w, height: h}; }""", i)
    if box["width"] < 2 or box["height"] < 2: raise AssertionError(f"figure area of browser {i} is not visible: {box}")
    page.screenshot(path=str(path), clip=box)
    return path

def image_difference(a, b) -> dict:
    """How two screenshots differ: `changed` pixels (a channel off by more than 16 of 255), their `fraction`, and
    whether the sizes differ (then every pixel counts as changed)."""
    import numpy as np
    from PIL import Image
    x, y = (np.asarray(Image.open(p).convert("RGB")).astype(np.int16) for p in (a, b))
    if x.shape != y.shape:
        return {"size_changed": True, "shapes": (x.shape, y.shape), "changed": max(x.size, y.size) // 3, "fraction": 1.0}
    changed = int((np.abs(x - y).max(axis=-1) > 16).sum())
    return {"size_changed": False, "shapes": (x.shape,), "changed": changed, "fraction": changed / (x.shape[0] * x.shape[1])}

# The dropdowns of a browser (`viz.browse(..., filters=...)`): `.wb-browse-filter` boxes, each with a `<select>`.
_FILTERS_JS = r"""(i) => Array.from(document.querySelectorAll(`[data-wb-browser="${i}"] .wb-browse-filter`)).map(f => {
  const key = Array.from(f.classList).find(c => c.startsWith('wb-browse-filter-')).slice('wb-browse-filter-'.length);
  const s = f.querySelector('select'), o = s ? Array.from(s.options) : [];
  return {key, options: o.map(x => x.text), selected: s && s.selectedIndex >= 0 ? o[s.selectedIndex].text : null}; })"""

def browser_filters(page, i) -> list:
    "The dropdowns of browser `i`: [{key, options (their labels), selected}]."
    return page.evaluate(_FILTERS_JS, i)

def choose_filter(page, i, key, label):
    "Choose the option labelled `label` in the dropdown `key` of browser `i`, as a user does."
    page.locator(f'[data-wb-browser="{i}"] .wb-browse-filter-{key} select').select_option(label=label, timeout=30_000)

def browser_label(page, i) -> str:
    "The caption of browser `i` (`.wb-browse-label`)."
    return page.locator(f'[data-wb-browser="{i}"] .wb-browse-label').first.inner_text(timeout=30_000).strip()

def wait_label(page, i, ok, timeout=60.0):
    "Wait until `ok(caption)` holds for browser `i`; the caption, or None on timeout."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = browser_label(page, i)
        if ok(text): return text
        time.sleep(0.2)
    return None
