"""shared.numeric_threads: once the gateway's process limits its numeric pools, the live
features run on the calling thread alone, with no helper thread spending CPU beside it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Run in a process of its own: the limits hold for the rest of a process, and the test suite's
# own process should keep its defaults.
_PROBE = textwrap.dedent(
    """
    import json, time
    import numpy as np
    import services.gateway.app  # everything a gateway session loads, BLAS libraries included
    from threadpoolctl import threadpool_info
    from shared.features.spec import EFFICIENTAT_MEL
    from shared.features.stream import LiveWindows
    from shared.numeric_threads import single_threaded_numerics
    import torch

    single_threaded_numerics()
    audio = (0.1 * np.random.default_rng(0).standard_normal(EFFICIENTAT_MEL.sample_rate * 30)).astype(np.float32)
    windows = LiveWindows(EFFICIENTAT_MEL, EFFICIENTAT_MEL.frames_for(0.5))
    step = EFFICIENTAT_MEL.sample_rate // 50  # 20 ms pushes, as a live client sends
    process, thread = time.process_time(), time.thread_time()
    count = sum(len(windows.push(audio[i : i + step])) for i in range(0, len(audio), step))
    print(json.dumps({
        "pools": sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()}),
        "torch_threads": torch.get_num_threads(),
        "windows": count,
        "this_thread_s": time.thread_time() - thread,
        "process_s": time.process_time() - process,
    }))
    """
)


def test_the_live_features_run_on_one_thread_with_no_helper_spending_cpu() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, check=True)
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["torch_threads"] == 1
    assert {"openblas", "openmp"} <= {api for api, _ in probe["pools"]}  # both kinds were there to limit
    assert all(threads == 1 for _, threads in probe["pools"]), probe["pools"]
    assert probe["windows"] == 56  # 30 s: the first window at 2 s, then one every 0.5 s
    # Helper threads of a pool would show as process CPU beyond this thread's own (with
    # OpenBLAS's default of a thread a core they doubled it on a 2-core VM).
    assert probe["process_s"] - probe["this_thread_s"] < 0.1 * probe["this_thread_s"] + 0.005
