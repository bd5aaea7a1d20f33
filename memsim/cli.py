"""The ``memsim`` command line. Thin: parse, call, print.

It is long because it declares every command's options and help text; the work is in
:mod:`memsim.api` and :mod:`memsim.studies`.

Errors a user can cause (a bad scenario field, an unknown strategy, a missing
file, an unwritable folder) print one line on stderr and exit with code 2. An
interrupt (Ctrl-C, SIGTERM) prints one line and exits with 130 or 143 (:func:`main`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

import scenarios
import strategies
from memsim import api
from reports.output import (
    REPORT_ENTRIES,
    RUN_ENTRIES,
    ReplacedFolder,
    atomic_write,
    earlier_run,
    prepare_out_dir,
    write_reports,
)
from reports.results import load_results
from reports.terminal import print_calibration, print_check, print_comparison
from sim import __version__
from sim.config import ConfigError, Scenario
from sim.runner import build_strategies, rates_for
from sim.sizes import parse_sizes
from sim.traces import bind_trace

_value_type = typer.core.TyperOption.display_type_rich


def _flag_takes_no_value(self: typer.core.TyperOption, ctx: typer.Context) -> str | None:
    """Help shows no value type for a flag (``--quiet``, ``--help``): it takes no value.

    typer 0.29's rich help prints every option's type, flags too (``--quiet -q <bool>``),
    though its plain help leaves a flag's type out; returning ``None`` is how an
    option shows no type, so this puts flags back the way the plain help shows them.
    """
    return None if self.is_flag else _value_type(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_takes_no_value  # type: ignore[method-assign]

app = typer.Typer(
    name="memsim",
    help="Simulate what LLM chatbot memory strategies cost in tokens, dollars, latency and recall.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
EXIT_BAD_INPUT = 2


def _fail(message: str) -> typer.Exit:
    err_console.print(f"memsim: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"memsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """memsim: cost and token-leak simulation for LLM chatbot memory."""


def _load(
    spec: str, trace: Path | None = None, settings: list[str] | None = None, **overrides: object
) -> tuple[Scenario, str]:
    return api.load_scenario_with_source(spec, trace, settings, **overrides)


SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Set any scenario field, KEY=VALUE with a dotted KEY (repeatable): "
        "llm.cache.mode=none, strategy.batched-dedup-budget.stable_memory_order=true, "
        "strategy.*.memory_position=after-history (every strategy that has it).",
    ),
]


def _check_strategy_flag(spec: str) -> None:
    try:
        strategies.resolve(spec)
    except ConfigError as err:
        raise ConfigError(f"--strategy: {err}") from None


def _progress_factory(progress: Progress) -> Callable[[str, int], Callable[[int], None]]:
    """One bar per name; a name seen again (another shard) adds its total to the bar."""
    tasks: dict[str, TaskID] = {}

    def factory(name: str, total: int) -> Callable[[int], None]:
        if name in tasks:
            task = tasks[name]
            progress.update(task, total=(progress.tasks[task].total or 0) + total)
        else:
            task = tasks[name] = progress.add_task(name, total=total)
        return lambda turns: progress.advance(task, turns)

    return factory


@dataclass(frozen=True)
class Parallel:
    """Where a run's shards go (see ``sim.shards``); results do not depend on it."""

    workers: int = 1
    executor: str = "local"
    address: str | None = None


WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        help="Processes for the shards of a large run (scenario key shard_users); "
        "results are the same for any number.",
    ),
]
ExecutorOpt = Annotated[
    str, typer.Option(help="local (a process pool) or ray (a local instance, or --address).")
]
AddressOpt = Annotated[
    str | None, typer.Option(help="An existing Ray cluster, e.g. ray://head:10001 or auto.")
]


ScenarioArg = Annotated[
    str, typer.Argument(help="A scenario file, or the name of a shipped scenario.")
]
TraceOpt = Annotated[
    Path | None,
    typer.Option(
        help="Replay this trace instead of synthetic users: a LoCoMo file (.json) or a chat "
        "log (.jsonl); with it, --users N replays the first N users.",
    ),
]


