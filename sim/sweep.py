"""Parameter sweeps: a grid of scenario overrides × strategies × seeds, run once each.

It is long because a sweep file is validated all the way down before anything runs:
its fields, every dotted path, every grid value and every point.

A sweep file (TOML) names a scenario, the strategies and seeds to run, fixed
``[overrides]`` and a ``[grid]`` of swept parameters, each a dotted path into the
scenario (``"strategy.batched-dedup-budget.budget_tokens" = [500, 1000]``;
``"strategy.*.memory_position"`` sets the setting of every strategy of the sweep
that has it). The grid expands to every combination of its values (the first key varies slowest);
each combination is a *point*. There is one run per (point, seed, strategy).
This module reads and plans a sweep; :mod:`memsim.studies.sweep` runs it.

Everything is validated before any simulation: the file's fields, every dotted
path, every grid value on its own, then every point as a whole, by building its
scenario and strategies exactly as a run would. Errors are one line naming the
sweep file, the key and the value.

A run's *key* is the SHA-256 of its resolved configuration (that one strategy,
that seed), the memsim version and a fingerprint of the simulator's source, so
two points that differ only in another
strategy's settings share a run, computed once. Each finished run is saved as
``runs/<key>.json`` the moment it finishes; a sweep started again skips the runs
already saved, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import scenarios
import sim
import strategies as registry
from sim import __version__
from sim.config import (
    ConfigError,
    Scenario,
    config_sha256,
    format_validation_error,
    read_toml,
)
from sim.records import Point, Run, SweepPlan
from sim.runner import build_strategies, rates_for, resolve_config
from sim.traces import bind_trace

RESERVED = {"seed": "seeds", "strategies": "strategies"}  # swept by their own fields
Warn = Callable[[str], None]


# -- the file ---------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ReportAxes(_Strict):
    """Which grid keys the heatmaps put across (``x``) and down (``y``)."""

    x: str | None = None
    y: str | None = None


class SweepFile(_Strict):
    """The sweep file as written; nested tables in ``overrides`` and ``grid`` become dotted keys."""

    scenario: Annotated[str, Field(min_length=1)]
    strategies: Annotated[list[str], Field(min_length=1)] | None = None
    """Default: the scenario's strategies."""
    seeds: Annotated[list[Annotated[int, Field(ge=0, strict=True)]], Field(min_length=1)] | None = (
        None
    )
    """Default: the scenario's seed."""
    overrides: dict[str, Any] = {}
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    report: ReportAxes = ReportAxes()

    @field_validator("overrides", "grid", mode="before")
    @classmethod
    def _dotted(cls, table: Any) -> Any:
        return flatten(table) if isinstance(table, dict) else table

    @field_validator("strategies", "seeds")
    @classmethod
    def _distinct(cls, values: list | None) -> list | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"an entry is listed twice: {values}")
        return values


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c.d": 2}`` → ``{"a.b": 1, "c.d": 2}`` (empty tables stay values).

    TOML writes ``limits.rpm = 1`` as a nested table and ``"limits.rpm" = 1`` as a
    flat key; both mean the same path.
    """
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        items = flatten(value, f"{path}.") if isinstance(value, dict) and value else {path: value}
        for item_path, item in items.items():
            if item_path in flat:
                raise ValueError(f"'{item_path}' is given twice")
            flat[item_path] = item
    return flat


def shown(value: Any) -> str:
    """A value as the error line shows it: JSON, cut at 60 characters."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# -- paths into the scenario ------------------------------------------------------
def split_path(key: str, strategy_names: list[str]) -> tuple[str, ...]:
    """The segments of a dotted path; a strategy name may itself hold dots (``pkg.mod:Cls``)."""
    head, _, rest = key.partition(".")
    if head == "strategy":
        for name in sorted(strategy_names, key=len, reverse=True):
            if rest.startswith(f"{name}."):
                return ("strategy", name, *rest[len(name) + 1 :].split("."))
    return tuple(key.split("."))


EVERY_STRATEGY = "*"
"""``strategy.*.<setting>``: the setting of every strategy of the sweep that has it."""


