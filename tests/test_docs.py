"""The docs' code runs: every code cell of every notebook page, in order.

The site build (``nox -s docs``) executes the notebooks too, in a Jupyter
kernel; this test runs the same cells in-process, under the suite's strict
warning filters, so a broken cell fails ``pytest`` without Sphinx installed.

* Notebook pages (``docs/*.md`` with a ``kernelspec``): each ``{code-cell}``, in
  order, in one namespace per page. A cell tagged ``raises-exception`` must
  raise (the page shows that error on purpose).
* Pages that configure JAX before its first computation (``08_devices``
  splits the CPU into several XLA devices) run in a fresh interpreter, with
  warnings as errors, since JAX already runs in this one.
* Pages that read MNIST find it as a user's run does, through
  ``$JAXNET_DATA_DIR`` (set here to the suite's copy; skipped without one).

Every test checks that all of the page's cells ran, and the cells this parser
finds are checked against the ones myst-nb executes (when myst-nb is installed).
"""

import re
from pathlib import Path

import matplotlib
import pytest

from conftest import run_python

matplotlib.use("Agg")

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"

# The site's pages that are not notebooks (no executed cells; their ```python
# blocks are illustrations, such as the cheat sheet's imports).
PLAIN_PAGES = {"index", "pytorch_cheatsheet", "glossary"}
NOTEBOOK_PAGES = {"01_tensors", "02_autograd", "03_models", "04_data", "05_training",
                  "06_evaluation", "07_saving_and_loading", "08_devices", "09_mnist", "gotchas",
                  "performance"}
FRESH_PROCESS_PAGES = {"08_devices"}
MNIST_PAGES = {"05_training", "09_mnist"}

NOTEBOOKS = sorted(p for p in DOCS_DIR.glob("*.md") if p.stem not in PLAIN_PAGES)

_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", flags=re.S | re.M)
_CELL_START = re.compile(r"^```\{code-cell\}", flags=re.M)


def code_cells(page: Path) -> list[tuple[str, set[str]]]:
    """The page's ``{code-cell}`` sources, each with its tags."""
    return cells_of(page.read_text())


def cells_of(markdown: str) -> list[tuple[str, set[str]]]:
    """The ``{code-cell}`` sources of a page's text (or a part of it), each with its tags."""
    cells = []
    for body in _CELL.findall(markdown):
        lines = body.splitlines()
        tags: set[str] = set()
        # Options come first: ":key: value" lines, or a "---" YAML block.
        if lines and lines[0].strip() == "---":
            end = lines.index("---", 1)
            options, lines = lines[1:end], lines[end + 1:]
        else:
            n = 0
            while n < len(lines) and lines[n].startswith(":"):
                n += 1
            options, lines = lines[:n], lines[n:]
        for option in options:
            m = re.match(r"\s*:?tags:?\s*\[(.*)\]", option)
            if m:
                tags |= {t.strip().strip("'\"") for t in m.group(1).split(",") if t.strip()}
        cells.append(("\n".join(lines), tags))
    return cells


def is_notebook(page: Path) -> bool:
    return page.read_text().startswith("---\n") and "kernelspec:" in page.read_text()


def run_page(page: Path, namespace: dict | None = None, cells: int | None = None) -> int:
    """Execute the page's cells in order, in one namespace (or ``namespace``, which keeps
    the page's variables for a test to check); only the first ``cells`` if given; return
    how many ran."""
    namespace = {"__name__": f"docs_{page.stem}"} if namespace is None else namespace
    ran = 0
    for i, (source, tags) in enumerate(code_cells(page)[:cells]):
        code = compile(source, f"{page.name}[cell {i}]", "exec")
        if "raises-exception" in tags:
            with pytest.raises(Exception):  # noqa: B017 - any error: the page shows it
                exec(code, namespace)
        else:
            try:
                exec(code, namespace)
            except Exception as e:  # pragma: no cover - the message is the point
                raise AssertionError(f"{page.name} cell {i} failed: {e!r}\n{source}") from e
        ran += 1
    return ran


def test_the_pages_are_the_ones_listed():
    """A page added, renamed or removed shows up here, so the lists above stay honest."""
    assert {p.stem for p in NOTEBOOKS} == NOTEBOOK_PAGES
    assert {p.stem for p in DOCS_DIR.glob("*.md")} == NOTEBOOK_PAGES | PLAIN_PAGES
    assert FRESH_PROCESS_PAGES | MNIST_PAGES <= NOTEBOOK_PAGES
    for page in NOTEBOOKS:
        assert is_notebook(page), f"{page.name}: no jupytext/kernelspec front matter"
        assert code_cells(page), f"{page.name}: no code cells"


