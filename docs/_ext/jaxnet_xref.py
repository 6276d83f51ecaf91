"""Inline literals that name an API become links, in every language, prose untouched.

The tutorials, the cheat sheet, the gotchas and the glossary write API names as
inline code (```train.fit```, ```nn.Linear```, ```jaxnet.fingerprint```,
```jax.grad```). This post-transform turns each such literal into a link:

* a public jaxnet object (``jaxnet.x.y``, ``x.y`` for a public module ``x``,
  ``nn.ReLU()`` with its call parentheses, or a bare name such as ``fit`` that
  is unique across the public modules and that PyTorch does not also have;
  a call of one, ``nn.Linear(2, 3, rngs=rngs)``, links by its name) links to
  its entry in the API reference (docs/api/);
* ``jax.*``, ``jnp.*``, ``lax.*``, ``optax.*``, ``nnx.*``/``flax.nnx.*``,
  ``np.*``/``numpy.*`` and Python's exceptions link to their upstream
  reference pages by an explicit URL pattern (no intersphinx: the build is
  offline and no installed package ships an ``objects.inv``). A name links only
  when it exists in the installed library.

It runs on the resolved doctree (a post-transform, before Sphinx's reference
resolver), so it sees the Chinese pages after their catalogs were applied: the
translated prose keeps the literals and gets the same links. A literal in a
heading, inside a link already, in the API reference itself, or in a table
column headed "PyTorch" (the cheat sheet's ``nn.Linear`` there is torch's) is
left alone.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import re

from docutils import nodes
from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.nodes import make_refnode

# a dotted name, or a call of one (`nn.ReLU()`, `jax.random.uniform(key, (2, 3))`): the name links
_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:\(.*\))?", re.S)

# Short module names the pages use for jaxnet's public modules (``from jaxnet import nn``).
_SHORT = ("nn", "train", "data", "datasets", "losses", "metrics", "optim", "checkpoint",
          "interop", "devices", "parallel", "mnist", "callbacks")

_JAX = "https://docs.jax.dev/en/latest/"
_OPTAX = "https://optax.readthedocs.io/en/latest/api/"
_FLAX = "https://flax.readthedocs.io/en/latest/api_reference/flax.nnx/"
_NUMPY = "https://numpy.org/doc/stable/reference/"
_PYTHON = "https://docs.python.org/3/library/"

# Aliases the pages use, and what they stand for.
_ALIASES = {"jnp": "jax.numpy", "lax": "jax.lax", "nnx": "flax.nnx", "np": "numpy"}
# jax's submodules that have a page of their own, and whose members have _autosummary pages.
_JAX_MODULES = ("jax.numpy", "jax.lax", "jax.nn", "jax.random", "jax.tree", "jax.sharding",
                "jax.scipy", "jax.dtypes", "jax.tree_util", "jax.image", "jax.debug")
# optax's reference pages, by the module that defines a name.
_OPTAX_PAGES = (("optax._src.alias", "optimizers.html"),
                ("optax.schedules", "optimizer_schedules.html"),
                ("optax._src.schedule", "optimizer_schedules.html"),
                ("optax.losses", "losses.html"),
                ("optax._src.loss", "losses.html"),
                ("optax._src.combine", "combining_optimizers.html"),
                ("optax.transforms._combining", "combining_optimizers.html"),
                ("optax._src.base", "transformations.html"),
                ("optax._src.transform", "transformations.html"),
                ("optax._src.clipping", "transformations.html"),
                ("optax._src.update", "apply_updates.html"),
                ("optax.transforms", "transformations.html"))
# flax.nnx's reference pages, by the module that defines a name.
_FLAX_PAGES = (("flax.nnx.nn.", None),  # flax.nnx.nn.linear -> nn/linear.html
               ("flax.nnx.module", "module.html"), ("flax.nnx.graph", "graph.html"),
               ("flax.nnx.rnglib", "rnglib.html"), ("flax.nnx.variablelib", "variables.html"),
               ("flax.nnx.transforms", "transforms.html"),
               ("flax.nnx.training.optimizer", "training/optimizer.html"),
               ("flax.nnx.training.metrics", "training/metrics.html"))


@functools.cache
def _lookup(dotted: str):
    """The object a dotted name names in the installed libraries, or None."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except Exception:  # noqa: BLE001 - not a module (or not importable): try shorter
            continue
        for attr in parts[n:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def external_url(name: str) -> str | None:
    """The upstream reference URL for ``jax.grad``, ``optax.adam``, ``nnx.Linear``... or None."""
    head, _, rest = name.partition(".")
    full = f"{_ALIASES[head]}.{rest}" if head in _ALIASES and rest else _ALIASES.get(head, name)
    root = full.split(".")[0]
    if root not in ("jax", "optax", "flax", "numpy") and not (
            "." not in full and isinstance(getattr(builtins, full, None), type)
            and issubclass(getattr(builtins, full), BaseException)):
        return None
    if root in ("jax", "optax", "flax", "numpy") and full == root:
        return None  # the bare library name is a word in the prose
    obj = getattr(builtins, full) if "." not in full and root == full else _lookup(full)
    if obj is None:
        return None
    if root not in ("jax", "optax", "flax", "numpy"):
        return f"{_PYTHON}exceptions.html#{full}"
    if root == "jax":
        if full.rsplit(".", 1)[-1] in _numpy_scalar_names():
            return None  # jnp.float32 and the other dtypes have no page of their own
        if inspect.ismodule(obj):
            return f"{_JAX}{full}.html" if full in _JAX_MODULES else None
        return f"{_JAX}_autosummary/{full}.html"
    if root == "numpy":
        if inspect.ismodule(obj):
            return None
        if isinstance(obj, type) and issubclass(obj, _lookup("numpy.generic")):
            return f"{_NUMPY}arrays.scalars.html#{full}"   # numpy.float32, numpy.int64
        return f"{_NUMPY}generated/{full}.html"
    if root == "optax":
        if inspect.ismodule(obj):
            return None
        module = getattr(obj, "__module__", "") or ""
        for prefix, page in _OPTAX_PAGES:
            if module.startswith(prefix):
                return f"{_OPTAX}{page}#{full}"
        return None
    # flax.nnx
    if not full.startswith("flax.nnx.") or inspect.ismodule(obj):
        return f"{_FLAX}index.html" if full == "flax.nnx" else None
    module = getattr(obj, "__module__", "") or ""
    for prefix, page in _FLAX_PAGES:
        if module.startswith(prefix):
            if page is None:
                page = module[len("flax.nnx."):].replace(".", "/") + ".html"
            return f"{_FLAX}{page}#{full}"
    return None


@functools.cache
def _numpy_scalar_names() -> frozenset[str]:
    import numpy

    return frozenset(k for k in numpy.sctypeDict if isinstance(k, str)) | {"bfloat16"}


class _Names:
    """The jaxnet names the API reference documents, and how the pages may spell them."""

    def __init__(self, env):
        import jaxnet

        domain = env.get_domain("py")
        self.objects = dict(domain.objects)      # full name -> ObjectEntry
        modules = jaxnet._public_modules()
        self.by_id: dict[int, str] = {}          # id(object) -> its documented full name
        for module in [*modules[1:], modules[0]]:
            for member in module.__all__:
                full = f"{module.__name__}.{member}"
                if full in self.objects:
                    self.by_id.setdefault(id(getattr(module, member)), full)
        # A bare name links when it names one object across the public modules and
        # PyTorch, whose names the pages also write bare, has no such name.
        owners: dict[str, set[int]] = {}
        for module in modules:
            for member in module.__all__:
                value = getattr(module, member)
                if not inspect.ismodule(value):
                    owners.setdefault(member, set()).add(id(value))
        torch_names = _torch_names()
        self.bare = {name: next(iter(ids)) for name, ids in owners.items()
                     if len(ids) == 1 and name not in torch_names and len(name) > 2
                     and not hasattr(builtins, name) and next(iter(ids)) in self.by_id}

    def resolve(self, name: str) -> str | None:
        """The documented full name ``name`` stands for, or None."""
        head = name.split(".")[0]
        if name == "jaxnet":
            return None  # the package, the command (`jaxnet train mnist`) or a word
        if head == "jaxnet":
            full = name
        elif head in _SHORT:
            full = f"jaxnet.{name}"
        elif name in self.bare:
            return self.by_id[self.bare[name]]
        else:
            return None
        if full in self.objects:
            return full
        if full.count(".") >= 1:
            obj = _lookup(full)
            if obj is not None and not isinstance(obj, (int, float, str, bool, tuple)):
                return self.by_id.get(id(obj))
        return None


def _torch_names() -> set[str]:
    names: set[str] = set()
    for module in ("torch", "torch.nn", "torch.nn.functional", "torch.utils.data", "torch.optim"):
        try:
            names |= set(dir(importlib.import_module(module)))
        except Exception:  # noqa: BLE001 - no torch: no bare-name exclusions from it
            pass
    # the course's PyTorch names the pages write bare, whether or not torch is installed
    names |= {"DataLoader", "Dataset", "TensorDataset", "Linear", "Sequential", "Module",
              "load", "save", "state_dict", "load_state_dict", "summary"}
    # and words the pages also use for other things (a metric's key, an argument, optax's
    # update, a plain English word)
    return names | {"accuracy", "update", "lock", "convert", "backend", "learning_rate", "Run",
                    "Functional", "replicate", "all_steps", "end_process", "Checkpoint"}


def _in_pytorch_column(node) -> bool:
    """True inside a table cell whose column's header says PyTorch (and not jaxnet/JAX)."""
    entry = node
    while entry is not None and not isinstance(entry, nodes.entry):
        entry = entry.parent
    if entry is None:
        return False
    row = entry.parent
    column = row.index(entry)
    group = row.parent
    table = group.parent
    head = next(iter(table.findall(nodes.thead)), None)
    if head is None or not head.children:
        return False
    header_row = head.children[0]
    if column >= len(header_row.children):
        return False
    text = header_row.children[column].astext()
    return "PyTorch" in text and "jax" not in text.lower()


def _skip(node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, (nodes.reference, addnodes.pending_xref, nodes.title,
                               nodes.literal_block, addnodes.desc_signature, nodes.rubric)):
            return True
        parent = parent.parent
    return False


class ApiLinks(SphinxPostTransform):
    """Inline literals naming a jaxnet, JAX, optax, Flax NNX or NumPy object -> links."""

    default_priority = 5  # before ReferencesResolver (10); after i18n (a read-time transform)

    def run(self, **kwargs) -> None:
        env = self.env
        docname = env.current_document.docname
        if not docname or docname.startswith("api/"):
            return
        names = getattr(self.app, "_jaxnet_api_names", None)
        if names is None or len(names.objects) != len(env.get_domain("py").objects):
            names = self.app._jaxnet_api_names = _Names(env)
        for literal in list(self.document.findall(nodes.literal)):
            if _skip(literal):
                continue
            match = _NAME.fullmatch(literal.astext().strip())
            if not match:
                continue
            name = match.group(1)
            full = None if _in_pytorch_column(literal) else names.resolve(name)
            if full is not None:
                entry = names.objects[full]
                literal["classes"] += ["xref", "py", "py-obj"]
                ref = make_refnode(self.app.builder, docname, entry.docname, entry.node_id,
                                   literal.deepcopy(), full)
                ref["classes"].append("jaxnet-api")
                literal.replace_self(ref)
                continue
            url = external_url(name)
            if url is not None:
                ref = nodes.reference("", "", literal.deepcopy(), refuri=url, reftitle=name,
                                      internal=False)
                ref["classes"].append("jaxnet-upstream")
                literal.replace_self(ref)


def setup(app):
    app.add_post_transform(ApiLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
