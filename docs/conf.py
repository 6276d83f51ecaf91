"""Sphinx configuration for the jaxnet site.

Build:  nox -s docs
   or:  pip install -e '.[docs]' && sphinx-build -W --keep-going -b html docs docs/_build/html

Chinese (简体中文) edition, from the catalogs in docs/locale/zh_CN/LC_MESSAGES:
        sphinx-build -W --keep-going -b html -D language=zh_CN docs docs/_build/html/zh_CN

Every tutorial is a MyST-Markdown notebook that myst-nb executes during the
build; a cell that raises fails the build. Execution goes through one shared
jupyter-cache (``nb_execution_mode = "cache"``, docs/_build/.jupyter_cache) keyed
on each notebook's code cells: the English build executes, and the Chinese build
(same code cells, translated prose) reuses those outputs, so both languages show
the same numbers from one execution. A page whose code changed executes again;
a change in jaxnet itself does not change the key, so ``nox -s docs`` and
``.ci/run`` start from an empty cache. Nothing is fetched at build time or by
the built pages: no intersphinx, no remote images, fonts, math renderer or
analytics.
"""

import copy
import inspect
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# autodoc imports the checkout's jaxnet even when it is not installed editable.
sys.path.insert(0, str(ROOT))
# The site's own extensions (docs/_ext): jaxnet_xref links API names in the prose.
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

# The notebooks must run in *this* interpreter's environment (the one that has
# jaxnet and ipykernel installed), never a kernel registered elsewhere on the
# machine. Environment kernels come before user-level ones, and the ipykernel
# wheel's spec says "python", which jupyter_client replaces by sys.executable.
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
# Figures render as PNGs in the page through the kernel's inline backend. The
# kernel inherits this process's environment, and CI exports MPLBACKEND=Agg
# (under which plt.show() draws nothing), so this one is set, not defaulted.
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

# Cells tagged raises-exception show the error a reader would meet. The kernel
# prints it as IPython's "Minimal" traceback (the exception line only), not a
# screen of library frames with this machine's paths. The kernel's own log
# keeps to errors (it warns, for every notebook, that its local TCP sockets are
# unencrypted). The profile lives in a temporary IPYTHONDIR, so the kernel
# writes no history into the checkout.
_ipython_dir = Path(tempfile.mkdtemp(prefix="jaxnet-docs-ipython-"))
(_ipython_dir / "profile_default").mkdir()
(_ipython_dir / "profile_default" / "ipython_kernel_config.py").write_text(
    'c.InteractiveShell.xmode = "Minimal"\nc.IPKernelApp.log_level = "ERROR"\n')
os.environ["IPYTHONDIR"] = str(_ipython_dir)


def _check_kernel() -> None:
    from jupyter_client.kernelspec import get_kernel_spec

    spec = get_kernel_spec("python3")
    exe = spec.argv[0]
    if exe not in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") \
            and Path(exe).resolve() != Path(sys.executable).resolve():
        raise RuntimeError(
            f"docs: the 'python3' Jupyter kernel ({spec.resource_dir}) runs {exe}, not this "
            f"interpreter ({sys.executable}); install ipykernel here (pip install -e '.[docs]') "
            f"or remove that kernel spec")


_check_kernel()

project = "jaxnet"
author = "the jaxnet authors"
copyright = "the jaxnet authors"  # noqa: A001 - Sphinx's name
release = version = "0.1.0"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    # Every inline literal naming a public jaxnet object links to its API entry, and
    # jax/optax/flax.nnx/numpy names to their upstream references (a URL pattern per
    # library: intersphinx would fetch objects.inv, and the build is offline). A
    # post-transform, so the Chinese pages get the same links (docs/_ext/jaxnet_xref.py).
    "jaxnet_xref",
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# --- i18n: the Chinese edition (sphinx-intl catalogs, one per page) -------------
# `-D language=zh_CN` builds it; the API reference has no catalogs and stays English.
locale_dirs = ["locale/"]
gettext_compact = False     # one catalog per page (docs/locale/zh_CN/LC_MESSAGES/<page>.po)
gettext_location = False    # no source line numbers: editing a page does not touch its catalog
gettext_uuid = False
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}   # the switcher's languages
TRANSLATED_DIR = "zh_CN"    # the Chinese site is docs/_build/html/zh_CN

