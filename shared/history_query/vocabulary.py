"""The words ``hearo ask`` understands: the one reviewed table, kept apart from the parser.

Each entry is ``(pattern, meaning)``. Patterns are regular expressions over the question in
lower case with its spaces collapsed to one. Korean patterns are stems matched at the start of
a word (particles and endings follow: 어제는, 지난주에, 월요일부터); English ones are whole
words. Within a table the first entry that matches wins and consumes its words, so a longer
phrase goes before the words inside it ("지난 주말" before "주말", "fire department" before
"fire", "call for help" before "called").

Review rule: a word goes in only if, in a question about what the device heard, it nearly
always means that. "불" alone is too often "light" (불이 꺼졌어) or a prefix (불편, 불안), so
only its fire forms are listed. Review changes like ``shared/spoken/phrases.toml``.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.incident_state import IncidentState
from shared.taxonomy import Agency

# --- time -------------------------------------------------------------------------------------

# Korean number words for a clock hour ("세 시", "열한 시").
KO_HOURS: Mapping[str, int] = {
    "한": 1, "두": 2, "세": 3, "네": 4, "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8, "아홉": 9,
    "열": 10, "열한": 11, "열두": 12,
}  # fmt: skip

# Parts of the day as (start hour, end hour) on their day; an end past 24 is the next morning.
DAY_PARTS: Mapping[str, tuple[int, int]] = {
    "dawn": (0, 6),
    "morning": (6, 12),
    "afternoon": (12, 18),
    "evening": (18, 22),
    "night": (18, 30),  # 어젯밤, last night: 18:00 to 06:00 the next day
}

# A clock hour said with a part of the day: how to read it on a 24-hour clock (docs/ask.md).
#   am: 3 → 03:00, 12 → 00:00;  pm: 3 → 15:00, 12 → 12:00;
#   night: 6-11 → 18:00-23:00, 12 → 00:00 and 1-5 → 01:00-05:00 after midnight.
HOUR_MARKERS: tuple[tuple[str, str], ...] = (
    (r"새벽|오전|아침|a\.?m\.?|in the morning", "am"),
    (r"오후|저녁|p\.?m\.?|in the (?:afternoon|evening)", "pm"),
    (r"밤|at night", "night"),
)

# Clock times said as words, on a 24-hour clock.
CLOCK_WORDS: tuple[tuple[str, tuple[int, str]], ...] = ((r"자정|midnight", (12, "night")), (r"정오|noon|midday", (12, "pm")))
# Before an English clock time: "at 3", "around 3:30".
CLOCK_BEFORE: str = r"at|around|about|near"
# A clock time is the middle of a window this wide on each side ("at 3am": 02:00-04:00).
CLOCK_WINDOW_MINUTES = 60

# Days as an offset from today.
DAYS: tuple[tuple[str, int], ...] = (
    (r"그저께|그제|엊그제|the day before yesterday|day before yesterday", -2),
    (r"어제|어저께|yesterday", -1),
    (r"오늘|today", 0),
)

# A day and part of the day in one word.
DAY_AND_PART: tuple[tuple[str, tuple[int, str]], ...] = (
    (r"어젯밤|간밤|지난밤|last night|overnight", (-1, "night")),
    (r"오늘 ?밤|tonight", (0, "night")),
    (r"오늘 ?아침|this morning", (0, "morning")),
    (r"오늘 ?오후|this afternoon", (0, "afternoon")),
    (r"오늘 ?저녁|this evening", (0, "evening")),
    (r"오늘 ?새벽", (0, "dawn")),
)

PARTS: tuple[tuple[str, str], ...] = (
    (r"새벽|early (?:in the )?morning|small hours", "dawn"),
    (r"아침|오전|morning", "morning"),
    (r"오후|afternoon", "afternoon"),
    (r"저녁|evening", "evening"),
    (r"밤|night", "night"),
)

WEEKDAYS: tuple[tuple[str, int], ...] = (
    (r"월요일|월욜|monday", 0),
    (r"화요일|화욜|tuesday", 1),
    (r"수요일|수욜|wednesday", 2),
    (r"목요일|목욜|thursday", 3),
    (r"금요일|금욜|friday", 4),
    (r"토요일|토욜|saturday", 5),
    (r"일요일|일욜|sunday", 6),
)

# Weekends: "last" is Saturday-Sunday of the week before this (Monday-to-Sunday) one;
# "recent" is this week's once it has begun, else that one. A question about history asked
# on a Wednesday means the weekend just gone by "이번 주말" and "this weekend", as by "주말".
WEEKENDS: tuple[tuple[str, str], ...] = (
    (r"(?:지난|저번) ?주 ?주말|(?:지난|저번) ?주말|last weekend|the weekend before", "last"),
    (r"이번 ?주 ?주말|이번 ?주말|this weekend|주말|(?:the )?weekend", "recent"),
)

# Weeks as an offset from this week (Monday to Sunday).
WEEKS: tuple[tuple[str, int], ...] = (
    (r"지지난 ?주(?![말일])|the week before last", -2),
    (r"(?:지난|저번) ?주(?![말일])|last week|previous week", -1),
    (r"이번 ?주(?![말일])|금주|this week", 0),
)

MONTHS: tuple[tuple[str, int], ...] = (
    (r"(?:지난|저번) ?달|last month|previous month", -1),
    (r"이번 ?달|this month", 0),
)

# "since ...": from the start of what is named to now. English before it, Korean after it.
SINCE_BEFORE: str = r"since"
SINCE_AFTER: str = r"부터|이후"

# "최근 3일", "last 3 days", "past 24 hours": a span back from now, in hours per unit.
RECENT_PREFIX: str = r"최근|지난|last|past|previous"
# ... or the number and unit followed by these ("3일 동안").
RECENT_SUFFIX: str = r"동안|사이"
RECENT_UNITS: tuple[tuple[str, int], ...] = (
    (r"시간|hours?|hrs?", 1),
    (r"일|days?", 24),
    (r"주일?|weeks?", 24 * 7),
)
# Words that are a span by themselves (with 최근/지난, or 동안 after them).
RECENT_WORDS: tuple[tuple[str, int], ...] = (
    (r"(?:최근|지난) ?하루|하루 ?(?:동안|사이)|(?:the )?past day", 24),
    (r"(?:최근|지난) ?이틀|이틀 ?(?:동안|사이|간)", 48),
    (r"(?:최근|지난) ?사흘|사흘 ?(?:동안|사이|간)", 72),
    (r"(?:최근|지난|요) ?며칠|며칠 ?(?:동안|사이|간)|(?:the )?(?:last|past) (?:few|couple of) days", 72),
    (r"(?:최근|지난) ?(?:일주일|한 ?주)|일주일 ?(?:동안|사이|간)|(?:the )?past week", 24 * 7),
    (r"(?:최근|지난) ?한 ?달|한 ?달 ?(?:동안|사이|간)|(?:the )?past month", 24 * 30),
)
# Alone ("최근에 무슨 일 있었어?", "anything lately?"): the last seven days.
RECENTLY: str = r"최근|요즘|요새|recently|lately"
RECENTLY_HOURS = 24 * 7
# The longest span a question may name (a larger one is not understood): a year.
MAX_SPAN_HOURS = 24 * 366

# --- what -------------------------------------------------------------------------------------

# Words for a class key of shared/taxonomy.py. A word may name two classes: a person who
# collapsed (쓰러지다) is a fall to the detector and often a medical emergency to a guardian.
CLASS_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # compounds first, so their parts are not read again
    (r"전기 ?사고|감전 ?사고|전기 ?화재|electrical (?:accident|fire)s?", ("electric",)),
    (r"가스 ?경보|일산화탄소|gas alarms?|co alarms?|carbon monoxide", ("gas",)),
    (r"화재 ?경보|연기 ?경보|fire alarms?|smoke alarms?|smoke detectors?", ("fire",)),
    (r"(?:call|calls|called|calling|cry|cries|cried|crying|shout\w*|yell\w*|scream\w*) for help", ("help",)),
    (r"화재|불이 ?났|불났|불 났|불길|불꽃|불이야|연기|타는 냄새|fires?|smoke|burning", ("fire",)),
    (r"도둑|침입|강도|유리|비명|폭행|소리 ?(?:를 )?지르|누가 들어|break-?ins?|broke in|burglar\w*|intruders?|"
     r"thie(?:f|ves)|robbery|glass|screams?|screaming|assault", ("crime",)),
    (r"갇[혀히힌]|고립|두드리|두드림|쾅쾅|trapped|stuck|locked in|banging|knocking", ("trapped",)),
    (r"전기|감전|누전|합선|스파크|electric\w*|shocks?|short circuit|sparks?", ("electric",)),
    (r"가스|gas", ("gas",)),
    (r"쓰러|collaps\w*", ("accident", "medical")),
    (r"낙상|넘어지|넘어졌|넘어진|떨어지셨|떨어졌|떨어진|사고|충돌|falls?|fell|fallen|falling|tripped|crash\w*|accidents?",
     ("accident",)),
    (r"응급|의료|발작|심장|호흡|아프|아파|medical|seizures?|heart|breathing|unwell|sick", ("medical",)),
    (r"살려|도와|구조|도움|help", ("help",)),
    # An anomaly of away or alone mode (docs/anomaly.md) is the only incident of class normal.
    (r"이상한|이상 ?(?:감지|소리)|수상한|낯선 소리|unusual|strange|odd|weird|anomal\w*", ("normal",)),
)

# Agencies by their number or name: the classes reported to it by default (taxonomy).
AGENCY_WORDS: tuple[tuple[str, Agency], ...] = (
    (r"112|경찰|police", Agency.POLICE),
    (r"119|소방|구급|fire department|fire brigade|ambulance|paramedics?", Agency.FIRE_RESCUE),
)

# Words for states (shared/incident_state.py). "Reported" is a report under way or done.
REPORTED = (IncidentState.DISPATCHING, IncidentState.DISPATCHED)
STATE_WORDS: tuple[tuple[str, tuple[IncidentState, ...]], ...] = (
    (r"신고 ?(?:가 |이 )?실패|실패|report(?:s|ing)? failed|failed (?:reports?|to report)|failed|couldn'?t (?:be )?reach\w*|not delivered|undelivered",
     (IncidentState.FAILED,)),
    (r"취소|오경보|오작동|잘못 울|cancel\w*|false alarms?|called off", (IncidentState.CANCELLED,)),
    (r"대기|진행 ?중|카운트다운|pending|waiting|countdown|counting down", (IncidentState.PENDING,)),
    (r"신고|출동|불렀|reported|reports?|reporting|dispatch\w*|called|calls|sent to", REPORTED),
)

# --- answers ----------------------------------------------------------------------------------

# A class in an answer's sentence (the taxonomy's labels are for lists and forms).
CLASS_NAMES: Mapping[str, Mapping[str, str]] = {
    "ko": {
        "normal": "이상한 소리", "crime": "침입·비명", "trapped": "갇힘", "electric": "전기 사고", "gas": "가스 경보",
        "fire": "화재 경보", "medical": "응급 상황", "accident": "낙상·사고", "help": "구조 요청",
    },
    "en": {
        "normal": "unusual sound", "crime": "break-in or scream", "trapped": "someone trapped",
        "electric": "electrical accident", "gas": "gas alarm", "fire": "fire alarm", "medical": "medical emergency",
        "accident": "fall or accident", "help": "call for help",
    },
}  # fmt: skip

# Who an anomaly (class normal: no agency) is reported to, in an answer.
CONTACTS: Mapping[str, str] = {"ko": "보호자", "en": "the contacts"}
# An event's state in an answer; {agency} is the class's number (119, 112).
STATE_PHRASES: Mapping[str, Mapping[IncidentState, str]] = {
    "ko": {
        IncidentState.PENDING: "신고 대기 중", IncidentState.CANCELLED: "취소됨",
        IncidentState.DISPATCHING: "{agency}에 신고 중", IncidentState.DISPATCHED: "{agency}에 신고됨",
        IncidentState.FAILED: "{agency} 신고 실패",
    },
    "en": {
        IncidentState.PENDING: "waiting to be reported", IncidentState.CANCELLED: "cancelled",
        IncidentState.DISPATCHING: "being reported to {agency}", IncidentState.DISPATCHED: "reported to {agency}",
        IncidentState.FAILED: "report to {agency} failed",
    },
}  # fmt: skip

# A state asked for, in the "nothing matching ..." answer ("reported" is both of REPORTED).
STATE_NAMES: Mapping[str, Mapping[IncidentState, str]] = {
    "ko": {
        IncidentState.PENDING: "대기 중", IncidentState.CANCELLED: "취소됨", IncidentState.DISPATCHING: "신고됨",
        IncidentState.DISPATCHED: "신고됨", IncidentState.FAILED: "신고 실패",
    },
    "en": {
        IncidentState.PENDING: "pending", IncidentState.CANCELLED: "cancelled",
        IncidentState.DISPATCHING: "reported", IncidentState.DISPATCHED: "reported",
        IncidentState.FAILED: "report failed",
    },
}  # fmt: skip

# Questions the parser understands, offered when it could not tell the time.
EXAMPLES: Mapping[str, tuple[str, ...]] = {
    "ko": ("어젯밤에 무슨 일 있었어?", "지난 주말에 119 신고된 거 있어?", "오늘 새벽 3시에 무슨 소리였어?", "월요일부터 취소된 경보 있어?"),
    "en": ("What happened last night?", "Any alarms this week?", "What woke grandma at 3am?", "Anything reported since Monday?"),
}  # fmt: skip
