"""CUDA tensors give the CPU's results (skipped without a GPU: cupy.is_available() is false)."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl
import seqlib.nn.functional as F
from seqlib.feature_maps import _elu_plus_one

pytestmark = pytest.mark.gpu


def pair(*shape, seed=0, dtype=sl.float32):
    cpu = sl.randn(*shape, generator=sl.Generator().manual_seed(seed), dtype=dtype)
    return cpu.requires_grad_(), cpu.detach().cuda().requires_grad_()


def close(cuda_tensor, cpu_tensor, tol=1e-5):
    if cpu_tensor is None:  # e.g. the gradient of an input the function does not use
        assert cuda_tensor is None
        return
    numpy.testing.assert_allclose(cuda_tensor.detach().cpu().numpy(),
                                  cpu_tensor.detach().numpy(), rtol=tol, atol=tol)


def test_device_round_trip():
    x = sl.arange(6).view(2, 3)
    on_gpu = x.cuda()
    assert on_gpu.device == "cuda:0" and on_gpu.is_cuda
    assert on_gpu.cpu().tolist() == x.tolist()
    assert sl.zeros(2, device="cuda").device == sl.device("cuda")
    with pytest.raises(TypeError, match="Tensor.cpu"):
        on_gpu.numpy()


def test_mixed_devices_are_a_clear_error():
    with pytest.raises(RuntimeError, match="same device"):
        sl.ones(2) + sl.ones(2).cuda()


@pytest.mark.parametrize("fn", [
    lambda a, b: (a * b + a.exp()).sum(),
    lambda a, b: (a @ b.T).relu().mean(),
    lambda a, b: F.softmax(a, -1).log().sum() + F.layer_norm(b, (4,)).pow(2).sum(),
    lambda a, b: F.gelu(a).sum() + F.silu(b).var(),
    lambda a, b: sl.cat([a, b]).max(0).values.sum() + a[:, [0, 2, 2]].sum(),
    lambda a, b: F.cross_entropy(a, sl.tensor([0, 3, 1], device=a.device),
                                 label_smoothing=0.1),
    lambda a, b: F.embedding(sl.tensor([[0, 2], [2, 1]], device=a.device), b).sum(),
    lambda a, b: (_elu_plus_one(a) * b).sum() + F.layer_norm(a, (4,), b[0], b[1]).pow(3).sum(),
])
def test_forward_and_backward_match_the_cpu(fn):
    a_cpu, a_gpu = pair(3, 4, seed=1)
    b_cpu, b_gpu = pair(3, 4, seed=2)
    out_cpu, out_gpu = fn(a_cpu, b_cpu), fn(a_gpu, b_gpu)
    close(out_gpu, out_cpu)
    out_cpu.backward()
    out_gpu.backward()
    close(a_gpu.grad, a_cpu.grad)
    close(b_gpu.grad, b_cpu.grad)
    assert all(g.is_cuda for g in (a_gpu.grad, b_gpu.grad) if g is not None)


def _on(a, values):
    return sl.tensor(values, device=a.device)


@pytest.mark.parametrize("fn", [  # the tensor ops of a sampling or data loop
    lambda a, b: a.sort(1, descending=True).values[:, :2].sum() + a.topk(2, 0).values.pow(2).sum(),
    lambda a, b: a.gather(1, _on(a, [[0, 3], [1, 1]])).sum()
    + a.scatter(1, _on(a, [[2, 0]]), b[:1, :2]).pow(2).sum(),
    lambda a, b: a.scatter_add(0, _on(a, [[2, 0, 0, 1]]), b).pow(2).sum()
    + a.index_add(1, _on(a, [3, 3]), b[:, :2], alpha=0.5).pow(2).sum(),
    lambda a, b: (a * sl.where(b > 0, 0.0, 1.0)).cumprod(1).sum()
    + a.repeat_interleave(_on(a, [2, 0, 1]), dim=0).pow(2).sum(),
    lambda a, b: sl.bmm(a.view(3, 2, 2), b.view(3, 2, 2)).pow(2).sum(),
])
def test_tensor_ops_forward_and_backward_match_the_cpu(fn):
    test_forward_and_backward_match_the_cpu(fn)


def test_index_ops_sampling_and_type_on_the_gpu():
    x = sl.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 0.0]])
    on_gpu = x.cuda()
    assert on_gpu.nonzero().is_cuda and on_gpu.nonzero().tolist() == x.nonzero().tolist()
    assert [t.tolist() for t in sl.where(on_gpu > 0)] == [t.tolist() for t in sl.where(x > 0)]
    assert on_gpu.argsort(1, descending=True).tolist() == x.argsort(1, descending=True).tolist()
    weights = sl.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]])
    for replacement in (True, False):
        cpu = sl.multinomial(weights, 2, replacement, generator=sl.Generator().manual_seed(4))
        gpu = sl.multinomial(weights.cuda(), 2, replacement,
                             generator=sl.Generator().manual_seed(4))
        assert gpu.is_cuda and gpu.tolist() == cpu.tolist()  # drawn on the CPU, same seed
    filled = sl.empty(5, device="cuda").uniform_(generator=sl.Generator().manual_seed(1))
    close(filled, sl.empty(5).uniform_(generator=sl.Generator().manual_seed(1)), 0)
    assert on_gpu.type() == "seqlib.cuda.FloatTensor"
    assert on_gpu.type("torch.cuda.LongTensor").is_cuda
    assert not on_gpu.type("seqlib.DoubleTensor").is_cuda


def test_gradients_flow_across_devices():
    x = sl.ones(3, requires_grad=True)
    (x.cuda() * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0] and not x.grad.is_cuda


def test_random_numbers_match_the_cpu_with_the_same_seed():
    cpu = sl.randn(5, generator=sl.Generator().manual_seed(3))
    gpu = sl.randn(5, generator=sl.Generator().manual_seed(3), device="cuda")
    close(gpu, cpu, 0)
    assert F.dropout(sl.ones(100, device="cuda"), 0.5).is_cuda


def test_erf_and_masks_on_gpu():
    x = sl.linspace(-3, 3, 7, dtype=sl.float64)
    close(x.cuda().erf(), x.erf(), 1e-12)
    mask = sl.masking.TriangularCausalMask(4, device="cuda")
    assert mask.bool_matrix.is_cuda and mask.lower_triangular
    assert mask.additive_matrix.is_cuda


@pytest.mark.parametrize("attention_type", ["causal-linear", "full"])
def test_fused_recurrent_steps_on_the_gpu_match_the_cpu(attention_type):
    from seqlib.builders import RecurrentEncoderBuilder

    sl.manual_seed(0)
    model = RecurrentEncoderBuilder.from_kwargs(
        attention_type=attention_type, n_layers=2, n_heads=2, query_dimensions=4,
        value_dimensions=4, feed_forward_dimensions=16).get().eval()
    on_gpu = RecurrentEncoderBuilder.from_kwargs(
        attention_type=attention_type, n_layers=2, n_heads=2, query_dimensions=4,
        value_dimensions=4, feed_forward_dimensions=16).get().eval()
    on_gpu.load_state_dict(model.state_dict())
    on_gpu.cuda()
    x = sl.randn(3, 5, 8)
    cpu_state = gpu_state = None
    with sl.no_grad():
        assert on_gpu.step_fn().fusable
        for i in range(5):
            y_cpu, cpu_state = model(x[:, i], cpu_state)
            y_gpu, gpu_state = on_gpu(x[:, i].cuda(), gpu_state)
            assert y_gpu.is_cuda and all(t.is_cuda for s in gpu_state for t in s)
            close(y_gpu, y_cpu)


def _twins(make):
    """A module built by ``make()`` on the CPU and a copy of it moved to the GPU."""
    cpu = make()
    gpu = make()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


def test_lstm_module_with_lengths_and_adam_steps_match_the_cpu():
    cpu, gpu = _twins(lambda: sl.nn.LSTM(8, 16, num_layers=2, bidirectional=True))
    x = sl.randn(7, 3, 8)
    lengths = [7, 2, 5]
    optimizers = [sl.optim.Adam(m.parameters(), lr=1e-2) for m in (cpu, gpu)]
    for _ in range(3):
        for model, optimizer, inputs in ((cpu, optimizers[0], x), (gpu, optimizers[1], x.cuda())):
            optimizer.zero_grad()
            out, (h, c) = model(inputs, lengths=lengths)
            (out.pow(2).mean() + h.sum() + c.pow(2).sum()).backward()
            sl.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert b.is_cuda, name
        close(b, a, 1e-5)


@pytest.mark.parametrize("attention_type", ["causal-linear", "full"])
def test_transformer_lm_training_and_generation_match_the_cpu(attention_type):
    from seqlib.models import TransformerLM, TransformerLMConfig

    config = TransformerLMConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, dropout=0.0,
                                 attention_type=attention_type,
                                 attention_options={"attention_dropout": 0.0})
    cpu, gpu = _twins(lambda: TransformerLM(config))
    tokens = sl.randint(0, 40, (2, 70))
    optimizers = [sl.optim.AdamW(m.parameters(), lr=1e-3) for m in (cpu, gpu)]
    losses = []
    for _ in range(2):
        for model, optimizer, device in ((cpu, optimizers[0], "cpu"), (gpu, optimizers[1], "cuda")):
            optimizer.zero_grad()
            batch = tokens.to(device)
            _, loss = model(batch[:, :-1], batch[:, 1:])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    numpy.testing.assert_allclose(losses[1::2], losses[::2], rtol=1e-5)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        close(b, a, 1e-4)
    prompt = tokens[0, :5].tolist()
    assert (sl.generate(gpu.eval(), prompt, 8, temperature=0)
            == sl.generate(cpu.eval(), prompt, 8, temperature=0))
    on_gpu = gpu.generate(tokens[:, :5].cuda(), max_new_tokens=8)  # stays on the input's device
    assert on_gpu.device == "cuda:0"
    assert on_gpu.tolist() == cpu.generate(tokens[:, :5], max_new_tokens=8).tolist()


@pytest.mark.parametrize("attention_type, options", [
    ("full", {}), ("linear", {}), ("causal-linear", {}), ("local", {"local_context": 4}),
    ("exact-topk", {"topk": 3}),
])
def test_every_attention_trains_on_the_gpu_like_on_the_cpu(attention_type, options):
    from seqlib.builders import TransformerEncoderBuilder
    from seqlib.masking import TriangularCausalMask

    def make():
        return TransformerEncoderBuilder.from_kwargs(
            attention_type=attention_type, n_layers=2, n_heads=2, query_dimensions=4,
            value_dimensions=4, feed_forward_dimensions=16, dropout=0.0, attention_dropout=0.0,
            **options).get()

    cpu, gpu = _twins(make)
    x_cpu, x_gpu = pair(2, 9, 8, seed=4)
    causal = attention_type != "linear"  # linear attention takes no mask
    out_cpu = cpu(x_cpu, attn_mask=TriangularCausalMask(9) if causal else None)
    out_gpu = gpu(x_gpu, attn_mask=TriangularCausalMask(9, device="cuda") if causal else None)
    close(out_gpu, out_cpu, 1e-4)
    out_cpu.pow(2).sum().backward()
    out_gpu.pow(2).sum().backward()
    close(x_gpu.grad, x_cpu.grad, 1e-4)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        close(b.grad, a.grad, 1e-4)


def test_long_recurrent_generation_on_the_gpu_matches_the_parallel_model():
    from seqlib.models import TransformerLM, TransformerLMConfig

    config = TransformerLMConfig(vocab_size=30, d_model=32, n_layers=2, n_heads=4, dropout=0.0)
    cpu, gpu = _twins(lambda: TransformerLM(config).eval())
    tokens = sl.randint(0, 30, (2, 300))
    with sl.no_grad():
        parallel = gpu(tokens.cuda())[0]
        recurrent, state = gpu.recurrent(), None
        cpu_recurrent, cpu_state = cpu.recurrent(), None
        for i in range(300):
            logits, state = recurrent(tokens[:, i].cuda(), state)
            cpu_logits, cpu_state = cpu_recurrent(tokens[:, i], cpu_state)
            if i % 37 == 0 or i == 299:
                close(logits, parallel[:, i].cpu(), 1e-3)
                close(logits, cpu_logits, 1e-3)


@pytest.mark.parametrize("make", [
    lambda params: sl.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    lambda params: sl.optim.Adam(params, lr=1e-2, weight_decay=0.05, maximize=True),
    lambda params: sl.optim.Adam(params, lr=1e-2, amsgrad=True),  # the array-code path
])
def test_adam_steps_on_the_gpu_match_the_cpu(make):
    cpu, gpu = _twins(lambda: sl.nn.Linear(6, 5))
    x = sl.randn(4, 6)
    optimizers = [make(m.parameters()) for m in (cpu, gpu)]
    for _ in range(4):
        for model, optimizer, inputs in ((cpu, optimizers[0], x), (gpu, optimizers[1], x.cuda())):
            optimizer.zero_grad()
            model(inputs).pow(2).sum().backward()
            optimizer.step()
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        close(b, a, 1e-5)
    state = optimizers[1].state[next(iter(gpu.parameters()))]
    assert state["step"] == 4 and state["exp_avg"].__class__.__module__.startswith("cupy")
