"""BEATs-base throughput: windows/s, ms per 2 s window, achieved GFLOP/s vs the machine's matmul.

Random weights in the released iter3+ fine-tuned layout (90.7 M parameters), written with
``save_official`` and read back with ``load_beats`` so the real loading path is used. Two inputs:
precomputed normalised filterbank windows (what the inference service receives) and 16 kHz
waveforms (filterbank included). One 2 s window costs ~17.8 GFLOP (shared/specs/beats.md §7);
the practical peak is this process's own fp32 (or bf16 on CUDA) 2048 x 2048 matmul rate,
measured again right before each row, so a row's fraction holds even when other processes
share the cores (the load average is printed too).

    .venv/bin/python bench/bench_beats.py            # CPU, plus CUDA in bf16 when present

Prints figures; not a test. On a shared machine, other processes skew the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from services.inference.models.beats import BEATs, BEATsConfig, load_beats, save_official
from shared.features.kaldi_fbank import beats_fbank

GFLOP_PER_WINDOW = 17.8
WINDOW_SAMPLES = 32_000
# (batch, timed iterations): fewer at batch 32, where one forward takes seconds on a CPU.
CPU_PLAN = ((1, 20), (8, 6), (32, 3))
CUDA_PLAN = ((1, 50), (8, 30), (32, 20))


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], iterations: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, kernel selection
    synchronise(device)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(device: torch.device, dtype: torch.dtype, iterations: int) -> float:
    n = 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_seconds(lambda: a @ b, iterations, device)
    return 2 * n**3 / seconds / 1e9


def bench_device(model: BEATs, device: torch.device, plan: tuple[tuple[int, int], ...]) -> None:
    cuda = device.type == "cuda"
    precision = f"autocast {model.autocast_dtype}" if cuda and model.autocast_dtype else "fp32"
    peak_dtype = model.autocast_dtype if cuda and model.autocast_dtype else torch.float32
    threads = f", {torch.get_num_threads()} threads" if not cuda else ""
    print(f"\n== {device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}{threads}), BEATs in {precision}")
    print(f"   peak = 2048x2048 {peak_dtype} matmul GFLOP/s, measured before each row")
    print(
        f"   {'input':<9}{'batch':>6}{'ms/window':>12}{'windows/s':>12}{'GFLOP/s':>10}"
        f"{'peak':>9}{'of peak':>9}"
    )
    model.to(device)
    generator = torch.Generator().manual_seed(0)
    for batch, iterations in plan:
        wave = (0.1 * torch.randn(batch, WINDOW_SAMPLES, generator=generator)).to(device)
        fbank = beats_fbank(wave)
        runs = {
            "fbank": lambda: model.extract_features_from_fbank(fbank),
            "waveform": lambda: model.extract_features(wave),
        }
        for name, fn in runs.items():
            peak = matmul_gflops(device, peak_dtype, 20 if cuda else 4)
            with torch.inference_mode():
                seconds = median_seconds(fn, iterations, device)
            per_window = seconds / batch
            gflops = GFLOP_PER_WINDOW / per_window
            print(
                f"   {name:<9}{batch:>6}{per_window * 1e3:>12.1f}{1 / per_window:>12.1f}"
                f"{gflops:>10.1f}{peak:>9.1f}{gflops / peak:>9.0%}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cuda", action="store_true", help="CPU only even when CUDA is present")
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "beats_base_random.pt"
        save_official(BEATs(BEATsConfig.iter3_plus(finetuned=True)), path)
        start = time.perf_counter()
        model = load_beats(path)
        load_seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"BEATs-base (iter3+ fine-tuned layout, random weights): {params:,} parameters, "
          f"load_beats {load_seconds:.2f} s; {GFLOP_PER_WINDOW} GFLOP per 2 s window (P = 96 tokens)")

    print("load average (1, 5, 15 min) at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    bench_device(model, torch.device("cpu"), CPU_PLAN)
    if torch.cuda.is_available() and not args.no_cuda:
        bench_device(model, torch.device("cuda"), CUDA_PLAN)
    print("\nload average (1, 5, 15 min) at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
