"""The attribution lifecycle hooks, called by the attributor: refuse a query before, veto its release after."""
from __future__ import annotations

from typing import Any

from .errors import AttributionRefused
from .plugins import get_plugin_manager


def before_attribution(query: dict[str, Any], settings: dict[str, Any]) -> None:
    """Run ``tda_before_attribution``; any reason returned refuses the query."""
    reasons = [r for r in get_plugin_manager().hook.tda_before_attribution(query=query, settings=settings) if r]
    if reasons:
        raise AttributionRefused(f"{query.get('path') or 'query'}: refused by a plugin: {'; '.join(map(str, reasons))}")


def after_attribution(result: dict[str, Any]) -> list[str]:
    """Run ``tda_after_attribution``; returns the vetoes (reasons not to release the clip), most recent plugin first."""
    return [str(r) for r in get_plugin_manager().hook.tda_after_attribution(result=result) if r]
