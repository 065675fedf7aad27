"""Build the docs site from the executed notebooks, as `nbdev_docs` would, without Quarto.

    python tools/run_notebooks.py --out _executed   # every notebook run top to bottom, outputs kept
    python tools/build_docs.py                      # _executed/ → _proc/ (nbdev-processed) → _site/
    python tools/build_docs.py --readme             # README.md from nbs/index.ipynb
    python tools/build_docs.py --check-readme       # fail if README.md is not what index.ipynb gives
    python tools/build_docs.py --stale | xargs -r python tools/run_notebooks.py --out _executed  # rerun what changed

Each executed notebook goes through nbdev's own processors (`nbdev.processors`, as `nbdev_proc_nbs`):
title and subtitle from the `# Title` / `> subtitle` cell, `show_doc` entries after exported
definitions, `#| export`, `#| hide` and `default_exp` cells dropped, directive lines stripped, doc links.
Two steps differ: `show_doc` cells are filled from the installed package instead of re-running the
notebook's cells in a kernel (`exec_show_docs`), and Quarto's cell options are applied here (`echo`,
`output`, `include`, `output: asis`); widget outputs are drawn from the widget state the run saved
(progress bars, labels, images; controls shown disabled). The result goes to `_proc/` under nbdev's page names
(`00_core.ipynb` → `core.ipynb`, so the page is `core.html`, where nbdev's doc links point), and
mkdocs + mkdocs-material + mkdocs-jupyter render it into `_site/`. This file is also the mkdocs hook
(`hooks:` in mkdocs.yml) that builds the nav and keeps pages free of CDN scripts.

Nothing is executed here: a notebook in nbs/ without an executed copy, whose copy's cells differ from the
notebook's (stale), or whose copy holds an error, is reported and fails the build (the pages that can be
built still are; `--partial` exits 0).
"""
import argparse, difflib, html, importlib, re, shutil, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, EXECUTED, PROC, SITE = ROOT/"nbs", ROOT/"_executed", ROOT/"_proc", ROOT/"_site"
README, INDEX = ROOT/"README.md", ROOT/"nbs"/"index.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "An interactive widget is shown here when the notebook runs in JupyterLab; a static page cannot run it."
CONTROLS_NOTE = "Interactive in JupyterLab; a static page cannot run its controls (above: what it showed when run)."
# API pages are grouped by the notebook's number (`03c_models.yolox` → Models).
API_GROUPS = {"00": "Core & config", "01": "Data", "02": "Transforms", "03": "Models",
              "04": "Metrics & inference", "05": "Visualisation", "06": "Detection",
              "07": "Training loop & tasks", "08": "Training loop & tasks",
              "09": "Experiments & CLI", "10": "Experiments & CLI", "11": "Experiments & CLI"}
CSS = """\
.md-grid { max-width: 1400px; }
.jupyter-wrapper .jp-RenderedMarkdown blockquote { border-left-width: .2rem; }
.jupyter-wrapper .jp-OutputArea-output img { max-width: 100%; height: auto; }
.jupyter-wrapper .jp-RenderedMarkdown h3 code, .jupyter-wrapper .jp-RenderedMarkdown h4 code { font-size: .9em; }
.jupyter-wrapper .jp-RenderedMarkdown hr { margin: 1.5em 0 .5em; }
.jupyter-wrapper a.nbdev-source { float: right; font-size: smaller; }
.jupyter-wrapper .jp-RenderedMarkdown .highlight pre { font-size: 13px; line-height: 1.45; }
.jupyter-wrapper td:first-child code { white-space: nowrap; }
.jupyter-wrapper a code { color: var(--md-typeset-a-color); }
.jupyter-wrapper .wb-widget { font-family: var(--jp-code-font-family); font-size: 12px; }
.jupyter-wrapper .wb-hbox { display: flex; gap: .5em; align-items: center; }
.jupyter-wrapper .wb-widget progress { width: 12em; }
.jupyter-wrapper .wb-widget button { border: 1px solid var(--md-default-fg-color--lighter); border-radius: 2px; padding: 0 .8em; }
.jupyter-wrapper .wb-widget-note { font-family: var(--jp-content-font-family); color: var(--md-default-fg-color--light); }
"""

def source_notebooks() -> list: # paths under nbs/, as tools/run_notebooks.py finds them
    "Every notebook the site is made of: the ones `run_notebooks.py` executes."
    if str(ROOT/"tools") not in sys.path: sys.path.insert(0, str(ROOT/"tools"))
    from run_notebooks import notebooks
    return [p.resolve().relative_to(NBS) for p in notebooks([NBS])]

