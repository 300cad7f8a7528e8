"""Streaming generated tokens as text, with Hugging Face's streamer protocol.

``model.generate(..., streamer=s)`` calls ``s.put(prompt_ids)`` once with the ``(N, L)`` prompt,
``s.put(new_ids)`` with the ``(N,)`` tokens of every step, and ``s.end()`` at the end, exactly
as ``transformers.GenerationMixin.generate`` does; any object with those two methods is a
streamer.

Text is decoded incrementally (``IncrementalDecoder``): the concatenation of the pieces a
streamer emits is exactly ``tokenizer.decode`` of all the ids it was given. A multi-byte
character that SentencePiece spells as byte-fallback tokens decodes to U+FFFD until its last
byte arrives, so text that ends in U+FFFD is held back until a later token completes it (or
``end()`` flushes it as it is).
"""

from __future__ import annotations

from queue import Queue

import numpy

REPLACEMENT = "\ufffd"  # what a decoder writes for bytes that are not (yet) a whole character
CONTEXT = 4  # ids kept before new ones, so a tokenizer sees the neighbours that shape their text


class IncrementalDecoder:
    """Turns token ids, given a few at a time, into text pieces whose concatenation equals
    ``tokenizer.decode`` of all the ids.

    New ids are decoded after the last few ids already finished (``CONTEXT``), and the text
    those decode to is cut off: this keeps every step O(1) whatever the length of the text, and
    lets a tokenizer that spells a token differently after its neighbours (a leading space, a
    word-piece join) do so. Text ending in U+FFFD may still change and is held back.

    Args:
        tokenizer: anything with ``decode(ids, **decode_kwargs) -> str``.
        **decode_kwargs: passed to ``tokenizer.decode``.
    """

    def __init__(self, tokenizer, **decode_kwargs):
        self.tokenizer = tokenizer
        self.decode_kwargs = decode_kwargs
        self.reset()

    def reset(self) -> None:
        """Forget every id (start a new text)."""
        self._context = []  # finished ids, decoded only to be cut off the pending text
        self._pending = []  # ids whose text is not all out yet
        self._sent = 0  # characters of the pending text already returned

    def _decode(self, ids: list) -> str:
        return self.tokenizer.decode(ids, **self.decode_kwargs)

    def _pending_text(self) -> str:
        if self._context:
            before = self._decode(self._context)
            after = self._decode(self._context + self._pending)
            if after.startswith(before):
                return after[len(before):]
        return self._decode(self._pending)  # a tokenizer whose context text changed: no context

    def push(self, ids) -> str:
        """Add token ids.

        Args:
            ids: an iterable of ints.
        Returns:
            the text that is now final (possibly ``""``).
        """
        self._pending.extend(int(i) for i in ids)
        text = self._pending_text()
        final = len(text.rstrip(REPLACEMENT))
        piece = text[self._sent:final]
        self._sent = max(self._sent, final)
        if final == len(text):  # nothing held back: later ids cannot change this text
            self._context = (self._context + self._pending)[-CONTEXT:]
            self._pending, self._sent = [], 0
        return piece

    def flush(self) -> str:
        """End the text.

        Returns:
            the text held back (possibly ``""``), after which the decoder starts afresh.
        """
        piece = self._pending_text()[self._sent:] if self._pending else ""
        self.reset()
        return piece


def token_rows(value) -> numpy.ndarray:
    """Token ids from a seqlib Tensor, NumPy array or (nested) list, as a NumPy int array."""
    array = numpy.asarray(value.tolist() if hasattr(value, "tolist") else value)
    if array.size == 0:
        return array.astype(numpy.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"streamer: expected integer token ids, got dtype {array.dtype}")
    return array


class BaseStreamer:
    """What ``generate`` calls: ``put(token_ids)`` (the prompt first), then ``end()``."""

    def put(self, value) -> None:
        """Receive the ``(N, L)`` prompt ids, then the ``(N,)`` new ids of each step."""
        raise NotImplementedError

    def end(self) -> None:
        """Generation is over."""
        raise NotImplementedError


class TextStreamer(BaseStreamer):
    """Prints the text of the generated tokens to stdout as it becomes final (batch size 1).

    Like ``transformers.TextStreamer``: the prompt is printed too unless ``skip_prompt``, and
    ``end()`` ends the line. Unlike it, text is held back only while it ends in an incomplete
    character (not until the next space), so words appear as soon as they are generated.

    Args:
        tokenizer: decodes ids (``CharTokenizer``, ``SentencePieceTokenizer``, ...).
        skip_prompt: do not print the prompt (the first ``put``).
        **decode_kwargs: passed to ``tokenizer.decode``.
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.decoder = IncrementalDecoder(tokenizer, **decode_kwargs)
        self.next_tokens_are_prompt = True

    def put(self, value) -> None:
        """Decode ``value`` (``(1, L)``, ``(L,)`` or ``(1,)`` ids) and print what is final.

        Args:
            value: a seqlib Tensor, NumPy array or list of token ids of one sequence.
        Returns:
            None.
        """
        ids = token_rows(value)
        if ids.ndim > 1 and ids.shape[0] > 1:
            raise ValueError(f"{type(self).__name__} only supports batch size 1, got token ids "
                             f"of shape {ids.shape}")
        ids = ids.reshape(-1)
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.next_tokens_are_prompt = False
        piece = self.decoder.push(ids.tolist())
        if piece:
            self.on_finalized_text(piece)

    def end(self) -> None:
        """Print the text still held back and end the line; the next ``put`` is a prompt."""
        piece = self.decoder.flush()
        self.next_tokens_are_prompt = True
        self.on_finalized_text(piece, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Print ``text`` at once (and a newline at the end of the stream); override to send
        the text elsewhere."""
        print(text, flush=True, end=None if stream_end else "")


class TextIteratorStreamer(TextStreamer):
    """Queues the text pieces for a consumer that iterates over the streamer, typically while
    ``generate`` runs in another thread.

    Example::

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        Thread(target=model.generate, args=(ids,), kwargs=dict(streamer=streamer)).start()
        for piece in streamer:
            print(piece, end="", flush=True)

    Args:
        tokenizer: decodes ids.
        skip_prompt: leave the prompt out.
        timeout: seconds to wait for each piece before ``queue.Empty`` is raised (None: wait
            forever; set it when ``generate`` could fail in the other thread).
        **decode_kwargs: passed to ``tokenizer.decode``.
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, timeout: float | None = None,
                 **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue = Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Queue ``text`` (if any), and the stop signal at the end of the stream."""
        if text:
            self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        value = self.text_queue.get(timeout=self.timeout)
        if value is self.stop_signal:
            raise StopIteration
        return value
