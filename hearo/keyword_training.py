"""``hearo spoken train``: the keyword network (``shared/spoken/keyword_net.py``) trained and
calibrated on synthesised speech, nothing downloaded.

Material (cached under ``--cache``, resumable):

- **Phrases**: every phrase of ``phrases.toml`` in the forms and short carriers a person uses
  (``POSITIVE_TEXTS``), spoken by espeak-ng (Korean and seven English accents, with every voice
  variant but the held-out ones), flite (kal, awb) and festival (kal, ked) at random speeds and
  pitches.
- **Everyday speech**: sentences of our own in Korean and English (``NEGATIVE_TEXTS``), shouted
  and excited ones too, and near misses ("도와줄게", "Thanks for your help"), in the same voices;
  as many again drawn from a household grammar (``hearo.everyday_sentences``), each one new, and
  as many babble utterances (``babble``).
  The sentences of the evaluation set (``hearo.spoken_eval``) are never used.
- **Real speech and household sound**: the training side of the data build's split only (game
  voice lines, Asterisk prompts, ambiences, music and household events): no source of the
  spoken evaluation set's normal audio or of its backgrounds.

The voices of the evaluation set's ``val`` split never speak here. Eight further espeak-ng
variants are held out of training as the **calibration** voices: each phrase's threshold is the
lowest at which it fires on at most ``CALIBRATION_FALSE_SHARE`` of the calibration voices'
everyday sentences and real-speech windows, and at least 0.5.

Training: multi-label binary cross-entropy, one output per phrase; each example is a 2 s window
with an utterance placed whole inside it (a phrase is never cut), a speed and pitch change of
0.85-1.18, shouting, muffling, a telephone band or a room on some, household sound at 0-25 dB
SNR on most, and a vocal tract length change (``warp_formants``) on half. A run checkpoints
every ``CHECKPOINT_EVERY`` steps under ``cache/kws`` and resumes there when started again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from scipy import signal

from hearo.data.packages import SAMPLE_RATE
from hearo.data.synth import shout, synthesise_speech
from hearo.everyday_sentences import everyday_sentence
from hearo.spoken_eval import EN_VAL, KO_VAL
from shared.augment import band_limit, muffle, room_impulse
from shared.spoken.keyword_net import N_MELS, PAD_RMS, WINDOW, KeywordCNN, KeywordNet, keyword_features, segment_windows
from shared.spoken.phrases import load_phrases
from shared.spoken.recognisers import common_syllables

__all__ = ["NEGATIVE_TEXTS", "POSITIVE_TEXTS", "TrainConfig", "babble", "build_corpus", "train_keyword_net", "warp_formants"]

SR = SAMPLE_RATE
console = Console()
CORPUS_VERSION = 5  # bumped when what the corpus holds changes, so a cached one is not reused

# (language, text, phrase keys it holds). Short on purpose: the whole utterance must fit in a 2 s window.
POSITIVE_TEXTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ko", "살려주세요", ("ko.salryeo_juseyo",)), ("ko", "살려 주세요!", ("ko.salryeo_juseyo",)),
    ("ko", "제발 살려주세요", ("ko.salryeo_juseyo",)), ("ko", "누가 좀 살려주세요", ("ko.salryeo_juseyo",)),
    ("ko", "아 살려주세요", ("ko.salryeo_juseyo",)), ("ko", "살려주세요 살려주세요", ("ko.salryeo_juseyo",)),
    ("ko", "도와주세요", ("ko.dowajuseyo",)), ("ko", "누가 좀 도와주세요", ("ko.dowajuseyo",)),
    ("ko", "여기 좀 도와주세요", ("ko.dowajuseyo",)), ("ko", "도와주세요!", ("ko.dowajuseyo",)),
    ("ko", "저 좀 도와주세요", ("ko.dowajuseyo",)), ("ko", "제발 도와주세요", ("ko.dowajuseyo",)),
    ("ko", "사람 살려", ("ko.saram_salryeo",)), ("ko", "사람 살려요!", ("ko.saram_salryeo",)),
    ("ko", "사람 살려 사람 살려", ("ko.saram_salryeo",)), ("ko", "여기 사람 살려", ("ko.saram_salryeo",)),
    ("ko", "여기요!", ("ko.yeogiyo",)), ("ko", "여기요", ("ko.yeogiyo",)), ("ko", "여기요 여기요!", ("ko.yeogiyo",)),
    ("ko", "119 불러주세요", ("ko.119",)), ("ko", "일일구 불러주세요", ("ko.119",)),
    ("ko", "빨리 119 불러주세요", ("ko.119",)), ("ko", "119 좀 불러주세요", ("ko.119",)),
    ("ko", "불이야!", ("ko.buriya",)), ("ko", "불이야", ("ko.buriya",)), ("ko", "불이야 불이야!", ("ko.buriya",)),
    ("ko", "숨을 못 쉬겠어요", ("ko.sumeul_mot_swigesseoyo",)), ("ko", "숨을 못 쉬겠어", ("ko.sumeul_mot_swigesseoyo",)),
    ("ko", "아 숨을 못 쉬겠어요", ("ko.sumeul_mot_swigesseoyo",)),
    ("ko", "갇혔어요", ("ko.gachyeosseoyo",)), ("ko", "여기 갇혔어요", ("ko.gachyeosseoyo",)),
    ("ko", "방에 갇혔어요!", ("ko.gachyeosseoyo",)), ("ko", "엘리베이터에 갇혔어요", ("ko.gachyeosseoyo",)),
    ("ko", "문 좀 열어주세요", ("ko.mun_jom_yeoreojuseyo",)), ("ko", "여기 문 좀 열어주세요", ("ko.mun_jom_yeoreojuseyo",)),
    ("ko", "제발 문 좀 열어주세요", ("ko.mun_jom_yeoreojuseyo",)),
    ("ko", "갇혔어요 문 좀 열어주세요", ("ko.gachyeosseoyo", "ko.mun_jom_yeoreojuseyo")),
    ("ko", "살려주세요 도와주세요", ("ko.salryeo_juseyo", "ko.dowajuseyo")),
    ("en", "Help!", ("en.help",)), ("en", "Help! Help!", ("en.help",)), ("en", "Help, please!", ("en.help",)),
    ("en", "Please, help!", ("en.help",)), ("en", "I need help!", ("en.help",)), ("en", "Help, anyone!", ("en.help",)),
    ("en", "Help me!", ("en.help_me",)), ("en", "Please help me!", ("en.help_me",)), ("en", "Help me, please!", ("en.help_me",)),
    ("en", "Someone help me!", ("en.help_me",)), ("en", "Oh god, help me!", ("en.help_me",)),
    ("en", "Somebody help!", ("en.somebody_help",)), ("en", "Somebody, help!", ("en.somebody_help",)),
    ("en", "Somebody help me!", ("en.somebody_help", "en.help_me")),
    ("en", "Call nine one one!", ("en.call_911",)), ("en", "Someone call nine one one!", ("en.call_911",)),
    ("en", "Call nine one one, please!", ("en.call_911",)), ("en", "Call nine one one now!", ("en.call_911",)),
    ("en", "Fire!", ("en.fire",)), ("en", "Fire! Fire!", ("en.fire",)), ("en", "Fire, get out!", ("en.fire",)),
    ("en", "I can't breathe!", ("en.cant_breathe",)), ("en", "I can't breathe", ("en.cant_breathe",)),
    ("en", "Help, I can't breathe!", ("en.cant_breathe", "en.help")),
    ("en", "I'm trapped!", ("en.trapped",)), ("en", "I'm trapped in here!", ("en.trapped",)),
    ("en", "Help, I'm trapped!", ("en.trapped", "en.help")),
    ("en", "Let me out!", ("en.let_me_out",)), ("en", "Let me out of here!", ("en.let_me_out",)),
    ("en", "Please let me out!", ("en.let_me_out",)), ("en", "I'm trapped, let me out!", ("en.trapped", "en.let_me_out")),
)

# Everyday speech, near misses first. Never the evaluation set's sentences (hearo.spoken_eval).
NEGATIVE_TEXTS: dict[str, tuple[str, ...]] = {
    "ko": (
        "도와줄게 이리 와", "제가 도와드릴까요", "살 좀 빼야겠다", "살림이 힘들어요", "사람이 정말 많다", "여기 있어요",
        "여기 앉아도 돼요", "여기서 기다려", "불 좀 켜 줄래", "불고기 해 먹자", "불을 끄고 자자", "문 좀 닫아 주세요",
        "문 열어 봐", "창문 닫아", "숨바꼭질하자", "숨겨 놓은 과자 어디 있어", "갈비 맛있겠다", "가처분 신청했대",
        "주세요 하나만 더", "커피 두 잔 주세요", "계산해 주세요", "잠깐만 기다려 주세요", "이거 좀 들어 줄래",
        "구십구 페이지 펴세요", "백십 번 버스 타", "일일이 다 확인했어", "사람들이 웃고 있어", "살살 해",
        "오늘 뉴스 봤어", "비가 많이 오네", "점심 먹으러 가자", "청소기 좀 돌려 줄래", "빨래 다 됐어", "물 끓었다",
        "텔레비전 소리 좀 줄여", "아빠 언제 와요", "숙제 도와줄 수 있어", "전화 좀 받아 줘", "택배 왔어요",
        "와 진짜 맛있다", "우리가 이겼다", "대박 골 넣었어", "빨리 와 늦었어", "조심해서 가", "잘 자 내일 봐",
        "이 노래 좋다", "할아버지 진지 드세요", "약 드실 시간이에요", "산책 갈까", "창문 열면 시원해",
        "열쇠 어디 뒀어", "엘리베이터 타고 올라와", "방 청소 했니", "여보세요 누구세요", "네 알겠습니다",
        "불이 너무 밝아", "불어 공부 해", "불이 들어왔네", "가쳐 놓은 물", "갇힌 느낌의 영화야", "가져 왔어요",
        "숨 쉬는 게 편해요", "숨을 크게 쉬어 봐", "못 가겠어요", "살려 둔 화분", "사람 사는 게 다 그래",
        "주세요 사장님", "문 좀 열어 봐도 돼", "문을 열어 놨어요", "여기 요리 정말 맛있다", "여기요 주문할게요",
        "도와주셔서 감사합니다", "도와줄 사람 있어", "구급상자 어디 있어", "일일이 설명해 줄게",
        # Words that sound like a phrase's end or its short forms: "-혔어요/-졌어요/-었어요", "-이야".
        "길이 많이 막혔어요", "가게 문이 닫혔어요", "약속이 잡혔어요", "많이 더워졌어요", "옷이 작아졌어요",
        "어제 거기 갔었어요", "생각이 같았어요", "다 가졌어요", "물이야 마셔", "둘이야 셋이야", "이건 풀이야",
        "그게 일이야", "이쪽 길이야", "줄이야 줄", "불어 봐", "부리야 이리 와", "살려고 하는 거야", "사려고 했어요",
        "숨었어요 찾아 봐", "못 쉬는 날이야", "열어 줄래요", "도와주려고 했어", "여기 요구르트 있어",
    ),
    "en": (
        "Can I help you with that?", "Thanks for your help.", "Help yourself to the salad.", "I'll help you later.",
        "The fire truck just went by.", "Light the fire in the fireplace.", "He was fired last week.",
        "Let me know when you're out.", "Let me out at the next stop.", "I'm trapped in meetings all day.",
        "Breathe in, breathe out.", "Take a deep breath.", "Call me at nine.", "It's nine o'one.",
        "Somebody left the lights on.", "Can somebody get the door?", "Nine one one Main Street.",
        "Dinner's almost ready.", "Did you feed the cat?", "Where did I put my glasses?", "The game starts at eight.",
        "Turn left at the corner.", "We're out of coffee.", "Grandma is coming on Sunday.", "Hold the door, please.",
        "Pass me the salt.", "That's a great idea!", "Wow, look at that!", "Come on, hurry up!", "We did it!",
        "Go, go, go!", "Stop it, you two!", "Wake up, it's late!", "Who's at the door?", "I'm home!",
        "Nice shot!", "Be careful on the stairs.", "The kettle is boiling.", "Put the kids to bed.",
        "Open the window, it's hot.", "The weather is lovely today.", "I'm going for a walk.", "Good night, sleep well.",
        "The washing machine is done.", "Let's watch a movie.", "Can you hear me now?", "Hello, who is this?",
        "Okay, see you soon.", "No way, that's amazing!", "Time for your medicine.",
        "Let me out of this plan.", "Let me outline the idea.", "He let me out early today.", "I can't believe you.",
        "I can't bring it.", "I can't reach the shelf.", "Help is on the way, relax.", "Fire away, I'm listening.",
        "The fire alarm test is at noon.", "I trapped the mouse in a box.", "Somebody has to help with dishes.",
        "Nine one one is on the sign.", "Call nine for the front desk.", "Help me find my keys later.",
        # Words that sound like a phrase: "I can't b...", "let me ...", "help/fire/trapped" look-alikes.
        "I can't be late again.", "I can't bear this heat.", "I can't leave yet.", "I can't read it.",
        "I can't breed these fish.", "Let me get that for you.", "Let me think about it.", "Let me in, it's cold.",
        "Hell no!", "Helpful, thanks.", "The help desk is closed.", "Fired up for the game!", "Tired? Go to bed.",
        "Five! Five!", "It's wrapped up.", "I'm wrapped in a blanket.", "I tapped it twice.", "Somebody's here.",
        "Somebody home?", "Call at nine.", "Nine one nine.", "Hey, out of here, cat!", "Breathe slowly, good.",
    ),
}

_EN_BASES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-us-nyc")
# Held out of training to set the thresholds on (the evaluation set's val voices are held out too).
CALIBRATION_VARIANTS = ("klatt4", "Alicia", "benjamin", "grandma", "m2", "steph", "Mr", "zac")
CALIBRATION_FALSE_SHARE = 0.002
CHECKPOINT_EVERY = 250  # steps between the resumable checkpoints under ``cache/kws``
_TRAIN_FLITE = ("kal", "awb")
# festival's diphone voices (Debian festival, festvox-kallpc16k, festvox-kdlpc16k): ked is a
# speaker no other engine has. Its HTS voice is slt, an evaluation voice, so it is never used.
_TRAIN_FESTIVAL = {"kal": "festvox-kallpc16k", "ked": "festvox-kdlpc16k"}  # voice: its Debian package
FESTIVAL_VOICES = Path("/usr/share/festival/voices/english")
_KO_SYLLABLES = tuple(common_syllables(final_consonants=True))
# flite's and festival's mean F0 drawn from low male to high female: few voices become many speakers.
PITCH_HZ = (85.0, 280.0)
_EN_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z", "ch",
              "sh", "th", "st", "br", "pl", "gr", "")
_EN_NUCLEI = ("a", "e", "i", "o", "u", "ai", "ee", "oo", "ou", "ea", "y")
_EN_CODAS = ("", "", "", "n", "t", "s", "l", "r", "m", "ck", "nd", "st", "ng", "p")


def babble(language: str, rng: np.random.Generator) -> str:
    """Random speech for the network to learn "not a phrase" from: in Korean, words of common
    Hangul syllables; in English, pseudo-words spelt from syllables. The sentence lists alone
    cover too few sounds, and everyday talk holds every sound the phrases are made of."""
    words = []
    for _ in range(int(rng.integers(2, 7))):
        if language == "ko":
            words.append("".join(str(rng.choice(_KO_SYLLABLES)) for _ in range(int(rng.integers(1, 5)))))
        else:
            words.append("".join(str(rng.choice(_EN_ONSETS)) + str(rng.choice(_EN_NUCLEI)) + str(rng.choice(_EN_CODAS))
                                 for _ in range(int(rng.integers(1, 4)))))
    return " ".join(words)


def _espeak_variants() -> list[str]:
    out = subprocess.run(["espeak-ng", "--voices=variant"], check=True, capture_output=True, text=True).stdout
    return sorted({line.split()[4].split("/", 1)[1] for line in out.splitlines()[1:] if len(line.split()) > 4})


def voices(split: str) -> dict[str, list[tuple[str, str]]]:
    """(engine, voice) per language for ``split`` (``train`` or ``calibration``); the evaluation
    set's val voices are never among them."""
    held_out = {v for v in KO_VAL} | {v.split("+")[1] for e, v in EN_VAL if e == "espeak-ng"} | {"Gene2"}
    variants = [v for v in _espeak_variants() if v not in held_out]
    chosen = [v for v in variants if (v in CALIBRATION_VARIANTS) == (split == "calibration")]
    ko = [("espeak-ng", f"ko+{v}") for v in chosen]
    en = [("espeak-ng", f"{b}+{v}") for b in _EN_BASES for v in chosen]
    if split == "train":
        # flite and festival have few voices: weight them up (flite a third of English, festival a sixth)
        en += [("flite", v) for v in _TRAIN_FLITE] * 200 + [("festival", v) for v in _TRAIN_FESTIVAL] * 100
    return {"ko": ko, "en": en}


