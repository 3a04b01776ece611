"""Everyday household sentences from a small template grammar, in Korean and English: the keyword
network's "not a phrase" speech (``hearo.keyword_training``).

A fixed list of sentences, however well chosen, is heard in forty voices and learned by heart;
the network then fires on the first everyday sentence it has not heard that shares a syllable
run with a phrase ("불이야" in "골이야", "I can't breathe" in "I can't believe it"). Real
sentences built from a household vocabulary put the phrases' own sounds (불, 살, 문, 숨, 도와,
help, fire, out, can't) into thousands of other contexts. Nothing here is a distress phrase: the
words that make one (살려, 도와주세요, 갇혔, "help me", "let me out", ...) are never combined,
and ``tests/unit/test_everyday_sentences.py`` checks it over many draws.
"""

from __future__ import annotations

import numpy as np

__all__ = ["everyday_sentence"]

_KO_THINGS = (
    "물", "불", "풀", "줄", "길", "문", "창문", "의자", "책", "가방", "휴대폰", "열쇠", "우유", "빵", "사과", "김치",
    "라면", "커피", "차", "옷", "신발", "우산", "시계", "컵", "숟가락", "약", "이불", "베개", "리모컨", "쓰레기",
    "과자", "고기", "생선", "계란", "밥", "국", "돈", "편지", "택배", "사진", "꽃", "강아지", "고양이", "자전거",
    "냉장고", "세탁기", "청소기", "텔레비전", "선풍기", "에어컨", "불고기", "수박", "양말", "모자", "안경", "숙제",
)
_KO_PEOPLE = (
    "엄마", "아빠", "할머니", "할아버지", "언니", "오빠", "누나", "형", "동생", "선생님", "친구", "아기", "이웃집 아저씨",
    "사장님", "삼촌", "이모", "택배 기사님", "손님",
)
_KO_PLACES = ("학교", "시장", "병원", "회사", "공원", "마트", "교회", "할머니 댁", "도서관", "은행", "약국", "미용실",
              "부엌", "거실", "방", "화장실", "베란다", "놀이터", "식당", "수영장")
_KO_TIMES = ("오늘", "내일", "어제", "아침에", "저녁에", "이따가", "주말에", "지금", "아까", "요즘", "다음 주에", "밤에")
_KO_STATES = ("좋아요", "많아요", "없어요", "있어요", "차가워요", "뜨거워요", "커요", "작아요", "시끄러워요", "조용해요",
              "예뻐요", "이상해요", "필요해요", "맛있어요", "비싸요", "싸요", "더러워요", "깨끗해요", "무거워요", "가벼워요",
              "다 떨어졌어요", "고장 났어요", "따뜻해졌어요", "작아졌어요", "젖었어요", "말랐어요", "식었어요")
_KO_ACTS = ("샀어요", "먹었어요", "찾았어요", "잃어버렸어요", "가져왔어요", "닫았어요", "열었어요", "씻었어요", "봤어요",
            "좋아해요", "줄래", "가져다줄래", "치워 줄래", "꺼 줄래", "켜 줄래", "사 올게", "만들었어", "바꿨어요",
            "정리했어요", "빌렸어요", "보냈어요", "받았어요", "놓고 왔어요", "챙겼어", "버렸어요", "고쳤어요")
_KO_GOES = ("가요", "갔어요", "갈 거예요", "갔었어요", "다녀왔어요", "가자", "가야 돼", "왔어요", "들렀어요", "있었어요")
_KO_DOINGS = ("왔어요", "전화했어요", "자고 있어요", "밥 먹고 있어요", "기다려요", "웃었어요", "불렀어요", "화났어요",
              "노래해요", "운동하러 갔어요", "청소하고 있어요", "책 읽고 있어요", "일하고 있어요", "놀러 왔어요",
              "늦게 와요", "주무세요", "씻고 있어요", "텔레비전 봐요")
_KO_ASKS = ("어디 있어", "봤어", "먹을래", "몇 개 있어", "어때", "얼마예요", "누구 거야", "언제 샀어", "또 사야 돼")

_EN_THINGS = (
    "keys", "phone", "remote", "kettle", "laundry", "dishes", "milk", "bread", "coffee", "window", "door", "lights",
    "stove", "oven", "fridge", "car", "bike", "dog", "cat", "plants", "garden", "trash", "mail", "package", "shoes",
    "jacket", "umbrella", "glasses", "book", "homework", "radio", "heater", "fan", "blanket", "pillow", "soup",
    "salad", "cake", "tea", "fireplace", "firewood", "helmet", "tap", "sink", "towels", "wallet", "camera",
)
_EN_PEOPLE = ("I", "We", "You", "She", "He", "They", "Grandpa", "Grandma", "Mom", "Dad", "The kids", "Our neighbour",
              "Your brother", "My sister", "The plumber", "Uncle Tom")