# --- myst-nb: execute every notebook once, through a cache both languages share --
nb_execution_mode = "cache"
nb_execution_cache_path = str(ROOT / "docs" / "_build" / ".jupyter_cache")
nb_execution_raise_on_error = True
nb_execution_show_tb = True          # the traceback is in the build log when a cell fails
nb_execution_timeout = 300           # seconds per cell (MNIST pages train for a few)
nb_execution_in_temp = True          # checkpoints a page writes never land in docs/
nb_merge_streams = True              # one output block per cell, not one per print
nb_render_error_lexer = "text"       # an error is one message (see IPYTHONDIR below)
# Anything a cell writes to stderr (a DeprecationWarning, a stray log line) fails
# the -W build; a cell that means to show stderr says so in its metadata:
#   :mystnb:
#     output_stderr: show
nb_output_stderr = "warn"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# --- autodoc ------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"   # types beside the Args: entries
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
# The API reference: docs/api/<module>.md, one page per public module. The build
# checks that every name in each public module's __all__ is on a page (see
# _check_api_coverage; tests/test_api_docs.py checks the pages' sources).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# --- HTML -----------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "jaxnet"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_js_files = ["jaxnet.js"]   # tables at phone width: each cell labelled with its column
templates_path = [str(ROOT / "docs" / "_templates")]   # the switcher (lang-switch.html)
html_theme_options = {
    "show_toc_level": 2,
    # The language switcher (_templates/lang-switch.html), beside the download menu.
    "article_header_end": ["lang-switch.html", "article-header-buttons.html"],
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "launch_buttons": {},
    # Nothing remote: no analytics, no icon links that load from elsewhere.
    "analytics": {},
    "icon_links": [],
    # One search box: the sidebar's (and, below 960 px, the article header's
    # magnifier; custom.css). The theme's top bar would repeat it.
    "navbar_persistent": [],
}
html_show_sourcelink = True
html_last_updated_fmt = None

# --- copy buttons (sphinx-copybutton) ---------------------------------------------
# On code cells and code blocks, not on outputs; a docstring example's ">>> " and
# "... " prompts are left out of what is copied (and its output lines with them).
copybutton_selector = "div:not(.output) > div.highlight pre"
copybutton_exclude = ".linenos, .gp, .go"
copybutton_prompt_text = r">>> |\.\.\. "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True


# --- names jaxnet re-exports from other libraries (e.g. ``jaxnet.nn.Rngs``) -----
# The reference says where such a name comes from and documents it by its own
# docstring only: its members are the other library's API (and their docstrings
# follow that library's conventions, not ours).
def _foreign(obj) -> str | None:
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and module.split(".")[0] not in ("jaxnet", "builtins"):
        return module
    return None


def _skip_foreign_members(app, what, name, obj, skip, options):
    if what in ("class", "exception") and _foreign(obj):
        return True
    return None


def _note_reexports(app, what, name, obj, options, lines):
    module = _foreign(obj)
    if what in ("class", "function") and module and name.startswith("jaxnet."):
        qualname = getattr(obj, "__qualname__", name.rsplit(".", 1)[-1])
        lines[:0] = [f"Re-exported from ``{module}.{qualname}``.", ""]


# Flax NNX modules are built by a metaclass whose __call__(*args, **kwargs)
# autodoc would show as every layer's signature; show the __init__ arguments.
def _init_signature(app, what, name, obj, options, signature, return_annotation):
    if what not in ("class", "exception") or not isinstance(obj, type):
        return None
    if type(obj).__call__ is type.__call__:
        return None
    init = next((klass.__dict__["__init__"] for klass in obj.__mro__
                 if "__init__" in klass.__dict__), object.__init__)
    if init is object.__init__:
        return "()", None
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):
        return None
    params = [p.replace(annotation=inspect.Parameter.empty)
              for p in list(sig.parameters.values())[1:]]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty)), None


