"""AttributeErrors for PyTorch names that seqlib lacks, naming seqlib's equivalent if any.

``seqlib``, ``seqlib.nn``, ``seqlib.nn.functional`` and ``seqlib.nn.utils`` get a module-level
``__getattr__`` (PEP 562), which Python calls only after the ordinary lookup has failed.
``Tensor`` gets one ``MissingAttribute`` descriptor per PyTorch name it lacks instead: a
``__getattr__`` method on a class replaces its generic attribute lookup with a slower hook
and stops CPython from specialising attribute loads, which made every ``tensor._array`` about
four times slower. Either way ``hasattr`` stays False and other names keep Python's message.
"""

from __future__ import annotations

import sys
from types import ModuleType

_DROP = "drop the call"
_MATMUL = "sl.matmul (or the @ operator)"
_STACKING = "sl.cat or sl.stack"
_SORTED = "sl.sort or sl.topk"

# PyTorch name -> what to use in seqlib, per PyTorch namespace. tests/test_missing_names.py
# checks that every sl.*, seqlib.* and Tensor.* named here exists.
EQUIVALENTS = {
    "torch": {
        "compile": f"{_DROP}: seqlib runs eagerly, its hot paths are fused Functions already",
        "jit": "the module itself (no TorchScript); sl.save writes its weights",
        "linalg": "sl.norm, sl.matmul and sl.einsum (no decompositions)",
        "distributions": "sl.multinomial, sl.normal, sl.rand and sl.randint",
        "autocast": "Module.half() or sl.set_default_dtype (no mixed-precision autocast)",
        "hub": "seqlib.models.from_pretrained",
        "Size": "plain tuples (Tensor.shape is a tuple)",
        "FloatTensor": "sl.tensor(data, dtype=sl.float32), or Tensor.type('seqlib.FloatTensor')",
        "LongTensor": "sl.tensor(data, dtype=sl.int64), or Tensor.type('seqlib.LongTensor')",
        "set_default_tensor_type": "sl.set_default_dtype",
        "set_default_device": "the device= argument of the creation functions, or Module.to",
        "set_printoptions": "numpy.set_printoptions (tensors print through NumPy)",
        "bfloat16": "sl.float16 or sl.float32 (NumPy has no bfloat16)",
        "clone": "Tensor.clone", "detach": "Tensor.detach",
        "mm": _MATMUL, "mv": _MATMUL, "dot": _MATMUL, "inner": _MATMUL,
        "outer": "sl.einsum('i,j->ij', a, b)", "tensordot": "sl.einsum",
        "addmm": "sl.matmul and an add", "baddbmm": "sl.bmm and an add",
        "relu": "sl.nn.functional.relu or Tensor.relu", "dropout": "sl.nn.functional.dropout",
        "embedding": "sl.nn.functional.embedding", "layer_norm": "sl.nn.functional.layer_norm",
        "lstm": "sl.nn.LSTM", "lstm_cell": "sl.nn.LSTMCell", "gru": "sl.nn.LSTM",
        "binary_cross_entropy_with_logits": "sl.nn.functional.binary_cross_entropy_with_logits",
        "square": "x ** 2 (sl.pow)", "reciprocal": "1 / x", "log2": "sl.log(x) / math.log(2)",
        "log10": "sl.log(x) / math.log(10)", "expm1": "sl.exp(x) - 1", "exp2": "2 ** x",
        "divide": "sl.div", "true_divide": "sl.div", "multiply": "sl.mul",
        "subtract": "sl.sub", "negative": "sl.neg", "sgn": "sl.sign", "fix": "sl.trunc",
        "floor_divide": "sl.div(a, b, rounding_mode='floor') or //",
        "remainder": "the % operator", "fmod": "the % operator",
        "greater": "sl.gt", "greater_equal": "sl.ge", "less": "sl.lt", "less_equal": "sl.le",
        "not_equal": "sl.ne", "logical_xor": "a ^ b on bool tensors",
        "clamp_min": "sl.clamp(x, min=...)", "clamp_max": "sl.clamp(x, max=...)",
        "fmax": "sl.maximum", "fmin": "sl.minimum",
        "argwhere": "sl.nonzero", "masked_select": "indexing with the mask: x[mask]",
        "take_along_dim": "sl.gather", "take": "x.flatten()[index]",
        "index_put": "x[indices] = values", "scatter_reduce": "sl.scatter_add (reduce 'sum')",
        "narrow": "slicing: x[:, start:start + length]", "select": "indexing: x[:, index]",
        "tile": "sl.repeat", "ravel": "sl.flatten", "swapaxes": "sl.transpose",
        "swapdims": "sl.transpose", "moveaxis": "sl.movedim", "broadcast_to": "sl.expand",
        "hstack": _STACKING, "vstack": _STACKING, "dstack": _STACKING,
        "column_stack": _STACKING, "row_stack": _STACKING,
        "tensor_split": "sl.split or sl.chunk", "split_with_sizes": "sl.split",
        "std_mean": "sl.std and sl.mean", "var_mean": "sl.var and sl.mean",
        "count_nonzero": "(x != 0).sum()", "median": _SORTED, "quantile": _SORTED,
        "kthvalue": _SORTED, "msort": "sl.sort(x, dim=0)",
        "bernoulli": "sl.rand(p.shape) < p", "randint_like": "sl.randint(low, high, x.shape)",
        "asarray": "sl.as_tensor", "scalar_tensor": "sl.tensor", "range": "sl.arange",
        "logspace": "10 ** sl.linspace(start, end, steps)",
        "inf": "math.inf", "nan": "math.nan", "pi": "math.pi", "e": "math.e",
    },
    "torch.nn": {
        "MultiheadAttention": "seqlib.attention.AttentionLayer(seqlib.attention.FullAttention(), "
                              "d_model, n_heads) (fast-transformers' attention layer)",
        "TransformerEncoderLayer": "seqlib.transformers.TransformerEncoderLayer, or build a "
                                   "stack with seqlib.builders.TransformerEncoderBuilder",
        "TransformerEncoder": "seqlib.transformers.TransformerEncoder, or "
                              "seqlib.builders.TransformerEncoderBuilder",
        "TransformerDecoderLayer": "seqlib.transformers.TransformerDecoderLayer, or build a "
                                   "stack with seqlib.builders.TransformerDecoderBuilder",
        "TransformerDecoder": "seqlib.transformers.TransformerDecoder, or "
                              "seqlib.builders.TransformerDecoderBuilder",
        "Transformer": "seqlib.builders.TransformerEncoderBuilder and "
                       "seqlib.builders.TransformerDecoderBuilder, or seqlib.models.TransformerLM",
        "GRU": "sl.nn.LSTM (seqlib's recurrent layer)", "RNN": "sl.nn.LSTM",
        "GRUCell": "sl.nn.LSTMCell", "RNNCell": "sl.nn.LSTMCell",
        "BatchNorm1d": "sl.nn.LayerNorm", "GroupNorm": "sl.nn.LayerNorm",
        "RMSNorm": "sl.nn.LayerNorm (which also subtracts the mean)",
        "BCELoss": "sl.nn.BCEWithLogitsLoss on logits", "NLLLoss2d": "sl.nn.NLLLoss",
        "SmoothL1Loss": "sl.nn.L1Loss or sl.nn.MSELoss", "HuberLoss": "sl.nn.L1Loss or "
                                                                    "sl.nn.MSELoss",
        "Dropout1d": "sl.nn.Dropout", "Dropout2d": "sl.nn.Dropout",
        "AlphaDropout": "sl.nn.Dropout", "LazyLinear": "sl.nn.Linear(in_features, ...)",
        "EmbeddingBag": "sl.nn.Embedding, then .sum(dim) or .mean(dim) over the bag",
        "Flatten": "Tensor.flatten in forward", "Unflatten": "Tensor.unflatten in forward",
        "Softmin": "sl.nn.Softmax on -x",
        "ParameterList": "sl.nn.Parameter attributes (a Module registers them by name)",
        "ParameterDict": "sl.nn.Parameter attributes (a Module registers them by name)",
        "Buffer": "Module.register_buffer",
    },
    "torch.nn.functional": {
        "scaled_dot_product_attention": "seqlib.attention.FullAttention",
        "multi_head_attention_forward": "seqlib.attention.AttentionLayer",
        "binary_cross_entropy": "sl.nn.functional.binary_cross_entropy_with_logits on logits",
        "smooth_l1_loss": "sl.nn.functional.l1_loss or sl.nn.functional.mse_loss",
        "huber_loss": "sl.nn.functional.l1_loss or sl.nn.functional.mse_loss",
        "batch_norm": "sl.nn.functional.layer_norm", "group_norm": "sl.nn.functional.layer_norm",
        "rms_norm": "sl.nn.functional.layer_norm (which also subtracts the mean)",
        "normalize": "x / x.norm(dim=-1, keepdim=True) (Tensor.norm)",
        "dropout1d": "sl.nn.functional.dropout", "dropout2d": "sl.nn.functional.dropout",
        "embedding_bag": "sl.nn.functional.embedding, then a sum or mean over the bag",
        "softmin": "sl.nn.functional.softmax(-x, dim)", "relu6": "sl.clamp(x, 0, 6)",
        "hardtanh": "sl.clamp(x, -1, 1)",
        "glu": "a, b = x.chunk(2, dim); a * sl.sigmoid(b)",
    },
    "torch.nn.utils": {
        "rnn": "the lengths= argument of sl.nn.LSTM's forward (a tensor, list or "
               "seqlib.masking.LengthMask) instead of packed sequences",
        "clip_grad_norm": "sl.nn.utils.clip_grad_norm_",
    },
    "torch.Tensor": {
        "stride": "Tensor.array.strides (NumPy's, in bytes)",
        "storage": "Tensor.array (the NumPy or CuPy array behind the tensor)",
        "untyped_storage": "Tensor.array (the NumPy or CuPy array behind the tensor)",
        "data_ptr": "Tensor.array (the NumPy or CuPy array behind the tensor)",
        "is_cpu": "Tensor.is_cuda (false on the CPU)", "get_device": "Tensor.device.index",
        "ndimension": "Tensor.dim", "nelement": "Tensor.numel",
        "pin_memory": f"{_DROP}: seqlib copies to the GPU from ordinary host memory",
        "byte": "Tensor.to(sl.uint8)", "char": "Tensor.to(sl.int8)",
        "short": "Tensor.to(sl.int16)", "bfloat16": "Tensor.half or Tensor.float (NumPy has "
                                                    "no bfloat16)",
        "mm": "Tensor.matmul (or @)", "mv": "Tensor.matmul (or @)",
        "dot": "Tensor.matmul (or @)", "inner": "Tensor.matmul (or @)",
        "outer": "sl.einsum('i,j->ij', a, b)",
        "addmm": "Tensor.matmul and an add", "baddbmm": "Tensor.bmm and an add",
        "masked_select": "indexing with the mask: x[mask]",
        "masked_scatter_": "x[mask] = source", "index_put_": "x[indices] = values",
        "index_put": "Tensor.clone, then x[indices] = values",
        "index_fill_": "x[:, index] = value", "index_copy_": "x[:, index] = source",
        "take": "x.flatten()[index]", "take_along_dim": "Tensor.gather",
        "narrow": "slicing: x[:, start:start + length]", "select": "indexing: x[:, index]",
        "square": "x ** 2 (Tensor.pow)", "reciprocal": "1 / x",
        "log2": "x.log() / math.log(2)", "log10": "x.log() / math.log(10)",
        "expm1": "x.exp() - 1", "exp2": "2 ** x", "sgn": "Tensor.sign", "fix": "Tensor.trunc",
        "frac": "x - x.trunc()", "clamp_min": "Tensor.clamp(min=...)",
        "clamp_max": "Tensor.clamp(max=...)", "clip_": "Tensor.clamp_",
        "logical_and": "sl.logical_and, or & on bool tensors",
        "logical_or": "sl.logical_or, or | on bool tensors",
        "logical_xor": "^ on bool tensors", "bitwise_and": "&", "bitwise_or": "|",
        "bitwise_xor": "^", "bitwise_not": "~",
        "greater": "Tensor.gt", "greater_equal": "Tensor.ge", "less": "Tensor.lt",
        "less_equal": "Tensor.le", "not_equal": "Tensor.ne", "divide": "Tensor.div",
        "true_divide": "Tensor.div", "multiply": "Tensor.mul", "subtract": "Tensor.sub",
        "negative": "Tensor.neg", "floor_divide": "Tensor.div(other, rounding_mode='floor')",
        "remainder": "the % operator", "fmod": "the % operator",
        "swapaxes": "Tensor.transpose", "swapdims": "Tensor.transpose",
        "moveaxis": "Tensor.movedim", "ravel": "Tensor.flatten", "tile": "Tensor.repeat",
        "tensor_split": "Tensor.split or Tensor.chunk", "split_with_sizes": "Tensor.split",
        "argwhere": "Tensor.nonzero", "count_nonzero": "(x != 0).sum()",
        "msort": "Tensor.sort(dim=0)", "median": "Tensor.sort or Tensor.topk",
        "kthvalue": "Tensor.sort or Tensor.topk", "quantile": "Tensor.sort",
        "scatter_reduce": "Tensor.scatter_add (reduce 'sum')",
        "scatter_reduce_": "Tensor.scatter_add_ (reduce 'sum')",
        "index_reduce_": "Tensor.index_add_ (reduce 'sum')",
        "bernoulli": "sl.rand(p.shape) < p", "random_": "sl.randint",
        "resize_": "Tensor.reshape (a new tensor)", "new": "Tensor.new_empty or Tensor.new_tensor",
        "new_empty_strided": "Tensor.new_empty",
        "sum_to_size": "Tensor.sum(dims, keepdim=True)",
        "diff": "x[..., 1:] - x[..., :-1]", "is_nonzero": "bool(x)",
        "is_same_size": "a.shape == b.shape", "lerp": "a + weight * (b - a)",
        "logit": "x.log() - (1 - x).log()",
    },
}


