"""Allow-listed Debian packages -> labelled 16 kHz mono source clips, cached and resumable.

``download`` runs ``apt-get download`` into a cache folder and skips a package whose .deb is
already there. ``decode_package`` streams the .deb's data archive (``dpkg-deb --fsys-tarfile``)
and keeps only the members the label mapping (``hearo.data.labels``) uses, so nothing else is
unpacked. A zip member that label rules reach into (0 A.D.'s ``public.zip``, members named
``<zip member>/<path in zip>``) is spooled to a temporary file and read with ``zipfile``. Each
file is decoded with soundfile (libsndfile reads WAV, FLAC and Ogg Vorbis, with or without a
file extension), or with ffmpeg where libsndfile cannot; averaged to mono, resampled to 16 kHz
with soxr and written to the cache as 16-bit WAV. A package whose decode index exists is not
decoded again.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from hearo.data.labels import BACKGROUND, LABEL_RULES, label_for
from hearo.data.sources import ALLOWED_PACKAGES, check_packages

__all__ = ["SAMPLE_RATE", "SourceClip", "decode_package", "download", "load_audio", "to_mono_16k"]

SAMPLE_RATE = 16_000
# Backgrounds (music, long ambiences) are cut: scenes use a few seconds of them.
MAX_BACKGROUND_S = 40.0
MAX_EVENT_S = 12.0
MIN_SOURCE_S = 0.05


@dataclass(frozen=True)
class SourceClip:
    """One decoded source file: ``wav`` in the cache, 16 kHz mono int16."""

    package: str
    member: str
    label: str
    licence: str
    wav: Path
    seconds: float


class DownloadError(RuntimeError):
    """apt-get could not download a package."""


def deb_path(cache: Path, package: str) -> Path | None:
    found = sorted((cache / "debs").glob(f"{package}_*.deb"))
    return found[-1] if found else None


def download(cache: Path, package: str) -> Path:
    """The cached .deb of ``package`` (allow-listed), downloaded with apt-get if absent."""
    check_packages([package])
    existing = deb_path(cache, package)
    if existing is not None:
        return existing
    folder = cache / "debs"
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True)
    found = deb_path(cache, package)
    if result.returncode != 0 or found is None:
        raise DownloadError(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
    return found


def to_mono_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """float32 mono at 16 kHz from [N] or [N, C] audio at ``rate``."""
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return mono


def load_audio(path: Path) -> np.ndarray:
    """A cached 16 kHz mono WAV as float32."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=False)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {rate}")
    return audio


def decode_package(cache: Path, package: str) -> tuple[list[SourceClip], int]:
    """(the package's labelled source clips, members that failed to decode). Cached per package."""
    check_packages([package])
    folder = cache / "decoded" / package
    index = folder / "index.json"
    if index.is_file():
        if not (folder / "copyright").is_file():
            _extract_copyright(cache, package, folder / "copyright")
        rows = json.loads(index.read_text())
        return [SourceClip(**{**row, "wav": folder / row["wav"]}) for row in rows["clips"]], rows["failed"]
    deb = download(cache, package)
    folder.mkdir(parents=True, exist_ok=True)
    clips: list[SourceClip] = []
    failed = 0

    def keep(name: str, label: str, data: bytes) -> None:
        nonlocal failed
        clip = _decode_clip(data, label, folder / f"{len(clips):05d}.wav")
        if clip is None:
            failed += 1
        else:
            clips.append(SourceClip(package, name, label, ALLOWED_PACKAGES[package], *clip))

    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            name = member.name.removeprefix("./")
            if name == f"usr/share/doc/{package}/copyright":
                handle = archive.extractfile(member)
                if handle is not None:
                    (folder / "copyright").write_bytes(handle.read())
                continue
            label = label_for(package, name)
            if label is None and not (name.endswith((".zip", ".pk3")) and _rules_reach_into(package, name)):
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            if label is not None:
                keep(name, label, handle.read())
                continue
            # zipfile needs to seek; the tar stream cannot, so the zip goes through a file.
            with tempfile.TemporaryFile(dir=folder) as spool:
                shutil.copyfileobj(handle, spool, 1 << 20)
                with zipfile.ZipFile(spool) as inner:
                    for info in inner.infolist():
                        inner_name = f"{name}/{info.filename}"
                        inner_label = None if info.is_dir() else label_for(package, inner_name)
                        if inner_label is not None:
                            keep(inner_name, inner_label, inner.read(info))
    proc.stdout.close()
    if proc.wait() != 0:
        raise DownloadError(f"dpkg-deb could not read {deb}")
    rows = [{**clip.__dict__, "wav": clip.wav.name} for clip in clips]
    index.write_text(json.dumps({"clips": rows, "failed": failed}))
    return clips, failed


def _rules_reach_into(package: str, archive_member: str) -> bool:
    return any(rule.package == package and rule.glob.startswith(archive_member + "/") for rule in LABEL_RULES)


def _read_any(data: bytes) -> tuple[np.ndarray, int] | None:
    """([N, C] float32 audio, rate) with libsndfile, else ffmpeg (mp3, WavPack ...); None if neither."""
    try:
        return sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    if shutil.which("ffmpeg") is None:  # optional: no package in the default build needs it
        return None
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"],
        input=data, capture_output=True, check=False,
    )
    if result.returncode != 0 or not result.stdout:
        return None
    return np.frombuffer(result.stdout, dtype=np.float32).reshape(-1, 1), SAMPLE_RATE


def _decode_clip(data: bytes, label: str, wav: Path) -> tuple[Path, float] | None:
    """Write ``data`` to ``wav`` as 16 kHz mono 16-bit: (wav, seconds), or None if unusable."""
    decoded = _read_any(data)
    if decoded is None:
        return None
    audio, rate = decoded
    limit = MAX_BACKGROUND_S if label == BACKGROUND else MAX_EVENT_S
    mono = to_mono_16k(audio[: int(limit * rate)], rate)
    if mono.size < MIN_SOURCE_S * SAMPLE_RATE or not np.any(mono):
        return None
    sf.write(str(wav), np.clip(mono, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return wav, mono.size / SAMPLE_RATE


def _extract_copyright(cache: Path, package: str, out: Path) -> None:
    """Just the package's copyright file (for a decode cache made before it was kept)."""
    member = f"./usr/share/doc/{package}/copyright"
    deb = download(cache, package)
    tar = subprocess.run(
        f"dpkg-deb --fsys-tarfile '{deb}' | tar -xO '{member}'", shell=True, capture_output=True, check=False
    )
    if tar.returncode == 0 and tar.stdout:
        out.write_bytes(tar.stdout)
