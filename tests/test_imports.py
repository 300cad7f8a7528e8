"""Every module imports on its own: no module works only because another was imported first.

One fresh interpreter imports each module in turn, forgetting every ``seqlib`` module in
between (``sys.modules``), so each import starts from nothing of seqlib's; and the ``kernels``
folder imports as a package of its own, with neither ``seqlib`` nor ``core`` loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"]

EACH_ON_ITS_OWN = """
import importlib, json, sys, traceback
failures = {}
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "seqlib" or m.startswith("seqlib.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=-4)
print(json.dumps(failures))
"""

KERNELS_ALONE = """
import importlib, importlib.util, json, pkgutil, sys
folder = sys.argv[1]
spec = importlib.util.spec_from_file_location("standalone_kernels", folder + "/__init__.py",
                                              submodule_search_locations=[folder])
package = importlib.util.module_from_spec(spec)
sys.modules["standalone_kernels"] = package
spec.loader.exec_module(package)
names = [m.name for m in pkgutil.walk_packages(package.__path__, "standalone_kernels.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names,
                  "seqlib_loaded": sorted(m for m in sys.modules if m.startswith("seqlib"))}))
"""


def _modules() -> list:
    """The installed name of every module of the three package folders (package-dir)."""
    names = []
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join([package, *parts]))
    return names


def _run(script: str, *args) -> dict:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_every_module_imports_on_its_own():
    modules = _modules()
    assert len(modules) > 50 and "seqlib.kernels.lstm.cpu" in modules
    failures = _run(EACH_ON_ITS_OWN, *modules)
    assert not failures, "\n".join(f"{name}:\n{text}" for name, text in failures.items())


def test_kernels_import_without_seqlib_or_core():
    report = _run(KERNELS_ALONE, str(ROOT / "kernels"))
    assert "standalone_kernels.causal_product.cuda" in report["modules"]
    assert report["seqlib_loaded"] == []
