"""Every .cu file compiles with every kernel the loader uses instantiated (nvcc, no GPU needed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from seqlib.kernels import cuda_sources

NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("file", sorted(cuda_sources.KERNELS))
def test_cuda_source_compiles(tmp_path, file, arch):
    source = tmp_path / file
    source.write_text(cuda_sources.instantiated_source(file))
    result = subprocess.run(
        [NVCC, f"-arch={arch}", "--cubin", "-std=c++14", "-Xptxas", "-v", "-o",
         str(tmp_path / "out.cubin"), str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower()
    # every registered kernel was compiled (its mangled entry appears in ptxas' report)
    compiled = result.stderr.count("Compiling entry function")
    assert compiled == len(cuda_sources.KERNELS[file]), result.stderr
    spills = [line for line in result.stderr.splitlines()
              if "spill" in line and not line.strip().startswith("0 bytes stack frame, 0 bytes")]
    assert not spills, f"register spills in {file}: {spills}"


def test_registry_lists_existing_files_and_kernels():
    for file, names in cuda_sources.KERNELS.items():
        text = cuda_sources.source(file)
        for name in names:
            assert name.split("<")[0] in text, name
    assert "seqlib_instantiated" in cuda_sources.instantiated_source("lstm.cu")
    with pytest.raises(KeyError, match="not a registered kernel"):
        cuda_sources.get_kernel("lstm.cu", "nope<float>")
