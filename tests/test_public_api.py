"""The public surface, fenced: modules, names, signatures, exception modules, CLI help.

Files move (issue 16); what a user imports, calls and reads in ``--help`` must
not. The golden copy is ``tests/public_api.json``. A deliberate API change
regenerates it with ``JAXNET_UPDATE_API=1 pytest tests/test_public_api.py``
and the diff is reviewed like any other.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import os
from pathlib import Path

import pytest

import jaxnet

GOLDEN = Path(__file__).with_name("public_api.json")
MODULES = sorted(name for name in jaxnet.__all__ if inspect.ismodule(getattr(jaxnet, name)))


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "<no signature>"


def _describe(obj) -> dict | str:
    if inspect.isclass(obj):
        methods = {
            name: _signature(member)
            for name, member in sorted(vars(obj).items())
            if not name.startswith("_") and callable(member)
        }
        entry = {"kind": "class", "signature": _signature(obj)}
        if methods:
            entry["methods"] = methods
        if issubclass(obj, BaseException):  # `except jaxnet.checkpoint.X` and tracebacks name it
            entry["module"] = obj.__module__
            entry["bases"] = [b.__name__ for b in obj.__mro__[1:] if b is not object]
        return entry
    if callable(obj):
        return {"kind": "function", "signature": _signature(obj)}
    if inspect.ismodule(obj):
        return {"kind": "module"}
    return {"kind": type(obj).__name__, "value": repr(obj) if len(repr(obj)) < 200 else "<long>"}


def _cli_help() -> dict[str, str]:
    from jaxnet import cli

    texts = {}
    for argv in (["--help"], ["train", "--help"], ["train", "mnist", "--help"],
                 ["convert", "--help"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            cli.build_parser().parse_args(argv)
        texts[" ".join(argv)] = out.getvalue()
    return texts


def surface() -> dict:
    result = {"jaxnet.__all__": list(jaxnet.__all__), "modules": {}}
    result["top-level"] = {name: _describe(getattr(jaxnet, name))
                           for name in jaxnet.__all__ if name not in MODULES}
    for name in MODULES:
        module = importlib.import_module(f"jaxnet.{name}")
        result["modules"][name] = {
            "__all__": list(module.__all__),
            "names": {n: _describe(getattr(module, n)) for n in module.__all__},
        }
    result["cli --help"] = _cli_help()
    return result


def test_public_surface_is_unchanged(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal width
    now = surface()
    if os.environ.get("JAXNET_UPDATE_API"):
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    for section in ("jaxnet.__all__", "top-level", "cli --help"):
        assert now[section] == golden[section], section
    assert sorted(now["modules"]) == sorted(golden["modules"])
    for name, module in golden["modules"].items():
        assert now["modules"][name]["__all__"] == module["__all__"], f"jaxnet.{name}.__all__"
        for n, entry in module["names"].items():
            assert now["modules"][name]["names"][n] == entry, f"jaxnet.{name}.{n}"


def test_cli_module_is_public_through_its_entry_point():
    from jaxnet import cli

    assert callable(cli.main) and callable(cli.build_parser)