def page_name(rel:Path) -> Path: # `03c_models.yolox.ipynb` → `models.yolox.ipynb`
    "nbdev's page name for a notebook (`nbdev.doclinks._nbpath2html`), as a notebook in `_proc/`."
    return rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower()))

def _cells(nb) -> list: return [(c.cell_type, c.source) for c in nb.cells]

def freshness(rels) -> tuple: # (fresh, missing, stale, failed): lists of paths relative to nbs/
    "Which notebooks have an executed copy in `_executed/` with the notebook's own cells, and no error output."
    import nbformat
    fresh, missing, stale, failed = [], [], [], []
    for rel in rels:
        if not (EXECUTED/rel).exists(): missing.append(rel); continue
        exe = nbformat.read(EXECUTED/rel, as_version=4)
        if _cells(exe) != _cells(nbformat.read(NBS/rel, as_version=4)): stale.append(rel)
        elif any(o.get('output_type') == 'error' for c in exe.cells for o in c.get('outputs', [])): failed.append(rel)
        else: fresh.append(rel)
    return fresh, missing, stale, failed

## nbdev processing

_re_directive = re.compile(r'^\s*#\|\s*([\w-]+):?\s*(.*?)\s*$')

def _options(cell) -> dict:
    "Quarto cell options: the directives nbdev parsed, then `#|` lines a processor added to the source."
    opts = {k.rstrip(':'): ' '.join(v) for k, v in getattr(cell, 'directives_', {}).items()}
    for line in cell.source.splitlines():
        m = _re_directive.match(line)
        if m: opts[m[1]] = m[2]
    return opts

def _text(v): return ''.join(v) if isinstance(v, list) else v

def static_cell(cell):
    "Quarto's cell options on a static page: `include`, `echo`, `output`, `output: asis`."
    cell.pop('has_sd', None)  # add_show_docs' mark, not a notebook field
    if cell.cell_type != 'code' or cell.get('source') is None: return
    opts = _options(cell)
    cell.source = '\n'.join(l for l in cell.source.splitlines() if not _re_directive.match(l)).strip()
    if opts.get('output') == 'false': cell.outputs = []
    if opts.get('include') == 'false': del cell['source']
    elif opts.get('output') == 'asis':
        md = '\n\n'.join(_text(o['data']['text/markdown']) for o in cell.outputs if 'text/markdown' in o.get('data', {}))
        for k in ('outputs', 'execution_count'): cell.pop(k, None)
        cell.cell_type, cell.source = 'markdown', md
        if not md: del cell['source']
    elif opts.get('echo') == 'false':
        if not cell.outputs: del cell['source']
        else: cell.metadata['tags'] = ['remove_input']

_CONTROLS = {'Button', 'ToggleButton', 'Checkbox', 'Dropdown', 'Select', 'SelectMultiple', 'RadioButtons', 'Text',
             'Textarea', 'IntSlider', 'FloatSlider', 'IntRangeSlider', 'FloatRangeSlider', 'SelectionSlider',
             'IntText', 'FloatText', 'BoundedIntText', 'BoundedFloatText', 'Play', 'ToggleButtons', 'ColorPicker'}

def _output_html(o) -> str:
    "An output kept in an Output widget's state, as HTML: figures, HTML, text."
    d = o.get('data', {})
    if 'image/png' in d: return f'<img src="data:image/png;base64,{_text(d["image/png"]).strip()}">'
    if 'text/html' in d: return _text(d['text/html'])
    text = _text(o.get('text', '')) or _text(d.get('text/plain', ''))
    return f'<pre>{html.escape(text)}</pre>' if text else ''

