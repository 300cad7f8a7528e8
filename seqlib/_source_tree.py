"""Lets ``import seqlib`` work straight from a source checkout.

Installed, the repository's ``core/`` and ``kernels/`` folders are the subpackages
``seqlib.core`` and ``seqlib.kernels`` (setuptools' ``package-dir`` in pyproject.toml), so no
generic top-level name reaches site-packages. In a checkout they sit beside ``seqlib/``; adding
the checkout to ``seqlib.__path__`` makes the same names resolve to those folders.
"""

import sys
from pathlib import Path

_package = Path(__file__).resolve().parent
_checkout = _package.parent
if not (_package / "core").is_dir() and (_checkout / "core" / "__init__.py").is_file():
    sys.modules["seqlib"].__path__.append(str(_checkout))
