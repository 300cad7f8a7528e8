"""The installed package: complete, under seqlib's own namespace, and collision-free.

The wheel is built from a copy of the checkout and installed into a fresh venv outside the
repository, beside a package named ``kernels`` (Hugging Face's top-level name) and with a user's
own ``core`` package in the working directory; ``installed_smoke.py`` then runs there. A
packaging mistake (a missing ``.cu`` file, a module left out, a generic top-level name) fails
this test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# a stand-in for Hugging Face's `kernels` distribution: the same top-level name and entry point
# (the real one pulls in huggingface-hub and sigstore, too heavy to install on every CI run)
OTHER_KERNELS = {
    "pyproject.toml": '[project]\nname = "kernels"\nversion = "0.0.0"\n'
                      '[build-system]\nrequires = ["setuptools>=68"]\n'
                      'build-backend = "setuptools.build_meta"\n',
    "kernels/__init__.py": "def get_kernel(repo_id):\n    return repo_id\n",
}


def _installed_name(folder: Path) -> str:
    """The package a repository folder installs as, by pyproject's package-dir."""
    relative = folder.relative_to(ROOT).parts
    for name, directory in SETUPTOOLS["package-dir"].items():
        if relative[: len(Path(directory).parts)] == Path(directory).parts:
            return ".".join([name, *relative[len(Path(directory).parts):]])
    raise AssertionError(f"{folder} is not under any package-dir entry")


def test_every_package_folder_is_installed():
    folders = [init.parent for top in ("seqlib", "core", "kernels")
               for init in (ROOT / top).rglob("__init__.py")]
    assert sorted(map(_installed_name, folders)) == sorted(SETUPTOOLS["packages"])
    assert all(name == "seqlib" or name.startswith("seqlib.") for name in SETUPTOOLS["packages"])


def test_cuda_sources_are_package_data():
    from seqlib.kernels import cuda_sources

    patterns = SETUPTOOLS["package-data"]["seqlib.kernels"]
    shipped = {path.name for pattern in patterns for path in (ROOT / "kernels").glob(pattern)}
    assert set(cuda_sources.KERNELS) <= shipped


def _run(command: list, cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONNOUSERSITE": "1", "PYTHONPATH": ""})
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _copy_checkout(destination: Path) -> Path:
    """The checkout without build leftovers (a stale build/ could hide a missing file)."""
    ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                    ".hypothesis", ".pytest_cache", "checkpoints", "results")
    return Path(shutil.copytree(ROOT, destination, ignore=ignore))


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory):
    """A venv outside the repository with the wheel of this checkout and a foreign `kernels`."""
    scratch = tmp_path_factory.mktemp("install")
    source = _copy_checkout(scratch / "source")
    wheels = scratch / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
          str(source)], scratch)
    other = scratch / "other_kernels"
    for name, text in OTHER_KERNELS.items():
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        (other / name).write_text(text)
    environment = scratch / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    wheel = next(wheels.glob("seqlib-*.whl"))
    _run([str(python), "-m", "pip", "install", "-q", str(wheel), str(other)], scratch)
    site_packages = Path(_run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], scratch).strip())
    return python, site_packages, wheel


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout of POSIX systems")
def test_wheel_in_a_fresh_venv_beside_other_kernels_and_core(fresh_install, tmp_path):
    python, site_packages, wheel = fresh_install
    work = tmp_path / "user_project"
    (work / "core").mkdir(parents=True)
    (work / "core" / "__init__.py").write_text("USER_PACKAGE = True\n")
    output = _run([str(python), str(ROOT / "tests" / "installed_smoke.py"), str(site_packages)],
                  work)
    assert "collisions: ok" in output and "TransformerLM: two steps" in output
    assert "LSTMLM: two steps" in output
    # the only top-level name seqlib's wheel puts into site-packages is `seqlib`
    top_level = _run([str(python), "-c", "import importlib.metadata as m; "
                      "print(m.distribution('seqlib').read_text('top_level.txt'))"], work)
    assert top_level.split() == ["seqlib"]


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout of POSIX systems")
def test_main_job_script_runs_against_the_installed_wheel(fresh_install, tmp_path):
    """``python examples/train_lm.py`` puts examples/, not the checkout, on sys.path: the
    script must work with nothing but the installed package."""
    python, _, _ = fresh_install
    sample = ROOT / "tests" / "data" / "hamlet_sample.txt"
    output = _run([str(python), str(ROOT / "examples" / "train_lm.py"), "--data", str(sample),
                   "--tokenizer", "char", "--steps", "2", "--d-model", "16", "--n-layers", "1",
                   "--n-heads", "2", "--block-size", "16",
                   "--batch-size", "2", "--eval-batches", "1",
                   "--sample-tokens", "5", "--out", str(tmp_path / "run")], tmp_path)
    assert "--- sample ---" in output