@pytest.mark.parametrize("page", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_code_cell_is_found(page):
    """The parser finds every ``{code-cell}`` of the page, and (with myst-nb installed)
    exactly the code cells, with the sources, that the site build executes."""
    cells = code_cells(page)
    assert len(cells) == len(_CELL_START.findall(page.read_text()))
    try:
        from myst_nb.core.read import read_myst_markdown_notebook
    except ImportError:
        return  # the docs extra is not installed; the count above still holds
    notebook = read_myst_markdown_notebook(page.read_text())
    built = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [source.strip() for source, _ in cells] == [cell.source.strip() for cell in built]
    assert [tags for _, tags in cells] == [set(cell.metadata.get("tags", [])) for cell in built]


def test_cell_parser_reads_options(tmp_path):
    page_text = ("```{code-cell} ipython3\n:tags: [raises-exception]\n\n1 / 0\n```\n\n"
                 "```{code-cell} ipython3\n---\ntags: [hide-input]\n---\nx = 1\n```\n"
                 "```{code-cell} ipython3\nprint(2)\n```\n")
    page = tmp_path / "p.md"
    page.write_text(page_text)
    cells = code_cells(page)
    assert [tags for _, tags in cells] == [{"raises-exception"}, {"hide-input"}, set()]
    assert [src.strip() for src, _ in cells] == ["1 / 0", "x = 1", "print(2)"]
    assert run_page(page) == 3


@pytest.fixture
def _restore_print_options():
    """Pages set ``np.set_printoptions`` as readers would; later doctests must not see it."""
    import numpy as np

    saved = np.get_printoptions()
    yield
    np.set_printoptions(**saved)


@pytest.mark.parametrize("page", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(page, request, monkeypatch, tmp_path, capsys, _restore_print_options):
    monkeypatch.chdir(tmp_path)
    if page.stem in MNIST_PAGES:
        monkeypatch.setenv("JAXNET_DATA_DIR", str(request.getfixturevalue("mnist_path")))
    n_cells = len(code_cells(page))
    if page.stem in FRESH_PROCESS_PAGES:
        script = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
                  "from test_docs import run_page; "
                  "print('cells run:', run_page(Path(sys.argv[2])))")
        proc = run_python("-W", "error", "-c", script, str(Path(__file__).parent), str(page),
                          env={"MPLBACKEND": "Agg"}, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.rstrip().endswith(f"cells run: {n_cells}"), proc.stdout[-2000:]
        return
    assert run_page(page) == n_cells
    assert capsys.readouterr().out  # every page shows its results


def test_fresh_process_pages_need_it():
    """``08_devices`` configures JAX before its first computation, which this process is past."""
    import jax

    jax.devices()
    with pytest.raises(RuntimeError):
        jax.config.update("jax_num_cpu_devices", 4)


def _page_imports() -> dict[str, set[str]]:
    """Top-level module -> the notebook pages whose code cells import it."""
    found: dict[str, set[str]] = {}
    for page in NOTEBOOKS:
        for source, _ in code_cells(page):
            for m in re.finditer(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))",
                                 source, flags=re.M):
                found.setdefault((m.group(1) or m.group(2)).split(".")[0], set()).add(page.stem)
    return found


def test_the_tutorials_extra_installs_every_import_of_every_chapter():
    """``pip install -e '.[tutorials]'`` (README, docs/index.md) is enough for every page:
    each third-party module a code cell imports is a core dependency or in the extra.
    (.ci/run also runs every page in a fresh venv with exactly that install.)"""
    import sys
    import tomllib

    project = tomllib.loads((DOCS_DIR.parent / "pyproject.toml").read_text())["project"]
    def names(requirements):
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}
    installed = names(project["dependencies"]) | names(
        project["optional-dependencies"]["tutorials"])
    distribution = {"sklearn": "scikit-learn", "jaxnet": "jaxnet-course"}
    installed.add("jaxnet-course")
    missing = {module: sorted(pages) for module, pages in _page_imports().items()
               if module not in sys.stdlib_module_names
               and distribution.get(module, module).lower() not in installed}
    assert not missing, f"the tutorials extra lacks what these pages import: {missing}"
    assert "torch" not in installed  # no chapter runs PyTorch; its code is shown, not run


def test_chapter_7_saves_and_reloads_the_trained_model():
    """The course's scene comes first on the page: the model trained by ``fit``, saved with
    ``checkpoint.save(folder, nn.state_dict(model))``, reloaded in a new model, predicts the
    toy labels, with the trained model's outputs (the page once reloaded an untrained one)."""
    import jax.numpy as jnp

    page = DOCS_DIR / "07_saving_and_loading.md"
    namespace: dict = {}
    run_page(page, namespace, cells=4)
    x, labels = namespace["X_test"], namespace["y_test"]
    trained = namespace["new_model"]
    assert jnp.array_equal(jnp.argmax(trained(x), axis=1), labels)
    assert jnp.array_equal(namespace["predictor"](x), trained(x))
    initial = namespace["NeuralNetwork"](2, 2, rngs=namespace["nn"].Rngs(123))
    assert not jnp.array_equal(initial(x), trained(x))


CHAPTERS = sorted(p for p in NOTEBOOKS if re.match(r"\d\d_", p.stem))


@pytest.mark.parametrize("page", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_ends_with_exercises_and_hidden_solutions(page):
    """Each chapter has an ``## Exercises`` section of 2-3 ``### Exercise N`` items, and each
    item's solution is a code cell that the build executes, collapsed (``hide-cell``)."""
    text = page.read_text()
    assert len(CHAPTERS) == 9
    _, sep, exercises = text.partition("\n## Exercises\n")
    assert sep, f"{page.name}: no '## Exercises' section"
    assert "\n## " not in exercises, f"{page.name}: a section follows the exercises"
    items = re.split(r"^### Exercise \d+: ", exercises, flags=re.M)[1:]
    assert 2 <= len(items) <= 3, f"{page.name}: {len(items)} exercises"
    for n, item in enumerate(items, 1):
        cells = cells_of(item)
        assert cells, f"{page.name}: exercise {n} has no solution cell"
        assert all("hide-cell" in tags for _, tags in cells), \
            f"{page.name}: exercise {n}'s solution is not collapsed (hide-cell)"
        assert all("raises-exception" not in tags for _, tags in cells)

