"""Sphinx configuration for the jaxnet site.

Build:  nox -s docs
   or:  pip install -e '.[docs]' && sphinx-build -W --keep-going -b html docs docs/_build/html

Every tutorial is a MyST-Markdown notebook that myst-nb executes on each build
(``nb_execution_mode = "force"``); a cell that raises fails the build. Nothing
is fetched at build time or by the built pages: no intersphinx, no remote
images, fonts, math renderer or analytics.
"""

import copy
import inspect
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# autodoc imports the checkout's jaxnet even when it is not installed editable.
sys.path.insert(0, str(ROOT))

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
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# --- myst-nb: execute every notebook on every build --------------------------
nb_execution_mode = "force"
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
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# --- HTML -----------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "jaxnet"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "launch_buttons": {},
    # Nothing remote: no analytics, no icon links that load from elsewhere.
    "analytics": {},
    "icon_links": [],
}
html_show_sourcelink = True
html_last_updated_fmt = None


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


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _note_reexports)
    app.connect("autodoc-process-signature", _init_signature)
