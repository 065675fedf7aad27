"""Open every page of the built docs site (`_site/`) in headless Chromium and fail on what a reader would see broken.

    python tools/check_docs.py                          # after tools/build_docs.py
    python tools/check_docs.py --screenshots /tmp/shots # also a PNG of each page's first screen

The site is served by `http.server` on 127.0.0.1 (a thread of this process). A page fails when it does not
load (or returns >= 400), logs a console error or throws, asks for anything outside the site (the site is
offline: no CDN), links to a page the site does not have, shows an image that did not decode (`naturalWidth` 0), or shows fewer figures than its
processed notebook holds (`_proc/`), or none while its executed notebook (`_executed/`) has one.
"""
import argparse, functools, json, sys, tempfile, threading, time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_docs import EXECUTED, PROC, SITE, page_name, source_notebooks

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
LINKS_JS = """() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)
    .filter(h => h.startsWith(location.origin)).map(h => h.split('#')[0].split('?')[0])"""
IMAGES_JS = """() => Array.from(document.images).map(i => ({
    src: i.currentSrc.slice(0, 40), ok: i.complete && i.naturalWidth > 0,
    content: !!i.closest('.jupyter-wrapper')}))"""

class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

def serve(folder:Path): # (server, base url)
    "`folder` over HTTP on 127.0.0.1, a free port, in a daemon thread."
    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"

def png_count(nb_path:Path) -> int:
    "Figure outputs (image/png) in a notebook."
    if not nb_path.exists(): return 0
    cells = json.loads(nb_path.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))

def expected_figures() -> dict: # site page → (figures in _executed/, figures in _proc/)
    "How many figures each page's notebooks hold: executed copy and processed page."
    res = {}
    for rel in source_notebooks():
        page = page_name(rel)
        res[page.with_suffix(".html").as_posix()] = (png_count(EXECUTED/rel), png_count(PROC/page))
    return res

def check_page(page, url, base, want) -> tuple: # (problems, content images)
    "Load one page; the problems a reader would hit."
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text[:200]}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {str(e)[:200]}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:120]} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url[:120]}"))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
               or route.request.url.startswith("data:") else route.abort())
    resp = page.goto(url, wait_until="load")
    if resp is None or not resp.ok: problems.append(f"page did not load ({resp and resp.status})")
    page.evaluate("() => Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
    page.wait_for_timeout(100)
    imgs = page.evaluate(IMAGES_JS)
    problems += [f"image not shown: {i['src']}…" for i in imgs if not i["ok"]]
    shown = sum(i["content"] and i["ok"] for i in imgs)
    for link in sorted(set(page.evaluate(LINKS_JS))):
        target = SITE/unquote(link[len(base):])
        if not (target.is_file() or (target/"index.html").is_file()): problems.append(f"broken link: {link[len(base):]}")
    executed, processed = want
    if executed and not shown: problems.append(f"no figure shown; the executed notebook has {executed}")
    if shown < processed: problems.append(f"{shown} figures shown of the {processed} in its notebook")
    return problems, shown

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--screenshots", type=Path, help="folder for a PNG of each page")
    a = p.parse_args(argv)
    pages = sorted(f.relative_to(SITE).as_posix() for f in SITE.rglob("*.html")) if SITE.is_dir() else []
    if not pages: print(f"No pages in {SITE}: run `python tools/build_docs.py` first"); return 1
    from playwright.sync_api import sync_playwright
    t0, want, failed, images = time.perf_counter(), expected_figures(), 0, 0
    srv, base = serve(SITE)
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                            args=ARGS, viewport={"width": 1280, "height": 900})
            for name in pages:
                page = browser.new_page()
                problems, shown = check_page(page, base + name, base, want.get(name, (0, 0)))
                if a.screenshots:
                    a.screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(a.screenshots/(name.replace("/", "__")[:-5] + ".png")))
                page.close()
                failed, images = failed + bool(problems), images + shown
                print(f"{'FAIL' if problems else 'ok  '} {shown:3d} figures  {name}", flush=True)
                for msg in problems: print(f"       {msg}", flush=True)
            browser.close()
    finally: srv.shutdown()
    print(f"Checked {len(pages)} pages, {images} figures shown: {len(pages) - failed} passed, {failed} failed "
          f"({time.perf_counter() - t0:.0f}s)")
    return 1 if failed else 0

if __name__ == "__main__": sys.exit(main())
