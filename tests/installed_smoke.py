"""Smoke test of an installed seqlib, run by tests/test_packaging.py inside a fresh venv.

Run from a scratch directory that holds a user's own ``core`` package, in a venv that also has
a package named ``kernels`` (Hugging Face's name) installed: seqlib must import its own code,
the other two must stay importable, every CUDA source must be found, and two small language
models must train for two steps.

    python installed_smoke.py SITE_PACKAGES
"""

from __future__ import annotations

import sys
from pathlib import Path


def check_collisions(site_packages: Path) -> None:
    import core  # the user's own package in the working directory
    import seqlib
    from kernels import get_kernel  # the other distribution's top-level `kernels`

    assert Path(seqlib.__file__).resolve().is_relative_to(site_packages), seqlib.__file__
    assert core.USER_PACKAGE and callable(get_kernel)
    assert seqlib.core.__name__ == "seqlib.core" and seqlib.kernels.__name__ == "seqlib.kernels"
    assert callable(seqlib.kernels.causal_dot_product)
    top_level = {path.name for path in site_packages.iterdir()}
    assert "core" not in top_level, "seqlib installed a top-level `core` into site-packages"
    print("collisions: ok")


def check_cuda_sources() -> None:
    from seqlib.kernels import cuda_sources

    for file, names in cuda_sources.KERNELS.items():
        text = cuda_sources.source(file)
        assert all(name.split("<")[0] in text for name in names), file
    print(f"cuda sources: {sorted(cuda_sources.KERNELS)} found")


def check_training() -> None:
    import seqlib as sl
    from seqlib.models import LSTMLM, LSTMLMConfig, TransformerLM, TransformerLMConfig

    sl.manual_seed(0)
    tokens = sl.randint(0, 11, (2, 9))
    for model in (TransformerLM(TransformerLMConfig(vocab_size=11, d_model=8, n_layers=1,
                                                    n_heads=2)),
                  LSTMLM(LSTMLMConfig(vocab_size=11, embedding_dim=8, hidden_size=8))):
        optimizer = sl.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(2):
            loss = model(tokens[:, :-1], targets=tokens[:, 1:])[1]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert all(value > 0 for value in losses), losses
        print(f"{type(model).__name__}: two steps, losses {losses}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path.cwd()))  # the user's project, first on the path as it is for them
    check_collisions(Path(sys.argv[1]).resolve())
    check_cuda_sources()
    check_training()
