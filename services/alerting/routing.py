"""Which agencies hear about which class, and through which channels in which order.

Defaults come from :mod:`shared.taxonomy` (crime -> 112, the other emergencies -> 119);
a deployment overrides any class with ``HEARO_ALERTING_ROUTES`` and may name several
agencies for one class (fire -> 119 and the building's security desk). Each agency lists
its channels in order: the first is tried, and each next one is the fallback when the
one before it is exhausted.

The routing is checked when the worker starts: an unknown class, an agency without a
configuration, or an emergency class that reaches no agency is refused there rather than
discovered at the moment of a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.alerting.settings import AgencyConfig, ChannelConfig
from shared.incidents.duress import DURESS_ROUTE_CLASS
from shared.taxonomy import CLASSES, by_key


def reported_classes(incident: Any) -> tuple[str, ...]:
    """The classes whose agencies an incident (a row with ``class_key``, ``also_detected`` and
    ``duress_at``) is reported to: its own and those detected while it was open; under
    duress, where a crime goes, whatever was heard."""
    if incident.duress_at is not None:
        return (DURESS_ROUTE_CLASS,)
    return (incident.class_key, *incident.also_detected)


@dataclass(frozen=True)
class PlannedDelivery:
    """One outbox row to write when an incident is claimed: an agency and one of its channels."""

    agency_id: str
    position: int
    kind: str


class RoutingError(ValueError):
    """The routing configuration cannot deliver some class, or names something unknown."""


class Router:
    """Class key -> agencies -> ordered channels, validated once at construction."""

    def __init__(self, agencies: Mapping[str, AgencyConfig], routes: Mapping[str, Sequence[str]]) -> None:
        self._agencies = dict(agencies)
        self._routes: dict[str, tuple[str, ...]] = {}
        for key in routes:
            try:
                by_key(key)
            except KeyError as error:
                raise RoutingError(str(error)) from None
        for cls in CLASSES:
            if not cls.is_emergency:
                continue
            assert cls.agency is not None
            targets = routes.get(cls.key, [cls.agency.value])
            unique = tuple(dict.fromkeys(targets))
            if not unique:
                raise RoutingError(f"class {cls.key!r} is routed to no agency")
            missing = [a for a in unique if a not in self._agencies]
            if missing:
                raise RoutingError(
                    f"class {cls.key!r} is routed to {missing}, which HEARO_ALERTING_AGENCIES does not configure"
                )
            self._routes[cls.key] = unique

    def agencies_for(self, *class_keys: str) -> tuple[str, ...]:
        """The agency ids an incident of these classes is reported to, the first class's first;
        KeyError for a non-emergency."""
        try:
            return tuple(dict.fromkeys(agency for key in class_keys for agency in self._routes[key]))
        except KeyError as error:
            raise KeyError(f"class {error.args[0]!r} is not reported to any agency") from None

    def agency(self, agency_id: str) -> AgencyConfig | None:
        """The configuration of ``agency_id``, or None when it is (no longer) configured."""
        return self._agencies.get(agency_id)

    def channel(self, agency_id: str, position: int) -> ChannelConfig | None:
        """Channel ``position`` of ``agency_id``, or None when it is (no longer) configured."""
        agency = self._agencies.get(agency_id)
        if agency is None or not 0 <= position < len(agency.channels):
            return None
        return agency.channels[position]

    def plan(self, *class_keys: str) -> list[PlannedDelivery]:
        """Every (agency, channel) a report of these classes may use, in trial order per agency."""
        return [
            PlannedDelivery(agency_id, position, channel.kind)
            for agency_id in self.agencies_for(*class_keys)
            for position, channel in enumerate(self._agencies[agency_id].channels)
        ]
