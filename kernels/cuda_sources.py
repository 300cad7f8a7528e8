"""The CUDA sources and the kernels instantiated from them, shared by the loader and by the
compile check, so CI compiles exactly what runs."""

from __future__ import annotations

from importlib import resources

from ._backend import cupy

# package data: read through importlib.resources, so it works from a wheel, a zip or a checkout
DIRECTORY = resources.files(__package__) / "cuda"
# register-state sizes of the causal scan; double stops at 64 (128 doubles spill registers)
SCAN_DIMENSIONS = {"float": (16, 32, 64, 128), "double": (16, 32, 64)}
# rows staged per shared-memory slab by the chunked kernels (double: half, to stay in 48 KB)
CHUNK_SLAB = {"float": 16, "double": 8}
CHUNK = 64  # positions per chunk of the CUDA chunked kernels (SEQLIB_CHUNK in the source)

KERNELS = {
    "causal_product.cu": [f"causal_scan<{t}, {d}>" for t, dims in SCAN_DIMENSIONS.items()
                          for d in dims]
    + [f"{name}<{t}, {CHUNK_SLAB[t]}>" for name in ("chunk_states", "chunk_output")
       for t in ("float", "double")]
    + [f"chunk_prefix<{t}>" for t in ("float", "double")],
    "lstm.cu": [f"{name}<{t}>" for name in ("lstm_step_forward", "lstm_step_backward")
                for t in ("float", "double")],
}


def source(file: str) -> str:
    """The text of a ``.cu`` file."""
    return (DIRECTORY / file).read_text(encoding="utf-8")


def instantiated_source(file: str) -> str:
    """The source plus a table taking the address of every kernel the loader uses: taking an
    address instantiates a template, and only instantiated templates are compiled (checked)."""
    table = ",\n    ".join(f"(void*)&{name}" for name in KERNELS[file])
    return f"{source(file)}\n__device__ void* seqlib_instantiated[] = {{\n    {table}\n}};\n"


_modules = {}


def get_kernel(file: str, name: str):
    """The compiled ``cupy.RawKernel`` for ``name`` (a registered name expression), compiling
    ``file`` once per process (CuPy also caches the binary on disk)."""
    if name not in KERNELS.get(file, ()):
        raise KeyError(f"{name} is not a registered kernel of {file}: {KERNELS.get(file)}")
    if cupy is None:
        raise RuntimeError(f"{name}: CUDA kernels need CuPy (pip install '.[gpu-cuda13]' or "
                           "'.[gpu-cuda12]' from seqlib's checkout)")
    module = _modules.get(file)
    if module is None:
        module = _modules[file] = cupy.RawModule(code=source(file), options=("--std=c++14",),
                                                 name_expressions=KERNELS[file])
    return module.get_function(name)


def type_name(dtype) -> str:
    """The C type of a float32/float64 dtype."""
    if dtype.name not in ("float32", "float64"):
        raise TypeError(f"CUDA kernels support float32 and float64, got {dtype}")
    return "float" if dtype.name == "float32" else "double"