_EN_DID = ("found", "lost", "cleaned", "moved", "washed", "fixed", "bought", "broke", "opened", "closed", "brought",
           "painted", "sold", "checked", "dropped", "forgot", "borrowed", "returned", "packed", "watered")
_EN_WHEN = ("today", "yesterday", "again", "later", "this morning", "last night", "on Monday", "before dinner",
            "upstairs", "in the kitchen", "after work", "at noon", "for an hour", "twice", "at the weekend")
_EN_ASK = ("pass", "bring", "find", "hold", "check", "open", "close", "turn off", "turn on", "fix", "wash", "carry",
           "move", "clean", "dry", "fold", "warm up", "put away")
_EN_STATE = ("broken", "empty", "full", "cold", "warm", "new", "dirty", "clean", "too loud", "still wet", "ready",
             "on the table", "in the car", "out of stock", "upstairs", "next to the sink", "on sale", "helpful")
_EN_LETS = ("eat", "go out", "watch TV", "take a walk", "call grandma", "clean up", "start", "play cards", "sit outside",
            "order pizza", "bake a cake", "do the homework", "get some fresh air", "light the candles")
_EN_CANT = ("find", "open", "reach", "carry", "fix", "hear", "see", "believe", "remember", "lift", "wait for",
            "stand", "move")


def _batchim(word: str) -> bool:
    last = word[-1]
    return "가" <= last <= "힣" and (ord(last) - 0xAC00) % 28 != 0


def _ko(rng: np.random.Generator) -> str:
    def pick(items: tuple[str, ...]) -> str:
        return str(rng.choice(items))

    thing, person = pick(_KO_THINGS), pick(_KO_PEOPLE)
    subject = thing + ("이" if _batchim(thing) else "가")
    obj = thing + ("을" if _batchim(thing) else "를")
    templates = (
        lambda: f"{subject} {pick(_KO_STATES)}",
        lambda: f"{pick(_KO_TIMES)} {obj} {pick(_KO_ACTS)}",
        lambda: f"{obj} {pick(_KO_ACTS)}",
        lambda: f"{pick(_KO_TIMES)} {pick(_KO_PLACES)}에 {pick(_KO_GOES)}",
        lambda: f"{person}{'이' if _batchim(person) else '가'} {pick(_KO_DOINGS)}",
        lambda: f"{person} {thing} {pick(_KO_ASKS)}",
        lambda: f"{pick(_KO_PLACES)}에 {subject} {pick(_KO_STATES)}",
        lambda: f"{pick(_KO_TIMES)} {person}{'이랑' if _batchim(person) else '랑'} {pick(_KO_PLACES)}에 {pick(_KO_GOES)}",
    )
    return templates[int(rng.integers(len(templates)))]()


def _en(rng: np.random.Generator) -> str:
    def pick(items: tuple[str, ...]) -> str:
        return str(rng.choice(items))

    thing = pick(_EN_THINGS)
    templates = (
        lambda: f"{pick(_EN_PEOPLE)} {pick(_EN_DID)} the {thing} {pick(_EN_WHEN)}.",
        lambda: f"Can you {pick(_EN_ASK)} the {thing}?",
        lambda: f"Where is the {thing}?",
        lambda: f"The {thing} is {pick(_EN_STATE)}.",
        lambda: f"Let's {pick(_EN_LETS)} {pick(_EN_WHEN)}.",
        lambda: f"I can't {pick(_EN_CANT)} the {thing}.",
        lambda: f"Please don't {pick(_EN_ASK)} the {thing} {pick(_EN_WHEN)}.",
        lambda: f"{pick(_EN_PEOPLE)} {pick(_EN_DID)} it, so let me {pick(_EN_ASK)} the {thing}.",
    )
    return templates[int(rng.integers(len(templates)))]()


def everyday_sentence(language: str, rng: np.random.Generator) -> str:
    """One household sentence in ``language`` (``ko`` or ``en``)."""
    if language not in ("ko", "en"):
        raise ValueError(f"no everyday sentences for language {language!r}")
    return _ko(rng) if language == "ko" else _en(rng)
