"""A child_safety incident's texts: the staff's detection notice and the agency's SMS say so."""

from __future__ import annotations

from services.alerting.sms import agency_message, contact_message

CRIME = {"key": "crime", "id": 1, "label_ko": "범죄 (침입, 폭행, 비명)", "label_en": "Crime"}
NOTICE = {
    "event": "detected", "incident_id": "i-1", "class": CRIME, "owner_name": "해님 어린이집",
    "detected_at": "2027-03-02T01:00:00+00:00", "deadline_at": "2027-03-02T01:00:30+00:00", "agencies": ["112"],
}  # fmt: skip


def test_the_staff_are_told_it_is_child_safety_and_how_long_they_have() -> None:
    text = contact_message("+821012345678", {**NOTICE, "kind": "child_safety"}).text
    assert "아동 안전" in text and "Child safety" in text
    assert "10:00:30 KST" in text and "112" in text
    plain = contact_message("+821012345678", {**NOTICE, "kind": "emergency"}).text
    assert "아동 안전" not in plain and "범죄" in plain


def test_the_agency_report_names_the_kind() -> None:
    report = {
        "class": CRIME, "kind": "child_safety", "detected_at": NOTICE["detected_at"], "confidence": 0.31,
        "location": None, "incident_id": "i-1",
    }  # fmt: skip
    assert "[아동 안전]" in agency_message("112", report).text
    assert "[아동 안전]" not in agency_message("112", {**report, "kind": "emergency"}).text