def widget_html(model_id:str, state:dict, controls:set) -> str:
    "A widget drawn from its saved state: text, progress bars, boxes, Output widgets' outputs; controls are noted in `controls`."
    m = state.get(model_id.replace('IPY_MODEL_', ''))
    if not m: return ''
    name, s = m['model_name'].removesuffix('Model'), m['state']
    kids = lambda: [widget_html(c, state, controls) for c in s.get('children', [])]
    if name in ('HTML', 'HTMLMath'): return s.get('value', '')
    if name == 'Label': return html.escape(s.get('value', ''))
    if name in ('FloatProgress', 'IntProgress'): return f'<progress value="{s.get("value", 0)}" max="{s.get("max", 100)}"></progress>'
    if name in ('HBox', 'GridBox'): return '<div class="wb-hbox">' + ''.join(kids()) + '</div>'
    if name in ('VBox', 'Box', 'Accordion', 'Tab'): return '<div>' + ''.join(f'<div>{k}</div>' for k in kids() if k) + '</div>'
    if name == 'Output': return ''.join(map(_output_html, s.get('outputs', [])))
    if name == 'Image':
        buf = [b['data'] for b in m.get('buffers', []) if b.get('path') == ['value'] and b.get('encoding') == 'base64']
        return f'<img src="data:image/{s.get("format", "png")};base64,{buf[0]}">' if buf else ''
    if name not in _CONTROLS: return ''
    controls.add(name)
    desc = html.escape(s.get('description', ''))
    if name in ('Button', 'ToggleButton'): return f'<button disabled>{desc}</button>'
    if name in ('IntSlider', 'FloatSlider'):
        return (f'<label>{desc} <input type="range" disabled min="{s.get("min", 0)}" max="{s.get("max", 100)}" '
                f'value="{s.get("value", 0)}"> {s.get("value", "")}</label>')
    if name in ('Dropdown', 'Select', 'RadioButtons', 'ToggleButtons'):   # the option chosen when it ran
        labels, i = s.get('_options_labels', []), s.get('index')
        shown = html.escape(labels[i]) if isinstance(i, int) and 0 <= i < len(labels) else ''
        return f'<label>{desc} <select disabled><option>{shown}</option></select></label>'
    return f'<span>{desc} {html.escape(str(s.get("value", "")))}</span>'

def static_widgets_proc():
    "Widget outputs drawn from the notebook's saved widget state (tqdm bars, Output widgets); controls get a note."
    from nbdev.process import Processor
    class static_widgets(Processor):
        def begin(self):
            self.state = (self.nb.metadata.get('widgets', {}).get('application/vnd.jupyter.widget-state+json') or {}).get('state', {})
        def cell(self, cell):
            for i, o in enumerate(cell.get('outputs', [])):
                if WIDGET_VIEW not in o.get('data', {}): continue
                controls = set()
                body = widget_html(o['data'][WIDGET_VIEW]['model_id'], self.state, controls)
                note = WIDGET_NOTE if not body.strip('<>/div') else CONTROLS_NOTE if controls else ''
                note = f'<p class="wb-widget-note"><em>{note}</em></p>' if note else ''
                cell.outputs[i] = dict(output_type='display_data', metadata={},
                                       data={'text/html': [f'<div class="wb-widget">{body}{note}</div>']})
    return static_widgets

def title_cell(nb):
    "nbdev's frontmatter (the `# Title` / `> subtitle` cell) back as a markdown heading, the page's title."
    import yaml
    from execnb.nbio import mk_cell
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.startswith('---'):
            fm = yaml.safe_load(c.source.strip().strip('-')) or {}
            md = f"# {fm.get('title', '')}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
            nb.cells[i] = mk_cell(md, 'markdown')
            return fm

def _find_obj(name, namespaces):
    for ns in namespaces():
        try: return eval(name, ns)
        except (NameError, AttributeError): pass
    raise NameError(f"show_doc: {name!r} is in no workbench module")

def _namespaces(nb):
    "The exported module's namespace first, then (imported when needed) every workbench module in `_modidx`."
    from nbdev.processors import _default_exp
    from workbench._modidx import d
    mods = ([f"workbench.{_default_exp(nb)}"] if _default_exp(nb) else []) + sorted(d['syms'])
    return lambda: (vars(importlib.import_module(m)) for m in dict.fromkeys(mods))

def show_doc_md(src, namespaces) -> str:
    "The markdown `show_doc(name, ...)` renders, with `name` looked up in `namespaces`."
    from nbdev.showdoc import show_doc
    call = re.search(r'show_doc\((.*)\)', src, re.S)[1]
    name, _, rest = call.partition(',')
    obj = _find_obj(name.strip(), namespaces)
    return eval(f"show_doc(__obj{', ' + rest if rest else ''})", {'show_doc': show_doc, '__obj': obj})._repr_markdown_()

def render_show_docs_proc():
    "nbdev's `exec_show_docs` without a kernel: `show_doc` cells with no output get the package's docs."
    from nbdev.process import Processor
    from nbdev.processors import _is_showdoc
    class render_show_docs(Processor):
        def begin(self): self.ns = _namespaces(self.nb)
        def cell(self, cell):
            if not _is_showdoc(cell) or cell.get('outputs'): return
            src = '\n'.join(l for l in cell.source.splitlines() if not _re_directive.match(l))
            try: md = show_doc_md(src, self.ns)
            except NameError as e: print(f"  warning: {self.nb.path_}: {e}; no entry shown"); return
            cell.outputs = [dict(output_type='display_data', metadata={}, data={'text/markdown': [md]})]
    return render_show_docs