def concrete_paths(path: tuple[str, ...], strategy_names: list[str]) -> list[tuple[str, ...]]:
    """``path`` itself, or for ``strategy.*.<setting>…`` one path per strategy with the setting."""
    if len(path) < 3 or path[0] != "strategy" or path[1] != EVERY_STRATEGY:
        return [path]
    return [
        ("strategy", name, *path[2:])
        for name in strategy_names
        if path[2] in registry.resolve(name).Config.model_fields
    ]


def set_paths(
    data: dict[str, Any], path: tuple[str, ...], value: Any, strategy_names: list[str]
) -> None:
    """:func:`set_path` for each of :func:`concrete_paths`."""
    for concrete in concrete_paths(path, strategy_names):
        set_path(data, concrete, value)


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``data[p0][p1]...`` to ``value``, creating missing sections."""
    node = data
    for depth, segment in enumerate(path[:-1]):
        child = node.setdefault(segment, {})
        if child is None:  # an optional section that is off (``consolidation = None``)
            child = node[segment] = {}
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise _Invalid(path, f"'{where}' is a value ({shown(child)}), not a section")
        node = child
    node[path[-1]] = value


class _Invalid(Exception):
    """A point that does not validate: where (``loc``) and why."""

    def __init__(self, loc: tuple[str, ...], message: str, unknown: bool = False) -> None:
        super().__init__(message)
        self.loc, self.message, self.unknown = loc, message, unknown

    def detail(self, path: tuple[str, ...]) -> str:
        """The reason, naming the field only when it is not ``path`` itself."""
        same = self.loc == path
        where = ".".join(self.loc)
        if self.unknown:
            return "no such field" if same else f"no such field '{where}'"
        return self.message if same or not self.loc else f"field '{where}': {self.message}"


def _from_validation(err: ValidationError, prefix: tuple[str, ...] = ()) -> _Invalid:
    first = err.errors()[0]
    loc = prefix + tuple(str(p) for p in first["loc"])
    return _Invalid(loc, first["msg"], unknown=first["type"] == "extra_forbidden")


def _check_point(data: dict[str, Any], names: list[str], source: str) -> Scenario:
    """Validate one point's scenario and build its strategies and prices, as a run would.

    Raises:
        _Invalid: Naming the field at fault where it is known.
    """
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise _from_validation(err) from None
    for name in names:  # first on our own, for errors that name the field and value
        try:
            cls = registry.resolve(name)
            cls.Config.model_validate(scenario.strategy.get(name, {}))
        except ValidationError as err:
            raise _from_validation(err, ("strategy", name)) from None
        except ConfigError as err:
            raise _Invalid(("strategies",), str(err)) from None
    try:
        build_strategies(scenario, source)
        rates_for(scenario, source)
    except ConfigError as err:
        raise _Invalid((), str(err).removeprefix(f"{source}: ")) from None
    return scenario


# -- the plan ---------------------------------------------------------------------
def load_sweep(path: Path) -> SweepPlan:
    """Read, validate and expand a sweep file; nothing is simulated.

    Raises:
        ConfigError: One line naming the sweep file, the key and the value at fault.
    """
    source = str(path)
    try:
        spec = SweepFile.model_validate(read_toml(path))
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err)) from None
    scenario, scenario_path = _load_scenario(spec.scenario, path)
    names = spec.strategies or list(scenario.strategies)
    seeds = spec.seeds or [scenario.seed]
    _check_strategies(names, source)
    _check_keys(
        [("overrides", k) for k in spec.overrides] + [("grid", k) for k in spec.grid],
        names,
        source,
    )
    base = scenario.model_dump(mode="json") | {"strategies": names}
    base = _apply_overrides(base, spec.overrides, names, source)
    _check_grid_values(base, spec.grid, names, source)
    points = _expand(base, spec.grid, names, source)
    runs, payloads = _plan_runs(points, seeds, names, str(scenario_path))
    return SweepPlan(
        path,
        spec.scenario,
        scenario.name,
        names,
        seeds,
        spec.overrides,
        spec.grid,
        _axes(spec, source),
        points,
        runs,
        payloads,
    )


def _load_scenario(spec: str, sweep: Path) -> tuple[Scenario, Path]:
    """A shipped name, or a path resolved against the sweep file's folder."""
    candidate = Path(spec)
    looks_like_path = candidate.suffix == ".toml" or "/" in spec
    local = sweep.parent / candidate
    if not candidate.is_absolute() and (looks_like_path or local.is_file()):
        spec = str(local)
    try:
        return scenarios.load(spec)
    except ConfigError as err:
        raise ConfigError(f"{sweep}: field 'scenario': {err}") from None


