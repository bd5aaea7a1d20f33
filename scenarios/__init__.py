"""Shipped scenario files (TOML) and the loader that finds them by name or path."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from sim.config import ConfigError, Scenario, load_scenario_file, read_toml


def shipped() -> dict[str, Path]:
    """Shipped scenarios by name (file stem), sorted."""
    folder = Path(str(files(__name__)))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def locate(spec: str) -> Path:
    """The file for a scenario given as a path or as a shipped name."""
    path = Path(spec)
    if path.suffix == ".toml" or path.is_file() or "/" in spec:
        return path
    known = shipped()
    if spec in known:
        return known[spec]
    raise ConfigError(
        f"{spec}: no such scenario file or shipped scenario (shipped: {', '.join(known)})"
    )


def load(spec: str) -> tuple[Scenario, Path]:
    """Load and validate a scenario by path or shipped name.

    A relative ``[trace] path`` or ``[llm] profile`` is read from the scenario
    file's folder: the returned scenario holds it as an absolute path.
    """
    path = locate(spec)
    scenario = load_scenario_file(path)
    trace = scenario.trace
    if trace is not None and not Path(trace.path).expanduser().is_absolute():
        absolute = (path.parent / Path(trace.path).expanduser()).resolve()
        scenario = scenario.model_copy(
            update={"trace": trace.model_copy(update={"path": str(absolute)})}
        )
    profile = scenario.llm.profile
    if profile is not None and not Path(profile).expanduser().is_absolute():
        absolute = (path.parent / Path(profile).expanduser()).resolve()
        llm = scenario.llm.model_copy(update={"profile": str(absolute)})
        scenario = scenario.model_copy(update={"llm": llm})
    return scenario, path


def description(path: Path) -> str:
    """A scenario's one-line description (its ``description`` field), for listings."""
    try:
        return str(read_toml(path).get("description", "")).strip().splitlines()[0]
    except (ConfigError, IndexError):
        return ""