# myst-nb 1.4 merges a cell's stdout chunks after stripping each one's trailing
# whitespace and appending a newline, so a chunk boundary that falls inside a
# print (the kernel flushes on a timer, e.g. while JAX compiles) shows up as a
# stray blank line or line break. Join the chunks exactly first, as nbclient's
# own coalesce_streams does; myst-nb's pass then sees one chunk per stream.
def _patch_stream_merging() -> None:
    import myst_nb.core.render as render

    original = render.coalesce_streams
    if getattr(original, "_jaxnet_exact", False):
        return

    def coalesce_streams(outputs):
        merged, streams = [], {}
        for output in outputs or []:
            if output.get("output_type") == "stream":
                if output["name"] in streams:
                    streams[output["name"]]["text"] += output["text"]
                    continue
                output = copy.copy(output)  # keep its type (a NotebookNode)
                streams[output["name"]] = output
            merged.append(output)
        return original(merged)

    coalesce_streams._jaxnet_exact = True
    render.coalesce_streams = coalesce_streams


_patch_stream_merging()


# `sphinx-build -j N` reads in N processes, each taking chunks of documents in
# sorted order; Sphinx's chunks hold up to a dozen documents, so the first one
# held every chapter and the notebooks still executed one after another. Here
# each executed page is a chunk of its own, the biggest (the MNIST chapter) first,
# so that N notebooks execute at once; the other pages follow in Sphinx's chunks.
def _patch_read_chunks() -> None:
    import sphinx.builders as builders

    original = builders.make_chunks
    if getattr(original, "_jaxnet_notebooks_first", False):
        return

    def make_chunks(arguments, nproc, maxbatch=10):
        docs = ROOT / "docs"
        notebooks = [d for d in arguments if (docs / f"{d}.md").is_file()
                     and (docs / f"{d}.md").read_text(encoding="utf-8").count("{code-cell}")]
        rest = [d for d in arguments if d not in notebooks]
        notebooks.sort(key=lambda d: _execution_weight(docs / f"{d}.md"), reverse=True)
        return [[d] for d in notebooks] + (original(rest, nproc, maxbatch) if rest else [])

    def _execution_weight(path):
        """Pages that train on real MNIST run longest; then the longer page first."""
        text = path.read_text(encoding="utf-8")
        return (text.count("train_mnist(") + text.count("load_mnist("), len(text))

    make_chunks._jaxnet_notebooks_first = True
    builders.make_chunks = make_chunks


_patch_read_chunks()


# A class's "Bases:" line names public classes only, by the name a reader imports
# them under: a jaxnet class outside every __all__ (jaxnet.callbacks._Described,
# the TorchHabits mixin) is replaced by what it derives from; a jaxnet base is
# named where it is documented (jaxnet.nn.Module, not jaxnet.nn._module.Module)
# and another library's by its shortest public path (flax.nnx.Linear).
def _public_bases(app, name, obj, options, bases):
    names = _public_names()
    shown, todo = [], list(bases)
    while todo:
        base = todo.pop(0)
        if not isinstance(base, type):
            shown.append(base)
        elif id(base) in names:
            shown.append(f":py:class:`{names[id(base)]}`")
        elif base.__module__.split(".")[0] == "jaxnet" or base.__name__.startswith("_"):
            todo[:0] = base.__bases__  # in its place, what it derives from
        else:
            shown.append(_shortest_path(base))
    shown = list(dict.fromkeys(shown))
    if len(shown) > 1 and object in shown:
        shown.remove(object)
    bases[:] = shown


def _shortest_path(cls):
    parts = cls.__module__.split(".")
    for n in range(1, len(parts)):
        module = sys.modules.get(".".join(parts[:n]))
        if getattr(module, cls.__name__, None) is cls:
            return f":py:class:`{module.__name__}.{cls.__name__}`"
    return cls


def _public_names() -> dict[int, str]:
    """id(object) -> the name it is documented under (its first public module)."""
    if not _PUBLIC_NAMES:
        modules = _public_modules()  # jaxnet first: its re-exports' homes go before it
        for module in [*modules[1:], modules[0]]:
            for member in module.__all__:
                _PUBLIC_NAMES.setdefault(id(getattr(module, member)), f"{module.__name__}.{member}")
    return _PUBLIC_NAMES


_PUBLIC_NAMES: dict[int, str] = {}


def _public_modules():
    """``jaxnet`` and every public module it exposes (``jaxnet.nn.functional`` too)."""
    import jaxnet

    return jaxnet._public_modules()