def _check_strategies(names: list[str], source: str) -> None:
    """Every strategy the sweep runs exists (a typo gets a suggestion)."""
    for name in names:
        try:
            registry.resolve(name)
        except ConfigError as err:
            raise ConfigError(f"{source}: field 'strategies' = {shown(name)}: {err}") from None


def _check_keys(keys: list[tuple[str, str]], names: list[str], source: str) -> None:
    """Reserved keys, overlapping keys, and paths into strategies not run.

    ``keys``: ``(section, dotted key)`` pairs; the section (``overrides``, ``grid``,
    ``--set``) names where the key came from in the error line. A sweep sets the
    seed and the strategies with fields of its own; ``--set`` may set them too.
    """
    for section, key in keys:
        path = split_path(key, names)
        if path[0] in RESERVED and section != "--set":
            raise ConfigError(
                f"{source}: {section} '{key}': set it with the sweep's '{RESERVED[path[0]]}' field"
            )
        if path[0] == "strategy" and len(path) > 2 and path[1] == EVERY_STRATEGY:
            if not concrete_paths(path, names):
                raise ConfigError(
                    f"{source}: {section} '{key}': no strategy run here has a setting "
                    f"'{path[2]}' (strategies: {', '.join(names)})"
                )
        elif path[0] == "strategy" and len(path) > 1 and path[1] not in names:
            raise ConfigError(
                f"{source}: {section} '{key}': strategy '{path[1]}' is not run by this sweep "
                f"(strategies: {', '.join(names)})"
            )
    for (s1, k1), (s2, k2) in itertools.combinations(keys, 2):
        if k1 == k2 or k2.startswith(f"{k1}.") or k1.startswith(f"{k2}."):
            raise ConfigError(f"{source}: {s1} '{k1}' and {s2} '{k2}' set the same field")


def parse_settings(specs: list[str]) -> dict[str, Any]:
    """``["llm.model=gpt-4.1-mini", "users=2"]`` → ``{"llm.model": "gpt-4.1-mini", "users": 2}``.

    A value is read as a TOML value (``200``, ``0.5``, ``true``, ``"text"``, ``[1, 2]``);
    anything that is not one is taken as a plain string.
    """
    settings: dict[str, Any] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set: {spec!r}: expected KEY=VALUE, e.g. llm.cache.mode=none")
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        settings[key] = value
    return settings


def with_settings(scenario: Scenario, specs: list[str], source: str) -> Scenario:
    """``scenario`` with ``--set KEY=VALUE`` settings (dotted paths, as a sweep's) applied."""
    if not specs:
        return scenario
    settings = parse_settings(specs)
    names = list(scenario.strategies)
    _check_keys([("--set", key) for key in settings], names, source)
    data = _apply_overrides(scenario.model_dump(mode="json"), settings, names, source, "--set")
    return Scenario.model_validate(data)


def _apply_overrides(
    base: dict[str, Any],
    overrides: dict[str, Any],
    names: list[str],
    source: str,
    section: str = "overrides",
) -> dict[str, Any]:
    """``base`` with every override set, validated as a whole."""
    data = json.loads(json.dumps(base))  # a deep copy that shares nothing
    paths = {key: split_path(key, names) for key in overrides}
    try:
        for key, value in overrides.items():
            set_paths(data, paths[key], value, names)
        _check_point(data, names, source)
    except _Invalid as err:
        key = next((k for k, p in paths.items() if _related(p, err.loc)), None)
        if key is None:
            raise ConfigError(f"{source}: {section}: {err.detail(())}") from None
        value = shown(overrides[key])
        raise ConfigError(
            f"{source}: {section} '{key}' = {value}: {err.detail(paths[key])}"
        ) from None
    return data