@app.command()
def run(
    scenario: ScenarioArg,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy", "-s", help="Strategy to run (repeatable); default: the scenario's."
        ),
    ] = None,
    users: Annotated[int | None, typer.Option(min=1, help="Override the number of users.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Override the simulated days.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override the random seed.")] = None,
    trace: TraceOpt = None,
    shard_users: Annotated[
        int | None, typer.Option(min=1, help="Override the users per shard (shard_users).")
    ] = None,
    embedder: Annotated[
        str | None,
        typer.Option(help="latent (fast mock) or minilm (real, CPU); default: the scenario's."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="numpy, chroma (embedded) or chroma-http (a server); default: the scenario's."
        ),
    ] = None,
    settings: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder; default: out/<scenario>.")
    ] = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    llm_profile: Annotated[
        Path | None,
        typer.Option(
            help="An LLM profile file (memsim fit): its latency figures override the "
            "built-in profile; latency fields set in [llm] still win.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no table.")
    ] = False,
    otel: Annotated[
        Path | None,
        typer.Option(
            help="Also write every simulated call as OpenTelemetry GenAI spans (OTLP/JSON) "
            "to this file, on simulated timestamps.",
        ),
    ] = None,
    otel_content: Annotated[
        bool,
        typer.Option(
            "--otel-content",
            help="With --otel: put each turn's user message (and a trace's reply) on its "
            "chat span, with user.id and session.id: replayable as a trace of format otel.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Run even when the estimated peak memory exceeds what is available."
        ),
    ] = False,
) -> None:
    """Simulate a scenario with each strategy and write summary.json, report.md and the raw data.

    Before simulating it estimates the run's turns, wall time and peak memory (printed
    above the progress bar; sim/estimate.py) and refuses a run that would not fit in
    the machine's available memory, unless --force. The run is written into a new
    folder beside ``--out`` that replaces it only once complete (see
    ``reports.output.ReplacedFolder``): an interrupted run leaves the earlier results
    as they were. Replacing an earlier run is said on stderr.
    """
    try:
        for spec in strategy or []:
            _check_strategy_flag(spec)
        scn, source = _load(
            scenario,
            trace,
            settings,
            users=users,
            days=days,
            seed=seed,
            shard_users=shard_users,
            strategies=strategy or None,
            embedder=embedder,
            store=store,
        )
        scn = _with_llm_profile(scn, llm_profile)
        _check_size(scn, source, workers, force, quiet)
        out_dir = out if out is not None else Path("out") / scn.name
        if otel is not None:
            prepare_out_dir(otel.parent)  # fail before the run, not after it
        started = time.perf_counter()
        with _output_folder(out_dir, RUN_ENTRIES, _say_replacing) as new_dir:
            parallel = Parallel(workers, executor, address)
            results = _simulate(scn, source, new_dir, quiet, parallel)
            summary = results.summary
            results.write(new_dir)
        if otel is not None:
            atomic_write(otel, lambda tmp: results.write_otel(tmp, content=otel_content))
    except ConfigError as err:
        raise _fail(str(err)) from None
    if not quiet:
        console = Console()
        print_comparison(console, summary, results.views())
        console.print(
            f"wrote {out_dir}/ (summary.json, report.md, report.html, charts/, parquet) in "
            f"{time.perf_counter() - started:.1f} s"
        )


def _check_size(scn: Scenario, source: str, workers: int, force: bool, quiet: bool) -> None:
    """Say what the run will take; refuse one that would not fit in memory."""
    from sim.estimate import estimate

    if scn.trace is not None:  # a trace's size is known once it is read
        return
    size = estimate(scn, set(strategies.external_strategies()), workers)
    if not size.fits and not force:
        raise ConfigError(
            f"{source}: the run would need {size.line()}: fewer users or days, a machine "
            "with more memory, or --force to run it anyway"
        )
    if not quiet:
        err_console.print(f"memsim run: {size.line()} (estimated)")


def _with_llm_profile(scn: Scenario, path: Path | None) -> Scenario:
    """``scn`` with ``--llm-profile`` as its ``[llm] profile``; the file checked now."""
    from sim.latency import resolve

    if path is not None:
        llm = scn.llm.model_copy(update={"profile": str(path.resolve())})
        scn = scn.model_copy(update={"llm": llm})
    resolve(scn.llm)  # a bad profile file: one line, before anything runs
    return scn


def _simulate(
    scn: Scenario, source: str, workdir: Path, quiet: bool, parallel: Parallel = Parallel()
) -> api.Results:
    """Check the scenario, then run it (:func:`memsim.api.run`) with a progress bar on stderr."""
    prepare_out_dir(workdir)
    with _progress(quiet) as progress:
        return api.run(
            scn,
            source=source,
            workdir=workdir,
            workers=parallel.workers,
            executor=parallel.executor,  # type: ignore[arg-type]  # checked by api.run
            address=parallel.address,
            progress=_progress_factory(progress),
        )