def _check_api_coverage(app, env):
    """Warn (so the -W build fails) for each public name the API reference lacks.

    A name counts as documented under its module (``jaxnet.train.fit``) or, for a
    re-export such as ``jaxnet.fit``, under the public module it comes from.
    """
    from sphinx.util import logging

    if "api/index" not in env.found_docs:
        return
    logger = logging.getLogger(__name__)
    domain = env.get_domain("py")
    documented = set(domain.objects)
    homes = {}  # id(object) -> its documented public names
    modules = _public_modules()
    for module in modules:
        for member in module.__all__:
            if f"{module.__name__}.{member}" in documented:
                homes.setdefault(id(getattr(module, member)), []).append(member)
    for module in modules:
        if module.__name__ not in domain.modules:
            logger.warning(f"API reference: module {module.__name__} has no page: add "
                           f"docs/api/<name>.md with '.. automodule:: {module.__name__}'")
            continue
        for member in module.__all__:
            value = getattr(module, member)
            if (inspect.ismodule(value) or f"{module.__name__}.{member}" in documented
                    or id(value) in homes):
                continue
            logger.warning(f"API reference: {module.__name__}.{member} is in __all__ but on no "
                           f"page: give it a docstring, or a '.. py:data::' entry for a constant")


def _viewcode_backlinks(app, env):
    """Each "[docs]" link on a generated source page (_modules/) lands on its entry.

    viewcode builds the link from the first module that documented the source
    module (``refname``) and the last page that documented the object: for a name
    documented under two modules (``jaxnet.losses.nll_loss`` and its re-export
    ``jaxnet.nn.functional.nll_loss``) that was api/nn_functional.html#jaxnet.losses.
    nll_loss, an anchor that page lacks. The link goes to the page that documents
    ``refname.name``; a name documented under another module only
    (``jaxnet.train.ConsumedStateError``, defined in jaxnet.nn._functional) gets its
    anchor rewritten on the source page (_fix_viewcode_anchors).
    """
    objects = env.get_domain("py").objects
    fixes = {}
    for entry in getattr(env, "_viewcode_modules", {}).values():
        if not entry:
            continue
        _code, _tags, used, refname = entry
        for fullname, docname in list(used.items()):
            target = objects.get(f"{refname}.{fullname}")
            if target is not None:
                used[fullname] = target.docname
                continue
            homes = sorted(obj.node_id for name, obj in objects.items()
                           if obj.docname == docname and name.endswith(f".{fullname}")
                           and not obj.aliased)  # autodoc's :canonical: names have no id
            if homes:
                fixes[f"{refname}.{fullname}"] = homes[0]
    env.jaxnet_viewcode_fixes = fixes


def _fix_viewcode_anchors(app, pagename, templatename, context, doctree):
    fixes = getattr(app.env, "jaxnet_viewcode_fixes", {})
    if pagename.startswith("_modules/") and fixes and "body" in context:
        context["body"] = re.sub(
            r'(class="viewcode-back" href="[^"#]*#)([^"]+)"',
            lambda m: f'{m.group(1)}{fixes.get(m.group(2), m.group(2))}"', context["body"])


# PyTorch and JAX code look different: every executed cell is JAX (custom.css
# labels div.cell_input), and a ```python block that is not executed is the
# course's PyTorch when its code (comments left out) uses torch or the in-place
# training calls, else JAX: it gets the class code-pytorch or code-jax, which
# custom.css labels. The API reference's examples (>>> blocks) stay unlabelled.
_PYTORCH_CODE = re.compile(r"torch|\.backward\(|\.zero_grad\(")


def _label_code_blocks(app, doctree):
    from docutils import nodes

    for block in doctree.findall(nodes.literal_block):
        if block.get("language") != "python" or any(
                "cell" in parent.get("classes", ()) for parent in _ancestors(block)):
            continue
        code = "\n".join(line.split("#", 1)[0] for line in block.astext().splitlines())
        block["classes"].append("code-pytorch" if _PYTORCH_CODE.search(code) else "code-jax")


def _ancestors(node):
    while node.parent is not None:
        node = node.parent
        yield node


