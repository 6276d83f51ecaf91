"""The API reference documents every public name, one page per public module.

A public module is ``jaxnet`` or a module named in a public module's
``__all__`` (so ``jaxnet.nn.functional`` too). Each has a page
``docs/api/<name>.md`` holding its ``automodule`` directive, listed in
``docs/api/index.md``'s toctree. Every name in its ``__all__`` is then on that
page: a class or function by its own docstring (autodoc's ``members``), a
constant by a ``py:data`` entry whose ``:value:`` is the constant's, a
re-export of the top-level ``jaxnet`` at its home module.

These checks read the pages' sources (no Sphinx needed); the site build checks
the same on the built inventory (``docs/conf.py``'s ``_check_api_coverage``
warns, and ``-W`` fails), which the last test runs on the API pages alone
when Sphinx is installed (``pip install -e '.[docs]'``); in CI
(``JAXNET_I18N_REQUIRE_BUILD=1``) it reads the whole site ``.ci/run`` has just
built instead of building the API pages again, and builds only the site that
must fail. The tutorials' inline API names link to these entries
(docs/_ext/jaxnet_xref.py), in both languages.
"""

import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import jaxnet

DOCS = Path(__file__).resolve().parents[1] / "docs"
API = DOCS / "api"
HTML = Path(os.environ.get("JAXNET_DOCS_HTML", DOCS / "_build" / "html"))  # the built site

_DIRECTIVE = re.compile(r"^\.\. (auto\w+|py:\w+):: (\S+)\n((?:   :[\w-]+:.*\n)*)", re.M)
_OPTION = re.compile(r"^   :([\w-]+):(.*)$", re.M)


def public_modules() -> list:
    """``jaxnet`` and every module a public module names in its ``__all__``."""
    return jaxnet._public_modules()


def directives(page: Path) -> list[tuple[str, str, dict[str, str]]]:
    """``(directive, argument, options)`` of each autodoc/py directive on the page."""
    out = []
    for kind, argument, options in _DIRECTIVE.findall(page.read_text()):
        out.append((kind, argument, {k: v.strip() for k, v in _OPTION.findall(options)}))
    return out


def automodule_pages() -> dict[str, Path]:
    """module name -> the page holding its ``automodule``."""
    pages = {}
    for page in sorted(API.glob("*.md")):
        for kind, argument, _ in directives(page):
            if kind == "automodule":
                assert argument not in pages, f"{argument}: on {pages[argument]} and {page}"
                pages[argument] = page
    return pages


def documented_names(module, page: Path) -> set[str]:
    """The names of ``module.__all__`` that its page shows."""
    names = set()
    entries = directives(page)
    options = next(o for kind, arg, o in entries if kind == "automodule" and arg == module.__name__)
    members = "no-members" not in options
    excluded = {n.strip() for n in options.get("exclude-members", "").split(",") if n.strip()}
    for member in module.__all__:
        value = getattr(module, member)
        documentable = inspect.isclass(value) or inspect.isroutine(value)
        has_doc = documentable and bool(inspect.getdoc(value))
        if members and member not in excluded and has_doc:
            names.add(member)
    for kind, argument, opts in entries:
        if kind == "automodule":
            continue
        full = f"{opts['module']}.{argument}" if "module" in opts else argument
        prefix, _, member = full.rpartition(".")
        if prefix == module.__name__:
            names.add(member)
    return names


def test_every_public_module_has_a_page_in_the_index():
    pages = automodule_pages()
    modules = [m.__name__ for m in public_modules()]
    assert sorted(pages) == sorted(modules), "docs/api/: one page per public module"
    toctree = re.search(r"```\{toctree\}\n(.*?)```", (API / "index.md").read_text(), re.S).group(1)
    listed = {line.strip() for line in toctree.splitlines() if line.strip() and ":" not in line}
    assert listed == {page.stem for page in pages.values()}
    assert not (DOCS / "api.md").exists(), "docs/api.md and docs/api/index.md would both be 'api'"


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_every_public_name_is_on_its_page(module):
    page = automodule_pages()[module.__name__]
    shown = documented_names(module, page)
    text = page.read_text()
    missing = []
    for member in module.__all__:
        value = getattr(module, member)
        if inspect.ismodule(value) or member in shown:
            continue  # a module has its own page (the test above)
        if module.__name__ == "jaxnet":
            # A re-export: documented at its home, and the top-level page's table says where.
            home = next((m for m in public_modules()[1:]
                         if getattr(m, member, None) is value), None)
            if home is not None and f"`{home.__name__}.{member}`" in text:
                continue
        missing.append(member)
    assert not missing, (f"{page.relative_to(DOCS.parent)}: {module.__name__}.{missing} are in "
                         f"__all__ but not documented: give each a docstring, or a "
                         f"'.. py:data::' entry for a constant")


def test_constants_show_their_values():
    """A ``py:data`` entry's ``:value:`` is the constant's repr, so the page cannot go stale."""
    seen = 0
    for page in API.glob("*.md"):
        for kind, argument, opts in directives(page):
            if kind != "py:data":
                continue
            value = getattr(importlib.import_module(opts["module"]), argument)
            if "value" in opts:
                assert opts["value"] == repr(value), f"{page.name}: {argument}"
            assert opts.get("type"), f"{page.name}: {argument} needs a :type:"
            seen += 1
    assert seen >= 3  # RECIPES, MNIST_MIRROR, DATA_AXIS


