"""The web app's client-side CPU while listening: what one stream costs the phone or tablet.

Headless Debian Chromium (Playwright, ``/usr/bin/chromium``) opens the page of a running
gateway, with a WAV file as its microphone (a conversation over room noise), registers a
device, and measures over ``--seconds`` (60):

* **idle**: the page open and signed in, not listening;
* **listening**: the same page after Start: AudioWorklet capture, PCM16 frames over
  ``/v1/stream``, scores, level meter.

For each it prints the CPU time of the whole browser (every Chromium process: browser, renderer,
audio service, GPU and network processes, from ``/proc``) as a percentage of one core, and the
renderer main thread's busy time from the DevTools protocol (``Performance.getMetrics``:
``TaskDuration``, ``ScriptDuration``). What the page adds to a stream is the difference between
the two. The fake microphone's file reading and the headless compositor are included, so the
figure is an upper bound for a real microphone.

    bash scripts/run.sh            # in another terminal: the system on :8000
    .venv/bin/python bench/bench_web_client.py [--url http://127.0.0.1:8000] [--seconds 60]

Prints figures; not a test. On a shared machine, other processes skew the numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import soundfile

CLK_TCK = os.sysconf("SC_CLK_TCK")


def conversation_wav(path: Path, seconds: float = 30.0, rate: int = 48_000) -> Path:
    """Speech-like bursts (voiced harmonics, syllable rhythm) over room noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.3 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 12))
    syllables = (np.sin(2 * np.pi * 4 * t) > 0) * (np.sin(2 * np.pi * 0.25 * t) > -0.3)
    audio = 0.1 * voice * syllables + 0.003 * rng.standard_normal(len(t))
    soundfile.write(path, audio.astype(np.float32), rate, subtype="PCM_16")
    return path


def browser_processes(marker: str) -> list[int]:
    """The Chromium launched with ``marker`` and all its descendants."""
    parents: dict[int, int] = {}
    root = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if marker.encode() in cmdline and b"--type=" not in cmdline:
            root = pid
    if root is None:
        raise RuntimeError("the browser process was not found")
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return sorted(family)


def cpu_by_process(pids: list[int]) -> dict[str, float]:
    """CPU seconds so far per kind of Chromium process (browser, renderer, gpu-process,
    utility: audio service, network service...)."""
    kinds: dict[str, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # exited
        # Chromium's children rewrite their command line as one string: search it whole.
        kind_match = re.search(r"--type=(\S+)", cmdline)
        service = re.search(r"--utility-sub-type=(\S+)", cmdline)
        kind = service.group(1).rsplit(".", 1)[-1] if service else kind_match.group(1) if kind_match else "browser"
        kinds[kind] = kinds.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return kinds


def measure(page: object, cdp: object, marker: str, seconds: float) -> tuple[float, float, float, dict[str, float]]:
    """(% of one core for the whole browser, renderer task %, renderer script %, % per process kind)."""

    def metrics() -> dict[str, float]:
        return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}  # type: ignore[attr-defined]

    pids = browser_processes(marker)
    cpu0, m0, t0 = cpu_by_process(pids), metrics(), time.monotonic()
    page.wait_for_timeout(seconds * 1000)  # type: ignore[attr-defined]
    cpu1, m1, t1 = cpu_by_process(pids), metrics(), time.monotonic()
    wall = t1 - t0
    kinds = {kind: 100 * (cpu1[kind] - cpu0.get(kind, 0.0)) / wall for kind in cpu1}
    return (
        sum(kinds.values()),
        100 * (m1["TaskDuration"] - m0["TaskDuration"]) / wall,
        100 * (m1["ScriptDuration"] - m0["ScriptDuration"]) / wall,
        kinds,
    )


CAPTURE_ONLY = """async () => {
  const format = await (await fetch("/v1/stream/format")).json();  // as the page
  const stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: false,
    noiseSuppression: false, autoGainControl: false}});
  const context = new AudioContext({latencyHint: "playback", renderSizeHint: 4096, sinkId: {type: "none"},
    sampleRate: format.sample_rate});
  await context.audioWorklet.addModule("/web/js/pcm-worklet.js");
  const node = new AudioWorkletNode(context, "pcm-capture", {numberOfInputs: 1, numberOfOutputs: 0,
    processorOptions: {frameMs: format.frame_ms}});
  node.port.onmessage = () => {};
  context.createMediaStreamSource(stream).connect(node);
  window.benchCapture = {close: () => { stream.getTracks().forEach((t) => t.stop()); return context.close(); }};
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    registration = {
        "profile": {"name": "Bench", "birth_year": 1942},
        "consent_recording": True, "consent_location": False, "consent_share_profile": False,
    }  # fmt: skip
    response = httpx.post(f"{args.url}/v1/devices", json=registration, timeout=10)
    response.raise_for_status()
    token = response.json()["token"]
    marker = f"--hearo-bench={uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        wav = conversation_wav(Path(folder) / "conversation.wav")
        browser = playwright.chromium.launch(
            executable_path=args.chromium,
            args=["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-audio-capture={wav}", marker],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 412, "height": 915})
        page.goto(args.url + "/")
        page.evaluate("(token) => localStorage.setItem('hearo.token', token)", token)
        page.reload()
        page.locator("#listen-start").wait_for()
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.wait_for_timeout(3000)
        idle = measure(page, cdp, marker, args.seconds)
        # The floor: the microphone through the same worklet, its frames dropped (no socket, no page).
        page.evaluate(CAPTURE_ONLY)
        page.wait_for_timeout(3000)
        capture = measure(page, cdp, marker, args.seconds)
        page.evaluate("() => window.benchCapture.close()")
        page.locator("#listen-start").click()
        page.locator("#listen-status[data-listening=true]").wait_for(timeout=30_000)
        page.wait_for_timeout(3000)
        listening = measure(page, cdp, marker, args.seconds)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#listen-stop").click()
        page.wait_for_timeout(500)
        browser.close()

    print(f"web client CPU over {args.seconds:g} s, % of one core (headless Chromium {args.chromium})")
    print(f"{'':12}{'whole browser':>15}{'renderer tasks':>16}{'renderer JS':>13}")
    for name, (total, tasks, script, _) in (("idle", idle), ("capture only", capture), ("listening", listening)):
        print(f"{name:12}{total:14.2f}%{tasks:15.2f}%{script:12.2f}%")
    print(f"{'added':12}{listening[0] - idle[0]:14.2f}%{listening[1] - idle[1]:15.2f}%{listening[2] - idle[2]:12.2f}%")
    print("added per process: " + ", ".join(
        f"{kind} {listening[3][kind] - idle[3].get(kind, 0.0):.2f}%" for kind in sorted(listening[3])))


if __name__ == "__main__":
    main()