# Each notebook page offers its executed notebook (.ipynb, outputs included) in the
# download menu beside the .md source: myst-nb writes it to <build>/jupyter_execute/,
# and the book theme lists context["ipynb_source"] (it copies the file itself only
# when launch buttons, which would link to remote services, are configured).
# myst-nb 1.4 writes that notebook without its outputs when they came from the
# jupyter-cache (it merges them into its client's copy): always so for the Chinese
# build, and for an English rebuild; the outputs are merged back from the same cache.
def _offer_notebook(app, pagename, templatename, context, doctree):
    if "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    executed = Path(app.env.mystnb_config.output_folder) / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    if code and not any(c.get("outputs") for c in code):
        from jupyter_cache import get_cache

        try:
            _, notebook = get_cache(app.env.mystnb_config.execution_cache_path) \
                .merge_match_into_notebook(notebook)
        except KeyError:  # not in the cache (execution off): offered as it is
            pass
    if _is_translated(app.config) and _translate_notebook(app, pagename, notebook):
        context["jaxnet_notebook_translated"] = True
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def _translate_notebook(app, pagename, notebook) -> bool:
    """The Chinese page's notebook in Chinese: its catalog applied to the Markdown cells
    (docs/_ext/jaxnet_nbi18n.py; code cells and outputs are the English notebook's).
    False, and the English notebook is offered as such, when the catalog does not cover
    nine in ten of the page's prose blocks."""
    import jaxnet_nbi18n

    catalog_path = (Path(app.srcdir) / app.config.locale_dirs[0] / app.config.language
                    / "LC_MESSAGES" / f"{pagename}.po")
    if not catalog_path.is_file():
        return False
    translated_nb = copy.deepcopy(notebook)
    translated, looked_up = jaxnet_nbi18n.translate_notebook(
        translated_nb, jaxnet_nbi18n.load_catalog(catalog_path))
    if looked_up == 0 or translated < 0.9 * looked_up:
        return False
    notebook.cells = translated_nb.cells
    notebook.metadata = translated_nb.metadata
    return True


# The Chinese pages' download menu: the .ipynb is the executed notebook with the page's
# catalog applied to its Markdown cells (_translate_notebook), labelled 中文; the .md is
# the one English source (the catalogs translate the built page, not the source), and
# the menu says so, in Chinese, before a reader downloads it, as it does for a notebook
# whose catalog does not cover the page; the .pdf entry prints the Chinese page itself.
_ENGLISH_DOWNLOADS = {
    "download-notebook-button": (".ipynb（英文版）",
                                 "下载本章的笔记本：代码与输出与本页相同，说明文字为英文"),
    "download-source-button": (".md（英文原稿）",
                               "下载本页的 MyST 源文件：代码与本页相同，说明文字为英文"),
}
_CHINESE_NOTEBOOK = (".ipynb（中文）", "下载本章的笔记本：说明文字为中文，代码与输出与本页相同")


def _label_english_downloads(app, pagename, templatename, context, doctree):
    if not _is_translated(app.config):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") != "download-buttons":
            continue
        for button in group.get("buttons", []):
            label = button.get("label")
            if label == "download-notebook-button" and context.get("jaxnet_notebook_translated"):
                button["text"], button["tooltip"] = _CHINESE_NOTEBOOK
            elif label in _ENGLISH_DOWNLOADS:
                button["text"], button["tooltip"] = _ENGLISH_DOWNLOADS[label]


# --- the Chinese edition -----------------------------------------------------------
def _is_translated(config) -> bool:
    return (config.language or "en") != "en"


# The toggle of a collapsed cell (every exercise's solution is a hide-cell cell). myst-nb
# puts an English {type} ("content", "source", "outputs") into its label, so the Chinese
# label names what a hide-cell cell hides, its code and outputs, without it.
CHINESE_CODE_PROMPTS = ("显示代码和输出", "隐藏代码和输出")


def _chinese_code_prompts(app, config):
    """A zh_CN build labels the collapsed cells' toggles in Chinese."""
    if _is_translated(config) and config.language.split("_")[0] == "zh":
        config.nb_code_prompt_show, config.nb_code_prompt_hide = CHINESE_CODE_PROMPTS


