"""The live display of `hearo stream`: top scores, detections and each incident's countdown."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from hearo.incident_board import IncidentBoard
from shared.incident_state import IncidentState
from shared.protocol import DetectionMessage, ReadyMessage, ScoresMessage

TOP_CLASSES = 5
_STATE_STYLES = {
    IncidentState.PENDING: "bold yellow", IncidentState.DISPATCHED: "bold red", IncidentState.CANCELLED: "green"
}


@dataclass
class StreamView:
    """What the live display shows, updated from the gateway's messages."""

    url: str
    ready: ReadyMessage | None = None
    scores: ScoresMessage | None = None
    detections: list[DetectionMessage] = field(default_factory=list)
    board: IncidentBoard = field(default_factory=IncidentBoard)
    notes: list[str] = field(default_factory=list)

    def render(self) -> Group:
        title = Text(f"Hear-o  {self.url}", style="bold")
        if self.ready is not None:
            title.append(f"  model {self.ready.model}", style="dim")
        if self.scores is not None:
            title.append(f"  {self.scores.stream_time_s:7.1f} s", style="cyan")
        table = Table(show_header=True, header_style="bold", expand=False)
        table.add_column("class")
        table.add_column("score", justify="right")
        table.add_column("", min_width=20)
        for entry in self.scores.top[:TOP_CLASSES] if self.scores else []:
            bar = "█" * round(entry.score * 20)
            table.add_row(entry.class_, f"{entry.score:.2f}", Text(bar, style="red" if entry.class_ != "normal" else "green"))
        parts: list[Any] = [title, table]
        for d in self.detections:
            heard = f"the {d.pattern} alarm rhythm" if d.pattern else f"confidence {d.confidence:.2f}"
            parts.append(
                Text(
                    f"DETECTED {d.class_} ({d.label_en} / {d.label_ko}) {heard} at {d.stream_time_s:.1f} s",
                    style="bold red",
                )
            )
        now = time.time()
        for status in self.board.incidents.values():
            style = _STATE_STYLES.get(status.state, "bold")
            parts.append(Text(status.describe(now), style=style))
        parts += [Text(note, style="yellow") for note in self.notes]
        return Group(*parts)