def pytorch_names(namespace: str) -> frozenset:
    """PyTorch's public names in ``namespace`` (loaded on the first failed lookup)."""
    from . import pytorch_names as names

    return {"torch": names.TORCH, "torch.nn": names.NN, "torch.nn.functional": names.FUNCTIONAL,
            "torch.nn.utils": names.NN_UTILS, "torch.Tensor": names.TENSOR}[namespace]


def missing_attribute(owner: str, namespace: str, name: str, obj=None) -> AttributeError:
    """The AttributeError for ``name`` on ``obj``, saying so when it is a PyTorch name.

    Args:
        owner: how Python's own message names the owner: ``"module 'seqlib.nn'"`` or
            ``"'Tensor' object"``.
        namespace: the PyTorch namespace the owner mirrors: ``"torch"``, ``"torch.nn"``,
            ``"torch.nn.functional"``, ``"torch.nn.utils"`` or ``"torch.Tensor"``.
        name: the attribute that was asked for.
        obj: the module or tensor (Python's "Did you mean" suggestions read it).
    Returns:
        the AttributeError to raise.
    """
    message = f"{owner} has no attribute {name!r}"
    if name.startswith("_"):
        return AttributeError(message, name=name, obj=obj)
    hint = EQUIVALENTS[namespace].get(name)
    if hint is None and name.endswith("_") and _has(obj, name[:-1]):
        hint = f"{name[:-1]} and assign its result (seqlib has it out of place only)"
    if hint is not None or name in pytorch_names(namespace):
        message += f": seqlib does not provide PyTorch's {namespace}.{name}"
        if hint is not None:  # what to use, or advice that starts with a verb of its own
            message += f"; {hint}" if hint.startswith(_DROP) else f"; use {hint}"
    return AttributeError(message, name=name, obj=obj)


