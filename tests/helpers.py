"""Helpers shared by the tests."""

from __future__ import annotations

from typing import Any

from sim.config import Scenario


def make_scenario(**fields: Any) -> Scenario:
    """A small valid scenario; nested sections merge into the defaults."""
    data: dict[str, Any] = {"name": "test", "users": 3, "days": 2}
    for key, value in fields.items():
        if isinstance(value, dict) and key not in ("strategy",):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return Scenario.model_validate(data)