def _trim(x: np.ndarray) -> np.ndarray:
    frames = x[: x.size // 160 * 160].reshape(-1, 160)
    level = np.sqrt(np.mean(frames ** 2, axis=1))
    loud = np.flatnonzero(level > level.max() * 0.03)
    if loud.size == 0:
        return x
    return x[max(loud[0] - 5, 0) * 160: min(loud[-1] + 6, level.size) * 160]


def _int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def _pack(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """int16 clips as one array and their lengths (what the caches store)."""
    return np.concatenate(clips), np.array([c.size for c in clips])


def _unpack(audio: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """``_pack``'s clips back as float32 in [-1, 1]; ``audio`` read once (an NpzFile reads an
    array again on every item access)."""
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [audio[a:b].astype(np.float32) / 32767 for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass(frozen=True)
class _Job:
    index: int
    language: str
    text: str
    keys: tuple[str, ...]
    engine: str
    voice: str


def _synthesise(job: _Job) -> tuple[int, np.ndarray | None]:
    rng = np.random.default_rng(job.index)
    speech = _trim(synthesise_speech(job.engine, job.voice, job.text, rng, pitch_hz=PITCH_HZ))
    limit = WINDOW - int(0.1 * SR)
    if speech.size > limit:
        if not job.keys:  # everyday speech: a 2 s crop of it is still everyday speech
            return job.index, _int16(speech)
        if speech.size > 1.35 * limit:
            return job.index, None
        speech = signal.resample(speech, limit).astype(np.float32)
    return job.index, _int16(speech)


def _check_synthesisers(by_language: dict[str, list[tuple[str, str]]]) -> None:
    """RuntimeError naming the Debian packages when a synthesiser or voice the split uses is missing."""
    engines = {engine for pairs in by_language.values() for engine, _ in pairs}
    missing = [package for engine, tool, package in (("espeak-ng", "espeak-ng", "espeak-ng"), ("flite", "flite", "flite"),
                                                     ("festival", "text2wave", "festival"))
               if engine in engines and shutil.which(tool) is None]
    missing += [package for voice, package in _TRAIN_FESTIVAL.items()
                if "festival" in engines and not (FESTIVAL_VOICES / f"{voice}_diphone").is_dir()]
    if missing:
        raise RuntimeError(f"speech synthesis needs Debian packages that are not installed: apt-get install {' '.join(missing)}")


def build_corpus(cache: Path, split: str, per_text: int, workers: int = 2) -> Path:
    """Synthesise ``split``'s utterances into ``cache/kws/<split>.npz`` (kept when present)."""
    out = cache / "kws" / f"{split}-{per_text}-{CORPUS_VERSION}.npz"
    if out.is_file():
        return out
    by_language = voices(split)
    _check_synthesisers(by_language)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(["train", "calibration"].index(split))
    jobs: list[_Job] = []
    texts = [(lang, text, keys) for lang, text, keys in POSITIVE_TEXTS]
    texts += [(lang, text, ()) for lang, items in NEGATIVE_TEXTS.items() for text in items]
    for lang, text, keys in texts:
        pool = by_language[lang]
        for _ in range(per_text if keys else max(per_text // 2, 1)):
            engine, voice = pool[int(rng.integers(len(pool)))]
            jobs.append(_Job(len(jobs), lang, text, keys, engine, voice))
    listed = sum(1 for j in jobs if not j.keys)
    for lang in ("ko", "en"):
        pool = by_language[lang]
        for make in (babble, everyday_sentence):  # as many of each as the listed sentences' renditions
            for _ in range(listed // 2):
                engine, voice = pool[int(rng.integers(len(pool)))]
                jobs.append(_Job(len(jobs), lang, make(lang, rng), (), engine, voice))
    started = time.time()
    with Pool(workers) as workers_pool:
        audio = dict(workers_pool.imap_unordered(_synthesise, jobs, chunksize=32))
    kept = [j for j in jobs if audio[j.index] is not None]
    packed, lengths = _pack([a for a in (audio[j.index] for j in kept) if a is not None])
    np.savez(
        out,
        audio=packed,
        lengths=lengths,
        keys=np.array(["|".join(j.keys) for j in kept]),
        voices=np.array([f"{j.engine}:{j.voice}" for j in kept]),
        texts=np.array([j.text for j in kept]),
    )
    console.print(f"{split}: {len(kept)} utterances of {len(jobs)} in {time.time() - started:.0f} s -> {out}")
    return out


@dataclass(frozen=True)
class Corpus:
    utterances: list[np.ndarray]
    targets: np.ndarray  # [N, phrases] 0/1
    texts: list[str]

    @classmethod
    def load(cls, path: Path, phrase_keys: Sequence[str]) -> "Corpus":
        data = np.load(path)
        utterances = _unpack(data["audio"], data["lengths"])
        index = {k: i for i, k in enumerate(phrase_keys)}
        targets = np.zeros((len(utterances), len(phrase_keys)), dtype=np.float32)
        for n, keys in enumerate(data["keys"]):
            for key in str(keys).split("|") if str(keys) else []:
                targets[n, index[key]] = 1.0
        return cls(utterances, targets, [str(t) for t in data["texts"]])


def household_material(cache: Path, dataset_cache: Path) -> dict[str, list[np.ndarray]]:
    """Training-side backgrounds and real speech of the data build (``cache/kws/material.npz``):
    ``speech`` (game voice lines, Asterisk prompts) and ``sound`` (ambience, music, events),
    each source cut to at most 10 s."""
    out = cache / "kws" / "material.npz"
    if not out.is_file():
        from hearo.data.household import part_sources, scene_pools

        pools = scene_pools(part_sources(dataset_cache, "training"))
        speech = [s.audio for s in pools.speech if s.recipe != "tts"]
        sound = [s.audio for s in pools.music + pools.ambience + pools.events]
        arrays: dict[str, Any] = {}
        for name, items in (("speech", speech), ("sound", sound)):
            arrays[f"{name}_audio"], arrays[f"{name}_lengths"] = _pack([_int16(a[: 10 * SR]) for a in items if a.size >= SR // 2])
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **arrays)
    data = np.load(out)
    material: dict[str, list[np.ndarray]] = {}
    for name in ("speech", "sound"):
        material[name] = _unpack(data[f"{name}_audio"], data[f"{name}_lengths"])
    return material


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-9)


def _crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if x.size >= n:
        lo = int(rng.integers(x.size - n + 1))
        return x[lo: lo + n]
    return np.resize(x, n) if rng.random() < 0.5 else np.pad(x, (0, n - x.size))


def _voice(x: np.ndarray, rng: np.random.Generator, limit: int) -> np.ndarray:
    """A speaker and speed change (resampling by 0.85-1.18, never past ``limit`` samples), then
    shouting, muffling or a telephone band on some."""
    factor = rng.uniform(0.85, 1.18)
    n = min(max(int(x.size / factor), 160), limit)
    x = signal.resample(x, n).astype(np.float32) if n != x.size else x
    r = rng.random()
    if r < 0.25:
        x = shout(x, rng)[: limit]
    elif r < 0.4:
        x = muffle(x, rng)
    elif r < 0.55:
        x = band_limit(x, rng)
    return x


def make_window(utterance: np.ndarray, positive: bool, material: dict[str, list[np.ndarray]],
                rng: np.random.Generator) -> np.ndarray:
    """One 2 s training window: the utterance (a phrase whole inside), over household sound."""
    limit = WINDOW - int(0.05 * SR)
    if utterance.size > limit and not positive:
        # Half from its start, as the gate cuts a segment: "Let me out at the corner" begins with a phrase.
        utterance = utterance[:limit] if rng.random() < 0.5 else _crop(utterance, limit, rng)
    speech = _voice(utterance, rng, limit)
    if rng.random() < 0.3:
        rir = room_impulse(rng, rng.uniform(0.2, 0.8), rng.uniform(0.3, 1.0))
        speech = signal.fftconvolve(speech, rir)[: limit].astype(np.float32)
    window = np.zeros(WINDOW, dtype=np.float32)
    lo = int(rng.integers(WINDOW - speech.size + 1))
    window[lo: lo + speech.size] = speech / (np.max(np.abs(speech)) + 1e-9) * 0.3
    return _add_bed(window, material, rng, speech_rms=_rms(speech / (np.max(np.abs(speech)) + 1e-9) * 0.3))


def _add_bed(window: np.ndarray, material: dict[str, list[np.ndarray]], rng: np.random.Generator,
             speech_rms: float) -> np.ndarray:
    r = rng.random()
    if r < 0.2:
        bed = rng.normal(0, 1, WINDOW).astype(np.float32)
        bed *= PAD_RMS * rng.uniform(1, 30) / _rms(bed)
    else:
        pool = material["speech"] if r < 0.35 else material["sound"]
        bed = _crop(pool[int(rng.integers(len(pool)))], WINDOW, rng)
        bed = bed / _rms(bed) * speech_rms * 10 ** (-rng.uniform(0, 25) / 20)
    out = window + bed
    out *= 10 ** (rng.uniform(-30, 0) / 20) * 0.9 / (np.max(np.abs(out)) + 1e-9)
    return out.astype(np.float32)


def negative_window(material: dict[str, list[np.ndarray]], rng: np.random.Generator) -> np.ndarray:
    """A window of real speech or household sound alone."""
    pool = material["speech"] if rng.random() < 0.6 else material["sound"]
    x = _crop(pool[int(rng.integers(len(pool)))], WINDOW, rng)
    x = x / (np.max(np.abs(x)) + 1e-9) * 0.3
    return _add_bed(x.astype(np.float32), material, rng, speech_rms=_rms(x)) if rng.random() < 0.5 else x


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3
    positive_share: float = 0.45
    real_negative_share: float = 0.15
    per_text: int = 80
    seed: int = 0


def _batch(corpus: Corpus, material: dict[str, list[np.ndarray]], config: TrainConfig,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    positives = np.flatnonzero(corpus.targets.sum(1) > 0)
    negatives = np.flatnonzero(corpus.targets.sum(1) == 0)
    windows, targets = [], []
    for _ in range(config.batch):
        r = rng.random()
        if r < config.positive_share:
            i = int(rng.choice(positives))
            windows.append(make_window(corpus.utterances[i], True, material, rng))
            targets.append(corpus.targets[i])
        elif r < config.positive_share + config.real_negative_share:
            windows.append(negative_window(material, rng))
            targets.append(np.zeros(corpus.targets.shape[1], dtype=np.float32))
        else:
            i = int(rng.choice(negatives))
            windows.append(make_window(corpus.utterances[i], False, material, rng))
            targets.append(corpus.targets[i])
    x = keyword_features(torch.from_numpy(np.stack(windows)))
    return warp_formants(x, rng), torch.from_numpy(np.stack(targets))


def _mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


# Centre of each of the network's 64 bins (pairs of Kaldi's 128, 20 Hz to 8 kHz) in mel.
_BIN_MEL = np.linspace(_mel(np.array(20.0)), _mel(np.array(8000.0)), 2 * N_MELS + 2)[1:-1].reshape(N_MELS, 2).mean(1)


def warp_formants(features: torch.Tensor, rng: np.random.Generator, share: float = 0.5,
                  factor: tuple[float, float] = (0.85, 1.15)) -> torch.Tensor:
    """Vocal tract length perturbation on ``[B, 1, T, 64]`` features: for ``share`` of the
    examples, every frequency scaled by a factor drawn from ``factor`` (the bins re-read at
    ``f / factor``), the pitch and the timing left as they are. Resampling (``_voice``) moves
    formants, pitch and speed together; this parts them, so a voice with another vocal tract at
    the same pitch (flite's slt is not a pitched-up kal) is still a voice the network has heard."""
    out = features.clone()
    centres_hz = 700.0 * np.expm1(_BIN_MEL / 1127.0)
    for b in np.flatnonzero(rng.random(features.shape[0]) < share):
        source = np.interp(_mel(centres_hz / rng.uniform(*factor)), _BIN_MEL, np.arange(N_MELS))
        lo = np.clip(np.floor(source).astype(int), 0, N_MELS - 1)
        hi = np.minimum(lo + 1, N_MELS - 1)
        w = torch.from_numpy((source - lo).astype(np.float32))
        out[b] = features[b][..., lo] * (1 - w) + features[b][..., hi] * w
    return out


def _segment_scores(net: KeywordNet, audio: np.ndarray) -> np.ndarray:
    return net.window_scores(segment_windows(audio)).max(axis=0)


def calibrate(net: KeywordNet, corpus: Corpus, material: dict[str, list[np.ndarray]], seed: int = 1) -> dict[str, Any]:
    """Per-phrase thresholds on the calibration voices (see the module docstring); returns the
    thresholds and the calibration figures."""
    rng = np.random.default_rng(seed)
    scores, targets = [], []
    for i, utterance in enumerate(corpus.utterances):
        positive = corpus.targets[i].sum() > 0
        segment = make_window(utterance, positive, material, rng) if rng.random() < 0.7 else utterance
        scores.append(_segment_scores(net, segment))
        targets.append(corpus.targets[i])
    for _ in range(len(corpus.utterances) // 2):
        scores.append(_segment_scores(net, negative_window(material, rng)))
        targets.append(np.zeros(corpus.targets.shape[1], dtype=np.float32))
    s, t = np.stack(scores), np.stack(targets)
    negative = t.sum(1) == 0
    thresholds, figures = {}, {}
    for k, key in enumerate(net.phrase_keys):
        bound = float(np.quantile(s[negative, k], 1 - CALIBRATION_FALSE_SHARE))
        threshold = float(min(max(0.5, bound + 1e-3), 0.99))
        hits = s[t[:, k] > 0, k] >= threshold
        thresholds[key] = round(threshold, 4)
        figures[key] = {"threshold": round(threshold, 4), "recall": round(float(hits.mean()), 3) if hits.size else None,
                        "positives": int(hits.size), "false_share": round(float((s[negative, k] >= threshold).mean()), 4)}
    return {"thresholds": thresholds, "figures": figures, "negatives": int(negative.sum())}


@dataclass(frozen=True)
class _Run:
    """What a training run carries from step to step, saved and restored as one checkpoint."""

    model: KeywordCNN
    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator

    def save(self, path: Path, step: int, running: float) -> None:
        """Write the checkpoint after ``step`` (atomically: a run killed while saving keeps the last one)."""
        partial = path.with_suffix(".partial")
        torch.save({"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                    "schedule": self.schedule.state_dict(), "rng": self.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "step": step, "running": running}, partial)
        partial.replace(path)

    def resume(self, path: Path) -> tuple[int, float]:
        """Restore the checkpoint; returns the next step and the running loss."""
        saved = torch.load(path, weights_only=False)
        self.model.load_state_dict(saved["model"])
        self.optimiser.load_state_dict(saved["optimiser"])
        self.schedule.load_state_dict(saved["schedule"])
        self.rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        return int(saved["step"]) + 1, float(saved["running"])


def train_keyword_net(cache: Path, dataset_cache: Path, out: Path, config: TrainConfig = TrainConfig()) -> dict[str, Any]:
    """Build the corpora, train, calibrate, and write the weights file to ``out``."""
    torch.manual_seed(config.seed)
    phrase_keys = [p.key for p in load_phrases()]
    train = Corpus.load(build_corpus(cache, "train", config.per_text), phrase_keys)
    calibration = Corpus.load(build_corpus(cache, "calibration", max(config.per_text // 8, 4)), phrase_keys)
    material = household_material(cache, dataset_cache)
    console.print(f"train {len(train.utterances)} utterances, calibration {len(calibration.utterances)}, "
                  f"real speech {len(material['speech'])}, household sound {len(material['sound'])}")
    model = KeywordCNN(len(phrase_keys))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    rng = np.random.default_rng(config.seed)
    started, running, first = time.time(), 0.0, 1
    text_hash = hashlib.sha1(json.dumps([POSITIVE_TEXTS, NEGATIVE_TEXTS], ensure_ascii=False).encode()).hexdigest()[:12]
    # A checkpoint is resumed only by the same configuration, corpus and training code.
    code = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()
    run_key = hashlib.sha1(f"{config}|{CORPUS_VERSION}|{text_hash}|{code}".encode()).hexdigest()[:12]
    checkpoint = cache / "kws" / f"checkpoint-{run_key}.pt"
    run = _Run(model, optimiser, schedule, rng)
    if checkpoint.is_file():  # resume a run that was stopped, from its last checkpoint
        first, running = run.resume(checkpoint)
        console.print(f"resuming at step {first} from {checkpoint}")
    for step in range(first, config.steps + 1):
        model.train()
        x, y = _batch(train, material, config, rng)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 100 == 0:
            console.print(f"step {step}/{config.steps} loss {running:.4f} ({time.time() - started:.0f} s)")
        if step % CHECKPOINT_EVERY == 0 and step < config.steps:
            run.save(checkpoint, step, running)
    state: dict[str, Any] = {
        "phrase_keys": phrase_keys, "thresholds": {k: 0.5 for k in phrase_keys},
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    net = KeywordNet(state)
    calibration_report = calibrate(net, calibration, material)
    state["thresholds"] = calibration_report["thresholds"]
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    state["notes"] = {
        "steps": config.steps, "batch": config.batch, "lr": config.lr, "per_text": config.per_text,
        "train_utterances": len(train.utterances), "calibration_utterances": len(calibration.utterances),
        "train_seconds": round(time.time() - started), "texts_sha1": text_hash,
        "calibration": calibration_report["figures"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    checkpoint.unlink(missing_ok=True)
    return state["notes"]
