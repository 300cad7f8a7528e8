"""Elementwise work over the rows of an activation, in cache-sized blocks on worker threads.

NumPy runs each ufunc over a whole array on one thread, one pass after another: a chain of
twenty passes over a ``(4096, 1024)`` float32 activation (16 MB) streams it through memory
twenty times while the other cores idle. Cut into blocks of rows of about 256 KB, the same
chain runs over a block while it stays in the core's L2 cache, and blocks run on the worker
threads of ``seqlib.kernels.threads`` (NumPy releases the GIL inside its ufunc loops), so the
chain costs about one pass through memory, shared among the cores.
"""

from __future__ import annotations

from seqlib.kernels import threads

BLOCK_BYTES = 1 << 18  # per array: a block of the input, the output and a few temporaries fit L2
TASKS_PER_WORKER = 4  # smaller tasks even out a core that is busy with something else


def block_rows(row_bytes: int) -> int:
    """Rows per block for rows of ``row_bytes`` bytes (at least one)."""
    return max(1, BLOCK_BYTES // max(row_bytes, 1))


def run_row_blocks(function, rows: int, row_bytes: int) -> list:
    """``[function(start, stop) for each block]`` over consecutive blocks of rows that cover
    ``range(rows)``, the blocks spread over the worker threads in a few contiguous tasks.

    Args:
        function: called as ``function(start, stop)`` once per block; it must only write
            rows ``start:stop`` of shared arrays.
        rows: the number of rows.
        row_bytes: the bytes of one row of the widest array the function reads or writes.
    Returns:
        the results, in row order.
    """
    size = block_rows(row_bytes)
    blocks = [(start, min(start + size, rows)) for start in range(0, rows, size)]
    tasks = min(len(blocks), TASKS_PER_WORKER * threads.get_num_threads())
    if tasks <= 1:
        return [function(*block) for block in blocks]
    per_task = -(-len(blocks) // tasks)
    groups = [(blocks[i:i + per_task],) for i in range(0, len(blocks), per_task)]
    done = threads.run_all(lambda group: [function(*block) for block in group], groups)
    return [result for group in done for result in group]