def _related(path: tuple[str, ...], loc: tuple[str, ...]) -> bool:
    """Whether an error at ``loc`` lies on, under or above ``path``."""
    n = min(len(path), len(loc))
    return n > 0 and all(p in (q, EVERY_STRATEGY) for p, q in zip(path[:n], loc[:n], strict=True))


def _check_grid_values(
    base: dict[str, Any], grid: dict[str, list[Any]], names: list[str], source: str
) -> None:
    """Each grid value on its own (with the overrides): type, range, that the path exists."""
    for key, values in grid.items():
        path = split_path(key, names)
        seen: set[str] = set()
        for value in values:
            text = json.dumps(value, sort_keys=True, default=str)
            if text in seen:
                raise ConfigError(f"{source}: grid '{key}' = {shown(value)}: listed twice")
            seen.add(text)
            data = json.loads(json.dumps(base))
            try:
                set_paths(data, path, value, names)
                _check_point(data, names, source)
            except _Invalid as err:
                raise ConfigError(
                    f"{source}: grid '{key}' = {shown(value)}: {err.detail(path)}"
                ) from None


def _expand(
    base: dict[str, Any], grid: dict[str, list[Any]], names: list[str], source: str
) -> list[Point]:
    """Every combination of grid values, validated as a whole (first key slowest)."""
    keys = list(grid)
    paths = [split_path(k, names) for k in keys]
    points = []
    for index, coords in enumerate(itertools.product(*(range(len(grid[k])) for k in keys))):
        params = {k: grid[k][i] for k, i in zip(keys, coords, strict=True)}
        data = json.loads(json.dumps(base))
        for path, value in zip(paths, params.values(), strict=True):
            set_paths(data, path, value, names)
        try:
            scenario = _check_point(data, names, source)
        except _Invalid as err:
            where = ", ".join(f"{k} = {shown(v)}" for k, v in params.items())
            raise ConfigError(f"{source}: grid point {where}: {err.detail(())}") from None
        points.append(Point(index, coords, params, scenario))
    return points


def _axes(spec: SweepFile, source: str) -> tuple[str | None, str | None]:
    """The heatmap axes: ``[report]``'s, or the first two grid keys."""
    keys = list(spec.grid)
    for field in ("x", "y"):
        value = getattr(spec.report, field)
        if value is not None and value not in keys:
            raise ConfigError(
                f"{source}: field 'report.{field}' = {shown(value)}: not a grid key "
                f"(grid: {', '.join(keys) or 'empty'})"
            )
    x, y = spec.report.x, spec.report.y
    if x is not None and x == y:
        raise ConfigError(f"{source}: field 'report.y' = {shown(y)}: the same key as report.x")
    if y is not None and len(keys) < 2:
        raise ConfigError(f"{source}: field 'report.y' = {shown(y)}: needs two grid keys")
    free = [k for k in keys if k not in (x, y)]
    x = x or (free.pop(0) if free else None)
    y = y or (free.pop(0) if free else None)
    return x, y


def run_key(resolved: dict[str, Any]) -> str:
    """The cache key of one strategy's run: its resolved configuration and the code.

    The code is the memsim version and a fingerprint of the simulator's and the
    strategies' source, so that a cached result is never reused after a change
    that could alter it (an editable install keeps its version while it changes).
    """
    code = {"memsim_version": __version__, "source_sha256": source_fingerprint()}
    return config_sha256({**code, "resolved": resolved})


@functools.cache
def source_fingerprint() -> str:
    """SHA-256 over the Python source of ``sim`` and ``strategies`` (paths and bytes)."""
    digest = hashlib.sha256()
    for package in (sim, registry):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _plan_runs(
    points: list[Point], seeds: list[int], names: list[str], source: str
) -> tuple[list[Run], dict[str, tuple[dict[str, Any], str]]]:
    runs, payloads = [], {}
    for point in points:
        for seed in seeds:
            for name in names:
                scenario = point.scenario.with_overrides(seed=seed, strategies=[name])
                bound, trace = bind_trace(scenario, source)  # a trace's content is in the key
                built = build_strategies(bound, source)
                key = run_key(resolve_config(bound, built, rates_for(bound, source), trace))
                runs.append(Run(point.index, seed, name, key))
                payloads.setdefault(key, (scenario.model_dump(mode="json"), source))
    return runs, payloads