def _api_site(tmp_path: Path, drop: str | None = None) -> Path:
    """A source folder with the real conf.py and API pages only (no notebooks run)."""
    src = tmp_path / "src"
    (src / "api").mkdir(parents=True)
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    shutil.copytree(DOCS / "_static", src / "_static")
    for page in API.glob("*.md"):
        text = page.read_text()
        if drop and page.stem == drop:
            continue
        if drop and page.name == "index.md":
            text = text.replace(f"\n{drop}\n", "\n")
        (src / "api" / page.name).write_text(text)
    (src / "index.md").write_text("# jaxnet\n\n```{toctree}\napi/index\n```\n")
    return src


def _build(src: Path, out: Path) -> subprocess.CompletedProcess:
    conf = (src / "conf.py").read_text()  # conf.py finds the checkout from its own path
    (src / "conf.py").write_text(conf.replace(
        "ROOT = Path(__file__).resolve().parents[1]", f"ROOT = Path({str(DOCS.parent)!r})"))
    return subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-j",
                           "auto", "-b", "html", str(src), str(out)], capture_output=True,
                          text=True, timeout=600)


def test_api_pages_build_and_cover_every_name(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    from sphinx.util.inventory import InventoryFile

    if os.environ.get("JAXNET_I18N_REQUIRE_BUILD") == "1" and (HTML / "objects.inv").is_file():
        site = HTML  # CI has just built the whole site with -W: check that build's pages
    else:
        site = tmp_path / "html"
        result = _build(_api_site(tmp_path), site)
        assert result.returncode == 0, result.stderr[-4000:]
    with open(site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    names = {name for kind, entries in inventory.items() if kind.startswith("py:")
             for name in entries}
    for module in public_modules()[1:]:
        assert not {m for m in module.__all__ if f"{module.__name__}.{m}" not in names}
    assert {"jaxnet.load", "jaxnet.fingerprint"} <= names
    # No "Bases:" names a private class or a private module's path.
    for page in (site / "api").glob("*.html"):
        for bases in re.findall(r"<p>Bases: (.*?)</p>", page.read_text(), re.S):
            text = re.sub(r"<[^>]+>", "", bases)
            assert not re.search(r"(^|[ .])_", text), f"{page.name}: Bases: {text}"

    # The build itself refuses a public module without its page.
    result = _build(_api_site(tmp_path / "missing", drop="optim"), tmp_path / "missing" / "html")
    assert result.returncode != 0
    assert "API reference: module jaxnet.optim has no page" in result.stderr


# --- the tutorials link API names (docs/_ext/jaxnet_xref.py) ---------------------------
_LINK = re.compile(r'<a class="([^"]*)" href="([^"]+)"[^>]*><code[^>]*>(.*?)</code></a>', re.S)


def _code_links(page: Path) -> set[tuple[str, str, str]]:
    """(kind, href, literal text) of each link whose text is inline code."""
    out = set()
    for classes, href, code in _LINK.findall(page.read_text(encoding="utf-8")):
        kind = next((c for c in classes.split() if c.startswith("jaxnet-")), "")
        out.add((kind, href, re.sub(r"<[^>]+>", "", code)))
    return out


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_the_tutorials_link_api_names_in_both_languages(language):
    """Chapter 5's `fit` and `losses.cross_entropy` link to their API entries, and `jax.jit`
    to JAX's reference, in English and (after its catalog is applied) in Chinese."""
    page = (HTML if language == "en" else HTML / language) / "05_training.html"
    if not page.is_file():
        message = f"{page} is not built (sphinx-build -b html docs {HTML}, and -D language=zh_CN)"
        if os.environ.get("JAXNET_I18N_REQUIRE_BUILD") == "1":
            pytest.fail(message)
        pytest.skip(message)
    links = _code_links(page)
    assert ("jaxnet-api", "api/train.html#jaxnet.train.fit", "fit") in links, sorted(links)[:20]
    assert ("jaxnet-api", "api/losses.html#jaxnet.losses.cross_entropy",
            "losses.cross_entropy") in links
    assert ("jaxnet-upstream", "https://docs.jax.dev/en/latest/_autosummary/jax.jit.html",
            "jax.jit") in links
    # Every API link lands on a page and an anchor the site has.
    for kind, href, _ in links:
        if kind == "jaxnet-api":
            target, _, anchor = href.partition("#")
            html = (page.parent / target).read_text(encoding="utf-8")
            assert f'id="{anchor}"' in html, href


def test_api_names_resolve_to_the_right_links():
    """The resolver behind those links: module-qualified, bare-but-unique and upstream names."""
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import jaxnet_xref
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    url = jaxnet_xref.external_url
    assert url("jax.grad") == "https://docs.jax.dev/en/latest/_autosummary/jax.grad.html"
    assert url("jnp.where") == "https://docs.jax.dev/en/latest/_autosummary/jax.numpy.where.html"
    assert url("optax.adam") == "https://optax.readthedocs.io/en/latest/api/optimizers.html#optax.adam"
    assert url("nnx.Linear").endswith("flax.nnx/nn/linear.html#flax.nnx.Linear")
    assert url("np.asarray") == "https://numpy.org/doc/stable/reference/generated/numpy.asarray.html"
    assert url("TypeError") == "https://docs.python.org/3/library/exceptions.html#TypeError"
    # a name the library lacks, a dtype without a page, a bare library name: no link
    assert url("jax.no_such_function") is None and url("jnp.float32") is None
    assert url("jax") is None and url("torch.tensor") is None