def _has(obj, name: str) -> bool:
    """An ordinary lookup only: a module's own names, or a class's attributes."""
    if obj is None:
        return False
    if isinstance(obj, ModuleType):
        return name in vars(obj)
    return hasattr(obj if isinstance(obj, type) else type(obj), name)


class MissingAttribute:
    """Stands on a class for a PyTorch attribute it lacks: reading it raises the
    AttributeError that says so (from the class or from an instance alike)."""

    __slots__ = ("name", "namespace")

    def __init__(self, name: str, namespace: str):
        self.name, self.namespace = name, namespace

    def __get__(self, obj, owner=None):
        if obj is None:
            raise missing_attribute(f"type object {owner.__name__!r}", self.namespace, self.name,
                                    owner)
        raise missing_attribute(f"'{type(obj).__name__}' object", self.namespace, self.name, obj)


def install_missing(cls: type, namespace: str) -> frozenset:
    """Put a ``MissingAttribute`` on ``cls`` for each public PyTorch name of ``namespace``
    (``"torch.Tensor"``) that it lacks.

    Args:
        cls: the class, complete (every method it will have is defined).
        namespace: the PyTorch namespace the class mirrors.
    Returns:
        the names installed (for ``__dir__`` to leave out).
    """
    missing = frozenset(name for name in pytorch_names(namespace) if not hasattr(cls, name))
    for name in missing:
        setattr(cls, name, MissingAttribute(name, namespace))
    return missing


def module_getattr(module_name: str, namespace: str):
    """A module-level ``__getattr__`` (PEP 562) for a seqlib module that mirrors ``namespace``.

    Args:
        module_name: the module's ``__name__``.
        namespace: the PyTorch namespace it mirrors, as for ``missing_attribute``.
    Returns:
        the function to bind as the module's ``__getattr__``.
    """
    def __getattr__(name: str):
        module = sys.modules[module_name]
        raise missing_attribute(f"module {module_name!r}", namespace, name, module)

    return __getattr__