_re_nblink = re.compile(r'\]\(nbs/([^)\s#]+\.ipynb)(#[^)\s]*)?\)')

def doc_links(nb, depth:int):
    "nbdev's doc links (`add_links`, to `doc_host`) and README-style `nbs/…ipynb` links made relative site links."
    from nbdev.config import get_config
    cfg = get_config()
    host, rel = cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/'), '../' * depth
    host = host.rstrip('/') + '/'
    def page(m): return f"]({rel}{page_name(Path(m[1])).with_suffix('.html').as_posix()}{m[2] or ''})"
    def fix(s): return _source_link(_re_nblink.sub(page, s.replace(f']({host}', f']({rel}')))
    for c in nb.cells:
        if c.cell_type == 'markdown': c.source = fix(c.source)
        for o in c.get('outputs', []):
            if 'text/markdown' in o.get('data', {}):
                o['data']['text/markdown'] = [fix(s) for s in o['data']['text/markdown']]

_re_source = re.compile(r'\[source\]\((\S+?)(?:#LNone)?\)\{[^}]*\}')

def _source_link(md:str) -> str:
    "show_doc's `[source](url){attrs}` (Quarto attributes) as an HTML link mistune can render."
    return _re_source.sub(r'<a href="\1" class="nbdev-source">source</a>', md)

_re_heading = re.compile(r'^(#{1,6}\s.*)$', re.M)

def heading_code(cell):
    "Inline code in headings as `<code>`, so the page's table of contents keeps it (mkdocs-jupyter drops `x`)."
    if cell.cell_type != 'markdown': return
    parts = re.split(r'(^```.*?^```)', cell.source, flags=re.M | re.S)  # fenced code stays as it is
    cell.source = ''.join(p if i % 2 else _re_heading.sub(
        lambda m: re.sub(r'`([^`\n]+)`', r'<code>\1</code>', m[1]), p) for i, p in enumerate(parts))

def site_procs() -> list:
    "nbdev's `FilterDefaults.base_procs`, Quarto-only steps left out (`insert_warning`, `add_fold`)."
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.processors import (populate_language, add_show_docs, strip_ansi, hide_line, filter_stream_,
        rm_header_dash, clean_show_doc, rm_export, ai_magics, clean_magics, hide_, add_links, mv_exports,
        strip_hidden_metadata)
    return [FrontmatterProc, populate_language, add_show_docs, strip_ansi, hide_line, filter_stream_,
            rm_header_dash, clean_show_doc, render_show_docs_proc(), rm_export, ai_magics, clean_magics,
            hide_, add_links, mv_exports, strip_hidden_metadata, static_widgets_proc(), static_cell, heading_code]

def process(src:Path, procs) -> dict:
    "An executed notebook as its docs page: nbdev-processed, title cell restored, no widget state."
    from execnb.nbio import read_nb
    from nbdev.process import NBProcessor
    nb = read_nb(src)
    NBProcessor(nb=nb, procs=procs).process()
    title_cell(nb)
    nb.metadata.pop('widgets', None)
    return nb

def write_pages(rels) -> list: # the pages written, relative to `_proc/`
    "Process the executed copies of `rels` into `_proc/` (emptied first), with the site's CSS."
    from execnb.nbio import write_nb
    import warnings
    if PROC.exists(): shutil.rmtree(PROC)
    (PROC/"assets").mkdir(parents=True)
    (PROC/"assets"/"workbench.css").write_text(CSS)
    pages = []
    for rel in rels:
        t0, dest = time.perf_counter(), PROC/page_name(rel)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = process(EXECUTED/rel, site_procs())
        doc_links(nb, len(rel.parts) - 1)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_nb(nb, dest)
        pages.append(dest.relative_to(PROC))
        print(f"  {time.perf_counter() - t0:5.1f}s  {rel} → _proc/{pages[-1]}", flush=True)
    return pages

## README

def readme_text() -> str:
    "README.md as `nbdev_readme` makes it from index.ipynb: processed, hidden cells dropped, no outputs."
    from execnb.nbio import read_nb
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    from nbdev.processors import populate_language, hide_line, rm_export, clean_magics, hide_, insert_warning
    nb = read_nb(INDEX)
    NBProcessor(nb=nb, procs=[FrontmatterProc, populate_language, insert_warning, hide_line, rm_export,
                              clean_magics, hide_, static_cell]).process()
    title_cell(nb)
    parts = [c.source.strip() if c.cell_type == 'markdown' else f"```python\n{c.source}\n```"
             for c in nb.cells if c.source.strip() and not c.metadata.get('tags')]
    return '\n\n'.join(parts) + '\n'

