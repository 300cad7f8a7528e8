"""End to end: real models train on the CPU within seconds."""

from __future__ import annotations

import seqlib as sl
from seqlib import nn, optim

TEXT = ("the quick brown fox jumps over the lazy dog. " * 40
        + "pack my box with five dozen liquor jugs. " * 40)


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int = 48):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        hidden, _ = self.lstm(self.embedding(tokens))  # (N, L, hidden)
        return self.head(hidden)  # (N, L, vocab)


def test_two_layer_lstm_language_model_learns_a_small_text():
    sl.manual_seed(0)
    alphabet = sorted(set(TEXT))
    tokens = sl.tensor([alphabet.index(ch) for ch in TEXT])
    windows = sl.data.TokenWindowDataset(tokens, block_size=32, stride=8)
    loader = sl.data.DataLoader(windows, batch_size=16, shuffle=True, drop_last=True,
                                generator=sl.Generator().manual_seed(0))
    model = CharLSTM(len(alphabet))
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    while len(losses) < 80:
        for inputs, targets in loader:
            logits = model(inputs)
            loss = sl.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > 2.5  # about ln(28) at the start
    assert last < 0.5 * first, (first, last)