def _chinese_search(app, config):
    """A zh_CN build indexes Chinese words: Sphinx's ``zh`` search splits with jieba.

    Without jieba the splitter keeps each run of Chinese text whole (a search for
    张量 finds nothing), so a Chinese build without it is a warning (-W: an error).
    """
    if not _is_translated(config):
        return
    if config.language.split("_")[0] == "zh":
        config.html_search_language = "zh"
        try:
            import jieba
        except ImportError:
            from sphinx.util import logging

            logging.getLogger(__name__).warning(
                "the Chinese search index needs jieba (pip install -e '.[docs]'): without it "
                "no Chinese word is searchable")
            return
        jieba.setLogLevel(30)  # WARNING: not its "Loading model from cache" lines
        # The course's terms (the glossary's 中文 column) are words of their own, so a
        # search for 自动微分 or 模型的保存与加载 finds them: the search box splits a query
        # only at spaces and punctuation, while jieba would cut 自动微分 into 自动 + 微分.
        terms = _glossary_terms()
        if terms:
            path = ROOT / "docs" / "_build" / f"jieba_terms.{config.language}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{term}\n" for term in terms), encoding="utf-8")
            config.html_search_options = {**config.html_search_options, "dict": str(path)}


def _glossary_terms() -> list[str]:
    """The Chinese terms in docs/glossary.md's table (its 中文 column), one per entry."""
    glossary = ROOT / "docs" / "glossary.md"
    terms = []
    if not glossary.is_file():
        return terms
    for line in glossary.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            cell = line.strip().strip("|").split("|")[1]
            terms += [t for t in re.split(r"[\s、，,／/（）()]+", cell)
                      if re.search(r"[\u4e00-\u9fff]", t)]
    return list(dict.fromkeys(terms))


def _translated_output_folder(app):
    """The Chinese build's executed notebooks go beside the English ones, not into its site.

    myst-nb writes them to <outdir>/../jupyter_execute, which for docs/_build/html/zh_CN
    is inside the English site; this runs after myst-nb's own builder-inited.
    """
    if not _is_translated(app.config) or not hasattr(app.env, "mystnb_config"):
        return
    folder = Path(app.outdir).parent
    if Path(app.outdir).name == TRANSLATED_DIR:
        folder = folder.parent
    app.env.mystnb_config = app.env.mystnb_config.copy(
        output_folder=str((folder / f"jupyter_execute_{app.config.language}").resolve()))


def _language_switch(app, pagename, templatename, context, doctree):
    """The relative link from this page to the same page in the other language.

    English pages are docs/_build/html/<page>.html, Chinese ones
    docs/_build/html/zh_CN/<page>.html: from 05_training.html the link is
    zh_CN/05_training.html, and back ../05_training.html (from api/x.html,
    ../zh_CN/api/x.html and ../../api/x.html).
    """
    up = "../" * pagename.count("/")
    page = pagename + app.builder.out_suffix
    if _is_translated(app.config):
        context["jaxnet_other_language"] = {
            "href": f"{up}../{page}", "hreflang": "en", "label": LANGUAGES["en"],
            "title": "Read this page in English"}
    else:
        context["jaxnet_other_language"] = {
            "href": f"{up}{TRANSLATED_DIR}/{page}", "hreflang": "zh-CN",
            "label": LANGUAGES[TRANSLATED_DIR], "title": "阅读本页的简体中文版"}


def _create_execution_cache(app, config):
    """Create the jupyter-cache database once, in the main process: with ``-j`` two
    workers executing their first notebooks at once on an empty cache both created its
    tables, and one failed the build (``sqlite3.OperationalError: table settings already
    exists``, seen in a fresh-clone .ci/run)."""
    if config.nb_execution_mode == "cache":
        from jupyter_cache import get_cache

        get_cache(config.nb_execution_cache_path).list_cache_records()  # makes the tables


def setup(app):
    app.connect("config-inited", _chinese_search)
    app.connect("config-inited", _chinese_code_prompts)
    app.connect("config-inited", _create_execution_cache)
    app.connect("builder-inited", _translated_output_folder, priority=600)  # after myst-nb
    app.connect("html-page-context", _language_switch)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _note_reexports)
    app.connect("autodoc-process-signature", _init_signature)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("env-check-consistency", _check_api_coverage)
    app.connect("env-check-consistency", _viewcode_backlinks)
    app.connect("html-page-context", _fix_viewcode_anchors)
    app.connect("html-page-context", _offer_notebook, priority=400)  # before the theme's 501
    app.connect("html-page-context", _label_english_downloads, priority=502)  # after it
    app.connect("doctree-read", _label_code_blocks)