def check_readme() -> int:
    want, have = readme_text(), README.read_text() if README.exists() else ''
    if want == have: print("README.md is what nbs/index.ipynb generates"); return 0
    sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), want.splitlines(True),
                                               'README.md', 'from nbs/index.ipynb', n=1))
    print("README.md is not what nbs/index.ipynb generates: edit nbs/index.ipynb, then "
          "`python tools/build_docs.py --readme`")
    return 1

## mkdocs hook (mkdocs.yml `hooks:`)

def _title(page:Path) -> str:
    import json
    for c in json.loads(page.read_text())['cells']:
        m = c['cell_type'] == 'markdown' and re.match(r'#\s+(.+)', ''.join(c['source']))
        if m: return m[1].strip()
    return page.stem

def site_nav(docs_dir:Path) -> list:
    "Home and the unnumbered pages, Tutorials, then the API pages grouped by notebook number."
    home, top, tutorials, groups = [], [], [], {g: [] for g in API_GROUPS.values()}
    for rel in source_notebooks():
        page = page_name(rel)
        if not (docs_dir/page).exists(): continue
        entry = {_title(docs_dir/page): page.as_posix()}
        if rel.name == "index.ipynb" and len(rel.parts) == 1: home.append({"Home": page.as_posix()})
        elif len(rel.parts) == 1 and not rel.name[0].isdigit(): top.append(entry)  # e.g. architecture
        elif rel.parts[0] == "tutorials": tutorials.append(entry)
        else: groups.setdefault(API_GROUPS.get(rel.name[:2], "Other"), []).append(entry)
    api = [{g: pages} for g, pages in groups.items() if pages]
    return home + top + ([{"Tutorials": tutorials}] if tutorials else []) + ([{"API": api}] if api else [])

def on_config(config, **kw):
    if not config.nav: config.nav = site_nav(Path(config.docs_dir))
    return config

_re_mathjax = re.compile(r'<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->', re.S)

def on_page_content(html, page, config, files, **kw):
    "No MathJax from a CDN: the notebooks have no maths, and the page stays offline."
    return _re_mathjax.sub('', html)

## command line

def build(partial:bool) -> int:
    t0 = time.perf_counter()
    if not EXECUTED.is_dir():
        print(f"No executed notebooks in {EXECUTED}: run `python tools/run_notebooks.py --out _executed` first")
        return 1
    fresh, missing, stale, failed = freshness(source_notebooks())
    built = sorted(fresh + stale + failed)
    print(f"Processing {len(built)} executed notebooks into _proc/")
    write_pages(built)
    import logging
    logging.basicConfig(level=logging.WARNING, format="mkdocs %(levelname)s: %(message)s")
    logging.getLogger().handlers[0].addFilter(lambda r: "Alternative text is missing" not in r.getMessage())
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    t1 = time.perf_counter()
    mkdocs_build(load_config(str(ROOT/"mkdocs.yml")))
    print(f"Built _site/: {len(built)} pages (processing {t1 - t0:.0f}s, mkdocs {time.perf_counter() - t1:.0f}s)")
    for rel in missing: print(f"MISSING  nbs/{rel}: no executed copy in _executed/ (its page is not built)")
    for rel in stale: print(f"STALE    nbs/{rel}: _executed/{rel} has other cells than the notebook (its page is out of date)")
    for rel in failed: print(f"ERROR    nbs/{rel}: _executed/{rel} has error outputs (its page shows them)")
    if missing or stale or failed:
        print(f"{len(missing)} missing, {len(stale)} stale, {len(failed)} with errors: "
              "run `python tools/run_notebooks.py --out _executed` and fix what fails"
              + (" (--partial: not a failure)" if partial else ""))
        return 0 if partial else 1
    return 0

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--readme", action="store_true", help="write README.md from nbs/index.ipynb")
    g.add_argument("--check-readme", action="store_true", help="fail if README.md is not what index.ipynb gives")
    g.add_argument("--stale", action="store_true",
                   help="print the notebooks to (re)run: no executed copy, stale, or with errors")
    p.add_argument("--partial", action="store_true", help="build what is executed; missing or stale ones do not fail")
    a = p.parse_args(argv)
    if a.stale:
        fresh, *rerun = freshness(source_notebooks())
        print('\n'.join(str(NBS/rel) for rel in sorted(sum(rerun, []))))
        return 0
    if a.check_readme: return check_readme()
    if a.readme:
        README.write_text(readme_text()); print("wrote README.md from nbs/index.ipynb"); return 0
    return build(a.partial)

if __name__ == "__main__": sys.exit(main())
