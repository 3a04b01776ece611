"""One compute thread for a process's numeric libraries, for the stream path's small ops.

A gateway's per-window ops (the live log-mel's mel product, the novelty gate's and the anomaly
vectors' band pooling, torch's few feature ops) work on a few dozen frames at a time: far too
little to share between cores, and the gateway's event loop runs them one session after another
anyway. Yet torch's intra-op pool and numpy's and scipy's OpenBLAS pools each start one thread a
core, wake them for such ops and let them spin for more work, on cores that the other
processes (the other gateway, inference, the database) need.

Measured on a 2-core VM (`bench/bench_features.py`, `LiveWindows` at 20 ms pushes, the default
model's spec): with OpenBLAS's default of two threads the same frames cost 1.16 ms of CPU per
stream-second against 0.61 ms with one, in the same wall time. torch's pool alone cost a 100 ms
push 0.60 ms of CPU instead of 0.07 ms (the reason the gateway first pinned torch).
"""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


def single_threaded_numerics() -> None:
    """Limit torch's intra-op pool and every BLAS and OpenMP pool loaded so far to one thread,
    for the rest of the process (call it once the process's imports are done)."""
    torch.set_num_threads(1)
    threadpool_limits(limits=1)
