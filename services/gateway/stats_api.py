"""The published stats of the outcome ledger: ``app.include_router(stats_api.router)``.

``GET /v1/stats?days=90``: per emergency class, the precision of reported incidents (from the
agencies' answers), the false-alarm and cancel rates and the median time from detection to
report, over the last ``days`` (1 to 3650). Public and read-only: it holds only counts and
rates, and a class with fewer than 5 incidents in the window is suppressed
(:mod:`shared.incident_stats` says exactly what each figure is). Uses ``app.state.db``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.gateway.auth import DatabaseDep
from services.gateway.openapi import ApiRoute
from shared.incident_stats import DEFAULT_DAYS, incident_stats

router = APIRouter(tags=["stats"], route_class=ApiRoute)


@router.get("/v1/stats")
async def stats(db: DatabaseDep, days: Annotated[int, Query(ge=1, le=3650)] = DEFAULT_DAYS) -> dict[str, Any]:
    """Per class: incidents, cancel and false-alarm rates, reports, the agencies' verdicts with the
    precision, and the median seconds from detection to report, over the last `days`. Figures over
    fewer than 5 incidents are null (`suppressed`); `overall` sums the published classes."""
    return (await incident_stats(db, days=days)).to_json()