def _progress(quiet: bool, unit: str = "turns") -> Progress:
    """A progress display of simulated ``unit`` on stderr (off with ``-q``)."""
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )


@app.command()
def baseline(
    scenario: ScenarioArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Baseline file to write.")],
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="Strategy to record (repeatable): the one you ship; default: the scenario's.",
        ),
    ] = None,
    settings: SetOpt = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a scenario and write its figures as the baseline `memsim check` compares with.

    `memsim check` checks the strategies the baseline holds.
    """
    from memsim.studies.check import baseline as baseline_of

    try:
        for spec in strategy or []:
            _check_strategy_flag(spec)
        prepare_out_dir(output.parent)
        with _progress(quiet) as progress:
            document = baseline_of(
                scenario,
                strategy or [],
                settings or [],
                _progress_factory(progress),
                workers=workers,
                executor=executor,
                address=address,
            )
        atomic_write(output, lambda tmp: tmp.write_text(json.dumps(document, indent=2) + "\n"))
    except ConfigError as err:
        raise _fail(str(err)) from None
    typer.echo(f"wrote {output} ({', '.join(document['strategies'])})")


@app.command()
def check(
    scenario: ScenarioArg,
    baseline_file: Annotated[
        Path, typer.Option("--baseline", "-b", help="A file written by `memsim baseline`.")
    ],
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="Strategy to check (repeatable); default: every strategy of the baseline "
            "(what it was written for).",
        ),
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=N% (repeatable); default 5% for every metric."),
    ] = None,
    invariant: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=STRATEGY,... (repeatable): apply invariant NAME to these checked "
            "strategies only (NAME= to none); the others show it as skipped, e.g. "
            "extraction_calls_per_session_within_limit=batched-dedup-budget. Default: every "
            "invariant applies to every checked strategy (a promise any memory should keep).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for check.md and junit.xml; default out/<scenario>-check."),
    ] = None,
    settings: SetOpt = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress bar (the table, the result, still prints)."
        ),
    ] = False,
) -> None:
    """Run a scenario and check it against a baseline (exit 0 passed, 1 failed, 2 bad input).

    One table, per strategy: each metric against the baseline (regressed beyond
    its tolerance, improved, ok), then each invariant, the worst value measured
    against its limit (ok, FAILED, or skipped by --invariant). Exit 1 exactly
    when a row says regressed or FAILED.

    Invariants: injected_tokens_within_budget, memories_per_user_within_cap,
    extraction_calls_per_session_within_limit (at most 10), no_cross_user_memory.

    Bad input: a missing, corrupt or mismatched baseline, an unknown metric,
    invariant or strategy. Writes check.md (for a CI job summary; appended to
    $GITHUB_STEP_SUMMARY when set) and junit.xml (a test case per strategy and
    metric or invariant).
    """
    from memsim.studies.check import run_check

    try:
        for spec in strategy or []:
            _check_strategy_flag(spec)
        with _progress(quiet) as progress:
            found = run_check(
                scenario,
                baseline_file,
                tolerance or [],
                strategy or [],
                invariant or [],
                settings or [],
                _progress_factory(progress),
                workers,
                executor,  # type: ignore[arg-type]  # checked by api.run
                address,
            )
        out_dir = out if out is not None else Path("out") / f"{found.scenario}-check"
        prepare_out_dir(out_dir)
        text = found.markdown()
        atomic_write(out_dir / "check.md", lambda tmp: tmp.write_text(text))
        xml = found.junit_xml()
        atomic_write(out_dir / "junit.xml", lambda tmp: tmp.write_text(xml))
    except ConfigError as err:
        raise _fail(str(err)) from None
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(text)
    comparisons, invariants = found.comparisons, found.invariants
    print_check(Console(), comparisons, invariants, found.title)
    for i in (i for i in invariants if i.verdict == "FAILED"):
        err_console.print(
            f"invariant broken: {i.strategy} {i.invariant.name}: {i.invariant.detail}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for c in (c for c in comparisons if c.verdict == "regressed"):
        err_console.print(
            f"regressed: {c.strategy} {c.metric} {c.baseline:,.6g} → {c.now:,.6g}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    typer.echo(f"wrote {out_dir}/check.md and junit.xml")
    raise typer.Exit(0 if found.passed else 1)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="A run's output folder (from `memsim run`).")],
) -> None:
    """Draw report.md, report.html and the charts again from a run's saved files.

    They are drawn into a copy of the folder (the run's files hard-linked) that then
    replaces it, so an interrupt leaves the earlier report whole.
    """
    try:
        results = load_results(out_dir)
        with _output_folder(out_dir, REPORT_ENTRIES) as new_dir:
            write_reports(dataclasses.replace(results, out_dir=new_dir))
    except ConfigError as err:
        raise _fail(str(err)) from None
    typer.echo(f"wrote {out_dir}/ (report.md, report.html, charts/)")


@app.command()
def calibrate(
    scenario: ScenarioArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Profile file; default: out/<scenario>/calibration.json."
        ),
    ] = None,
    users: Annotated[
        str, typer.Option(help="Numbers of users to measure the store at, comma-separated.")
    ] = "10,100,1000,5000",
    store: Annotated[
        str,
        typer.Option(
            help="chroma (embedded, temporary folder) or chroma-http (the scenario's server)."
        ),
    ] = "chroma",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
) -> None:
    """Measure MiniLM similarities on the fact bank and ChromaDB latency; write a profile."""
    from sim import calibration
    from sim.embed import MiniLMEmbedder

    try:
        scn, _ = _load(scenario)
        sizes = parse_sizes(users)
        if store not in ("chroma", "chroma-http"):
            raise ConfigError(f"--store: {store!r}: expected chroma or chroma-http")
        path = output if output is not None else Path("out") / scn.name / "calibration.json"
        prepare_out_dir(path.parent)
        say = None if quiet else (lambda text: err_console.print(f"calibrating: {text}"))
        with tempfile.TemporaryDirectory(prefix="memsim-calibrate-") as scratch:
            profile = calibration.calibrate(
                MiniLMEmbedder(), _store_factory(scn, store, Path(scratch)), sizes, say
            )
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(profile, indent=1) + "\n"))
    except ConfigError as err:
        raise _fail(str(err)) from None
    if not quiet:
        print_calibration(Console(), profile)
    typer.echo(f"wrote {path}")


def _store_factory(scn: Scenario, kind: str, scratch: Path) -> Callable[[str, str], object]:
    from sim.chroma import embedded_store, http_store

    cfg = scn.vector_store

    def make(layout: str, namespace: str) -> object:
        if kind == "chroma-http":
            try:
                return http_store(cfg.host, cfg.port, 384, layout, namespace, measure=True)
            except ConnectionError as err:
                raise ConfigError(str(err)) from None
        # One database for every layout and size: one client, one cache of open indexes.
        return embedded_store(scratch / "chroma", 384, layout, namespace, measure=True)

    return make


@app.command("list")
def list_() -> None:
    """List the strategies and the shipped scenarios, one line each."""
    for name in strategies.available():
        doc = strategies.resolve(name).__doc__ or ""
        typer.echo(f"strategy  {name:<24} {doc.strip().splitlines()[0] if doc.strip() else ''}")
    for name, path in scenarios.shipped().items():
        typer.echo(f"scenario  {name:<24} {scenarios.description(path)}")


@app.command()
def validate(scenario: ScenarioArg, trace: TraceOpt = None, settings: SetOpt = None) -> None:
    """Check a scenario file (fields, values, strategies, its trace) without running it."""
    try:
        scn, source = _load(scenario, trace, settings)
        scn, info = bind_trace(scn, source)
        built = build_strategies(scn, source)
        rates_for(scn, source)
    except ConfigError as err:
        raise _fail(str(err)) from None
    replayed = f"; trace: {info.turns:,} user turns, {info.probes:,} of them probes" if info else ""
    typer.echo(
        f"{source}: ok ({scn.users:,} users × {scn.days} days; strategies: "
        f"{', '.join(s.name for s in built)}{replayed})"
    )


@app.command()
def project(
    scenario: ScenarioArg,
    users: Annotated[
        str,
        typer.Option(help="Numbers of users, comma-separated: 2500, 10k, 1.5k, 1M."),
    ] = "1k,10k,100k,1M",
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Chat model priced by genai-prices (repeatable); default: the scenario's.",
        ),
    ] = None,
    sim_users: Annotated[
        int, typer.Option(min=1, help="Most users simulated per size: n = min(N, this).")
    ] = 500,
    out: Annotated[
        Path | None, typer.Option(help="Output folder; default: out/<scenario>-projection.")
    ] = None,
    settings: SetOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no table.")
    ] = False,
) -> None:
    """Project monthly cost by strategy, model and number of users, from scaled simulation.

    For each number of users N, n = min(N, --sim-users) users of the scenario are
    simulated (same seed) for its days, with the chat and embedding limits (rpm,
    tpm, concurrency) multiplied by n / N: the simulated users hold their pro-rata
    share of the account, so queueing, timeouts and failed turns show as they would
    among N users. Their cost and tokens per user per month (total / days × 30 / n)
    are multiplied by N. Each row also shows failed turns, timeouts, failed calls
    and p99 latency: failed calls are not billed, so read cost and failures together.

    Prices: genai-prices for each --model at the scenario's pricing.price_date. Every
    model gets the scenario's latency and limits. The n users also hold their share of
    the store's concurrency and the background workers (the rule of sharded runs); n
    users are burstier than N, so near the limits the projection errs towards more
    queueing (raise --sim-users to narrow it).

    Writes projection.json, projection.md, projection.png and projection.svg.
    """
    from memsim.studies import projection as study
    from reports import projection

    try:
        sizes = parse_sizes(users)
        scn, source = _load(scenario, settings=settings)
        models = model or [scn.llm.model]
        study.check(scn, source, models, sim_users)  # fail fast, before the output folder
        out_dir = out if out is not None else Path("out") / f"{scn.name}-projection"
        started = time.perf_counter()
        with _output_folder(out_dir, projection.FILES) as new_dir:  # replaced once complete
            with _progress(quiet) as progress:
                document = study.project(
                    scn, source, sizes, models, sim_users, _progress_factory(progress)
                )
            projection.write_projection(document, new_dir)
    except ConfigError as err:
        raise _fail(str(err)) from None
    if not quiet:
        console = Console()
        projection.print_projection(console, document)
        console.print(
            f"wrote {out_dir}/ ({', '.join(projection.FILES)}) in "
            f"{time.perf_counter() - started:.1f} s"
        )


@app.command()
def sweep(
    sweep_file: Annotated[
        Path, typer.Argument(help="A sweep file (TOML): scenario, strategies, seeds, grid.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Output folder; default: out/sweep-<sweep file stem>.")
    ] = None,
    executor: Annotated[
        str, typer.Option(help="local (a process pool) or ray (a local instance, or --address).")
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes, or CPUs of a local Ray instance; default: all CPUs."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="An existing Ray cluster: ray://head:10001, or auto.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no table.")
    ] = False,
) -> None:
    """Run a grid of scenario overrides × strategies × seeds; write sweep.json, .csv, .md, heatmaps.

    Each run is saved in OUT/runs/ as soon as it finishes, under the hash of its
    resolved configuration: run the sweep again (after an interruption, or with
    more seeds) and only the runs not saved yet are simulated.
    """
    from memsim.studies.sweep import run_sweep
    from reports import sweep as sweep_report
    from sim.executors import default_workers
    from sim.sweep import load_sweep

    try:
        if executor not in ("local", "ray"):
            raise ConfigError(f"--executor: {executor!r}: expected local or ray")
        if address and executor != "ray":
            raise ConfigError("--address: a Ray cluster needs --executor ray")
        plan = load_sweep(sweep_file)
        out_dir = out if out is not None else Path("out") / f"sweep-{plan.name}"
        prepare_out_dir(out_dir)
        started = time.perf_counter()
        with _progress(quiet, "runs") as progress:
            outcome = run_sweep(
                plan,
                out_dir,
                executor,  # type: ignore[arg-type]  # checked above
                workers or default_workers(),
                address,
                warn=lambda text: err_console.print(
                    f"memsim: warning: {text}", markup=False, highlight=False
                ),
                **_sweep_callbacks(progress, lambda done, todo: plan.describe(out_dir, done, todo)),
            )
        document = sweep_report.write_sweep(plan, outcome.summaries, out_dir)
    except ConfigError as err:
        raise _fail(str(err)) from None
    if not quiet:
        console = Console()
        sweep_report.print_table(console, document)
        console.print(
            f"wrote {out_dir}/ (sweep.json, sweep.csv, sweep.md, heatmaps, runs/) in "
            f"{time.perf_counter() - started:.1f} s"
        )


def _sweep_callbacks(progress: Progress, describe: Callable[[int, int], str]) -> dict:
    """``on_start`` says what is saved and what will run; ``on_run`` advances the bar."""
    task: list = []

    def on_start(cached: int, to_run: int) -> None:
        if not progress.disable:
            progress.console.print(describe(cached, to_run), markup=False, highlight=False)
        task.append(progress.add_task("sweep", total=to_run))

    return {"on_start": on_start, "on_run": lambda: progress.advance(task[0])}


@app.command()
def fit(
    log: Annotated[
        Path | None, typer.Option(help="A call log to fit (JSON lines, or OTLP JSON).")
    ] = None,
    log_format: Annotated[
        str, typer.Option("--format", help="The log's format: openai, serve-mock or otel.")
    ] = "openai",
    base_url: Annotated[
        str | None,
        typer.Option(help="Measure this live OpenAI-compatible endpoint instead of a log."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="The model to measure (live).")] = None,
    scenario: Annotated[
        str, typer.Option(help="Scenario whose prompts a live measurement sends.")
    ] = "support-bot",
    requests: Annotated[int, typer.Option(min=1, help="Requests to send (live).")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight (live).")] = 4,
    rps: Annotated[
        float | None, typer.Option(min=0.01, help="Most requests started per second (live).")
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of each request.")] = 300,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key (live).")
    ] = "OPENAI_API_KEY",
    check_run: Annotated[
        Path | None,
        typer.Option(
            help="Instead of fitting: send a run's own LLM calls (its calls.parquet, at "
            "most --requests of them) to --base-url at their sizes and compare p50/p95."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Profile file to write; reports beside it.")
    ] = Path("out/fit/profile.json"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fit memsim's LLM latency model to your own calls; write profile.json and fit-report.

    From a log (--log FILE --format openai|serve-mock|otel) or live (--base-url URL
    --model M: streamed requests built from the scenario's own prompts; the key is
    read from --api-key-env and never written). Every 5th call is held out: the
    report gives the fitted profile's latency MAPE, p50/p95 and output-length KS
    distance on them. Use the profile with `memsim run --llm-profile FILE` or
    `[llm] profile = "FILE"`.

    With --check-run OUT/calls.parquet (and --base-url, --model) it checks a run
    instead: each of the run's LLM calls is sent as a prompt of its input tokens
    (answered at the endpoint's own length, up to --max-tokens), and the run's
    p50/p95 latency is set beside the endpoint's on the same calls
    (check-report.json beside --output).
    """
    from memsim.studies import fit as study
    from sim.calllog import read_calls

    try:
        if (log is None) == (base_url is None):
            raise ConfigError("give either --log FILE or --base-url URL (with --model)")
        if check_run is not None:
            if base_url is None:
                raise ConfigError("--check-run: needs --base-url URL (with --model)")
            live = LiveFit(base_url, model or "", requests, concurrency, rps, max_tokens)
            _check_run(live, check_run, api_key_env, yes, output.parent, quiet)
            return
        if log is not None:
            calls = read_calls(log, log_format)
            source = {"kind": "log", "file": str(log), "format": log_format, "calls": len(calls)}
        else:
            measurements = output.parent / "measurements.jsonl"
            live = LiveFit(base_url or "", model or "", requests, concurrency, rps, max_tokens)
            scn, _ = _load(scenario)
            prompts = study.live_prompts(scn, live.requests)
            _measure(live, prompts, api_key_env, yes, measurements, quiet)
            calls = read_calls(measurements, "openai")
            source = {
                "kind": "live",
                "base_url": base_url,
                "model": model,
                "measurements": str(measurements),
                "calls": len(calls),
            }
        profile_doc, report_doc = study.fit_calls(calls, source)
        paths = study.write_fit(profile_doc, report_doc, output)
    except ConfigError as err:
        raise _fail(str(err)) from None
    _print_fit(profile_doc)
    typer.echo(f"wrote {', '.join(str(p) for p in paths)}")


@dataclass(frozen=True)
class LiveFit:
    """What `memsim fit --base-url` measures."""

    base_url: str
    model: str
    requests: int
    concurrency: int
    rps: float | None
    max_tokens: int


def _check_run(
    live: LiveFit, calls_file: Path, api_key_env: str, yes: bool, folder: Path, quiet: bool
) -> None:
    """`memsim fit --check-run`: the run's calls at their sizes against the endpoint."""
    import pandas as pd

    from memsim.studies import fit as study

    if not calls_file.is_file():
        raise ConfigError(f"--check-run: {calls_file}: no such file")
    try:
        calls = pd.read_parquet(calls_file)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--check-run: {calls_file}: {str(err).splitlines()[0]}") from None
    prompts, chosen = study.run_prompts(calls, live.requests, live.max_tokens)
    measurements = folder / "check-measurements.jsonl"
    _measure(live, prompts, api_key_env, yes, measurements, quiet)
    report = {"run": str(calls_file), "base_url": live.base_url, "model": live.model}
    report["latency"] = study.check_run(prompts, chosen, measurements)
    path = folder / "check-report.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    _print_check_run(report["latency"])
    typer.echo(f"wrote {path} (measurements: {measurements})")


def _print_check_run(rows: dict) -> None:
    from rich.table import Table

    table = Table(
        "calls",
        "n",
        "p50 run",
        "p50 endpoint",
        "p50 err",
        "p95 run",
        "p95 endpoint",
        "p95 err",
        "output tokens run / endpoint",
        title="memsim fit --check-run (the run's modelled latency against the endpoint's)",
    )
    for purpose, r in rows.items():
        table.add_row(
            purpose,
            str(r["calls"]),
            *(
                cell
                for q in (50, 95)
                for cell in (
                    f"{r[f'p{q}_run_s']:.3f} s",
                    f"{r[f'p{q}_measured_s']:.3f} s",
                    f"{r[f'p{q}_error_pct']:+.1f}%",
                )
            ),
            f"{r['output_tokens_mean_run']:.0f} / {r['output_tokens_mean_measured']:.0f}",
        )
    Console().print(table)


def _measure(
    live: LiveFit,
    prompts: list,
    api_key_env: str,
    yes: bool,
    measurements: Path,
    quiet: bool,
) -> None:
    """Say what it will cost, ask to confirm, then measure live into ``measurements``."""
    from memsim.studies import fit as study

    if not live.model:
        raise ConfigError("--model: required with --base-url")
    api_key = os.environ.get(api_key_env)
    if not api_key:
        raise ConfigError(f"--api-key-env: ${api_key_env} is not set")
    tokens_in, tokens_out = study.estimate_tokens(prompts, live.max_tokens)
    typer.echo(
        f"memsim fit: {len(prompts)} streamed requests to {live.base_url} ({live.model}): "
        f"about {tokens_in:,} input and at most {tokens_out:,} output tokens"
        f"{_usd(live.model, tokens_in, tokens_out)}"
    )
    if not yes and not typer.confirm("send them?", default=False):
        raise typer.Exit(1)
    client = study.connect(live.base_url, api_key)
    with _progress(quiet, "requests") as progress:
        task = progress.add_task("measuring", total=len(prompts))
        try:
            study.measure_live(
                client,
                live.model,
                prompts,
                measurements,
                live.concurrency,
                live.rps,
                live.max_tokens,
                lambda: progress.advance(task),
            )
        except Interrupted as stop:
            note = (
                f"the calls measured so far are in {measurements} "
                f"(fit them with: memsim fit --log {measurements})"
            )
            raise Interrupted(stop.signum, note) from None


def _usd(model: str, tokens_in: int, tokens_out: int) -> str:
    """``, at most ≈ $X …`` at genai-prices' price of ``model`` today; nothing if unknown."""
    from datetime import date

    from sim.pricing import chat_rates

    try:
        rates = chat_rates(model, "openai", date.today().isoformat())
    except Exception:  # a model genai-prices does not know: tokens only
        return ""
    usd = tokens_in * rates.input_usd_per_token + tokens_out * rates.output_usd_per_token
    return f", at most ≈ ${usd:,.2f} at {model}'s list price"


def _print_fit(profile_doc: dict) -> None:
    from rich.table import Table

    table = Table(
        "model",
        "ttft base",
        "prefill /1k",
        "decode",
        "σ",
        "latency MAPE",
        "p50 err",
        "p95 err",
        title="memsim fit (errors on the held-out calls)",
    )
    for model, e in profile_doc["models"].items():
        overall = e["fit_error"]["overall"]
        table.add_row(
            model,
            f"{e['ttft_base_s']:.3f} s",
            f"{e['prefill_s_per_token'] * 1e6:.2f} ms",
            f"{e['decode_tokens_per_s']:.1f} tok/s",
            f"{e['jitter_sigma']:.3f}",
            f"{overall['latency_mape_pct']:.1f}%",
            f"{overall['p50_error_pct']:+.1f}%",
            f"{overall['p95_error_pct']:+.1f}%",
        )
    Console().print(table)


@app.command("serve-mock")
def serve_mock(
    scenario: Annotated[
        str, typer.Argument(help="A scenario file or shipped name: its mock LLM and embedder.")
    ] = "support-bot",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 8000,
    simulate_latency: Annotated[
        bool,
        typer.Option(
            "--simulate-latency",
            help="Sleep each request's modelled latency (a stream paced: first token at the "
            "modelled time to first token); default: only report it, in the "
            "x-memsim-latency-s header and the record.",
        ),
    ] = False,
    record: Annotated[
        Path | None, typer.Option(help="Append one JSON line per request to this file.")
    ] = None,
) -> None:
    """Serve the scenario's mock LLM and embedder as an OpenAI-compatible API until Ctrl-C.

    Endpoints: /v1/chat/completions, /v1/embeddings, /v1/models. Point a client
    at http://HOST:PORT/v1 with any API key. Answers are deterministic; `usage`
    holds real cl100k token counts.

    It speaks the API's dialect: `stream` (server-sent chunks that join to the
    answer; `stream_options.include_usage` adds the usage chunk), `n` choices
    (all billed in `usage`), and every error in OpenAI's shape. Known models
    are the scenario's chat and embedding models (what /v1/models lists, and
    their dated snapshots): any other is 404 model_not_found; an unknown
    message role is 400.

    Stop with Ctrl-C (or SIGTERM): exit code 0.
    """
    from sim.serve import MockBackend, MockServer

    try:
        scn, _ = _load(scenario)
        if record is not None:
            prepare_out_dir(record.parent if str(record.parent) else Path("."))
        server = MockServer(MockBackend.from_scenario(scn, record), host, port, simulate_latency)
        try:
            server.start()
        except (RuntimeError, OSError) as err:
            raise ConfigError(f"--port: cannot serve on {host}:{port} ({err})") from None
    except ConfigError as err:
        raise _fail(str(err)) from None
    typer.echo(
        f"memsim serve-mock: {scn.name} on {server.base_url} "
        f"(models: {', '.join(server.backend.models)}); Ctrl-C to stop",
    )
    try:
        while server.running:
            time.sleep(0.2)
    except Interrupted:
        pass
    finally:
        server.stop()
    typer.echo(f"memsim serve-mock: stopped after {len(server.backend.records):,} requests")


class Interrupted(BaseException):
    """Raised by the SIGINT and SIGTERM handlers of :func:`main`.

    Not a ``KeyboardInterrupt``: the command-line framework would turn that into
    its own exit code before :func:`main` could report it. ``note`` says what the
    command's output folder holds now.
    """

    def __init__(self, signum: int, note: str = "earlier results, if any, are intact") -> None:
        super().__init__(signum, note)
        self.signum = signum
        self.note = note


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextmanager
def _output_folder(
    out: Path, owned: Collection[str], on_replace: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """A new folder that replaces ``out`` once the block ends (``ReplacedFolder``).

    An interrupt on the way out carries what ``out`` then holds: the earlier
    results, untouched, or (past the swap) the new ones, complete.
    """
    folder = ReplacedFolder(out, owned, on_replace)
    try:
        with folder as new_dir:
            yield new_dir
    except Interrupted as stop:
        raise Interrupted(stop.signum, folder.status()) from None


def _say_replacing(out: Path) -> None:
    """One line on stderr (even with -q) before a run replaces an earlier one."""
    err_console.print(
        f"memsim: warning: replacing the earlier run in {out} ({earlier_run(out)})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:
    """Console-script entry point.

    An interrupted command (Ctrl-C, SIGTERM) prints one line saying what its
    output folder holds and exits with 128 + the signal's number: 130 for SIGINT,
    143 for SIGTERM (bad input stays 2). A run's folder is replaced only once the
    new one is complete (``reports.output.ReplacedFolder``), and single files only
    by renaming finished ones into place, so the earlier results stay as they were.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except Interrupted as why:
        err_console.print(
            f"memsim: interrupted ({signal.Signals(why.signum).name}); {why.note}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(128 + why.signum)
