"""The ``fedalign`` command: thin, it only parses arguments and calls the library.

Each subcommand is a pair of functions, ``_add_<cmd>(subparsers)`` that declares its
arguments and ``_run_<cmd>(args) -> int`` that runs it and returns the exit status; adding a
command is one more pair and one line in :data:`_COMMANDS`.

Exit statuses: 0 success; 1 the request was understood but could not be carried out
(infeasible problem, unsupported or unavailable solver, solver failure, unwritable output);
2 bad input (command line, JSON, problem fields). Errors are one line on stderr,
``fedalign <cmd>: error: <message>``, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["build_parser", "main"]

#: Exit status when the input is bad.
EXIT_USAGE = 2
#: Exit status when a valid request cannot be carried out.
EXIT_FAILURE = 1


class CommandError(Exception):
    """A command failed in a way it can explain in one line; carries the exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


def _fail(command: str, message: object) -> None:
    """Print the one-line error of ``command`` on stderr."""
    text = " ".join(str(message).split())
    prog = f"fedalign {command}" if command else "fedalign"
    print(f"{prog}: error: {text}", file=sys.stderr)


# --------------------------------------------------------------------------- solve


def _add_solve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "solve",
        help="solve one alignment problem given as JSON",
        description=(
            "Read an alignment problem as a JSON object whose fields are AlignmentProblem's "
            "arguments (docs/problem.md), solve it, and write the assignment as JSON."
        ),
    )
    p.add_argument("problem", metavar="PROBLEM.json", help="problem file, or - for stdin")
    p.add_argument("--solver", default="auto", help="solver name (default: auto)")
    p.add_argument(
        "--solvers", default=None, metavar="S1,S2,...",
        help="compare several solvers: print a table (objective, bound, gap to the best "
        "bound any of them proved, runtime, status) instead of one JSON result",
    )
    p.add_argument("--time-limit", type=float, default=None, metavar="SEC", help="seconds")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed")
    p.add_argument(
        "--output", "-o", default=None, metavar="FILE", help="write the JSON here, not stdout"
    )
    p.set_defaults(run=_run_solve, command="solve")


def _run_solve(args: argparse.Namespace) -> int:
    import fedalign as fa
    from fedalign.solvers import get_solver

    from ._fd import stdout_to_stderr

    # Check the options before reading anything, so their errors name the flag.
    names = [args.solver] if args.solvers is None else [s.strip() for s in args.solvers.split(",") if s.strip()]
    flag = "--solver" if args.solvers is None else "--solvers"
    if not names:
        raise CommandError("--solvers: expected comma-separated solver names")
    for name in names:
        try:
            get_solver(name)
        except fa.SolverUnavailableError as exc:
            raise CommandError(f"SolverUnavailableError: {exc}", EXIT_FAILURE) from None
        except ValueError as exc:
            raise CommandError(f"{flag}: {str(exc).removeprefix('solver: ')}") from None
    limit = args.time_limit
    if limit is not None and not (math.isfinite(limit) and limit > 0):
        raise CommandError(f"--time-limit: expected seconds > 0, got {limit!r}")
    if args.seed is not None and args.seed < 0:
        raise CommandError(f"--seed: expected an int >= 0, got {args.seed}")

    problem = problem_from_json(_read_json(args.problem))
    if args.solvers is not None:
        return _compare(problem, names, limit, args)
    try:
        # stdout carries the JSON result; a back-end's banner there would corrupt it.
        with stdout_to_stderr():
            solution = fa.solve(problem, args.solver, time_limit=limit, seed=args.seed)
    except (fa.InfeasibleError, fa.UnsupportedProblemError, fa.SolverUnavailableError) as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}", EXIT_FAILURE) from None
    except fa.AlignmentError as exc:  # a solver returned an infeasible plan (a bug it reports)
        raise CommandError(str(exc), EXIT_FAILURE) from None
    _write(args.output, format_json(solution.to_json_dict()))
    return 0


#: What each column of ``fedalign solve --solvers`` means (printed under the table).
COMPARE_HEADERS = (
    ("objective", "desirability of the plan minus the soft rows' penalties (higher is better)"),
    ("bound", "the solver's own proven upper bound on the optimum ('-': it proves none)"),
    ("gap", "(best bound - objective) / max(1, |best bound|), against the smallest bound any "
            "solver of this table proved: an honest distance to the optimum"),
    ("seconds", "wall-clock seconds of the call, failed runs included"),
    ("status", "optimal (proven), feasible, or why it has no plan (infeasible, time limit, "
               "unsupported rows); OVER THE TIME LIMIT when it ended later than the limit "
               "+ max(10 %, 0.2 s)"),
)


def _compare(problem: Any, names: list[str], limit: float | None, args: argparse.Namespace) -> int:
    """Solve with each solver; print the comparison table (and write the runs as JSON with -o)."""
    import fedalign as fa

    from ._fd import stdout_to_stderr
    from .bench.runner import over_limit

    runs: list[dict[str, Any]] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            with stdout_to_stderr():
                sol = fa.solve(problem, name, time_limit=limit, seed=args.seed)
            run: dict[str, Any] = {"name": name, **sol.to_json_dict()}
        except (fa.InfeasibleError, fa.UnsupportedProblemError) as exc:
            run = {"name": name, "status": type(exc).__name__, "error": str(exc)}
        except fa.AlignmentError as exc:  # a solver bug it reports: keep comparing
            run = {"name": name, "status": "error", "error": str(exc)}
        # Wall-clock seconds of the call, failed runs included, judged against the limit.
        run["seconds"] = time.perf_counter() - t0
        run["over_limit"] = limit is not None and over_limit(run["seconds"], limit)
        runs.append(run)
    print(format_comparison(runs))
    if args.output is not None:
        _write(args.output, json.dumps({"runs": runs}, indent=1) + "\n")
    return 0


def format_comparison(runs: list[dict[str, Any]]) -> str:
    """The ``--solvers`` table: one line per run, the headers explained underneath."""
    bounds = [r["bound"] for r in runs if r.get("bound") is not None]
    best = min(bounds) if bounds else None
    head = f"{'solver':<12} {'objective':>14} {'bound':>14} {'gap':>9} {'seconds':>8}  status"
    lines = [head, "-" * len(head)]
    for r in runs:
        obj, bound = r.get("objective"), r.get("bound")
        gap = None
        if obj is not None and best is not None:
            gap = max(0.0, (best - obj) / max(1.0, abs(best)))
        chosen = f" ({r['solver']})" if r.get("solver") not in (None, r["name"]) else ""
        over = " OVER THE TIME LIMIT" if r.get("over_limit") else ""
        status = r["status"] + chosen + over + (f": {r['error'][:80]}" if "error" in r else "")
        lines.append(
            f"{r['name']:<12} {_num(obj, '14.6g'):>14} {_num(bound, '14.6g'):>14} "
            f"{_num(gap, '9.3%'):>9} {_num(r.get('seconds', r.get('runtime')), '8.3f'):>8}  {status}"
        )
    lines.append("")
    lines.extend(f"  {name:<10} {meaning}" for name, meaning in COMPARE_HEADERS)
    return "\n".join(lines)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _read_json(source: str) -> Any:
    """Parse the JSON document at ``source`` (``-`` for stdin).

    A FIFO or ``/dev/fd/N`` (``fedalign solve <(cmd)``) is read like a file. Every way the
    text can fail to be one JSON document is a :class:`CommandError` (exit 2): not UTF-8,
    invalid syntax, an object repeating a key, nesting deeper than Python's JSON parser
    recurses (it raises ``RecursionError``), an integer longer than Python converts (it
    raises ``ValueError``).
    """
    label = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"PROBLEM.json: cannot read {label}: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"PROBLEM.json: {label} is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})"
        ) from None
    except RecursionError:
        raise CommandError(f"PROBLEM.json: {label} is nested too deeply to read") from None
    except ValueError as exc:  # a duplicate key, or an integer beyond int's str limit
        raise CommandError(f"PROBLEM.json: {label} is not valid JSON ({exc})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; a repeated key is an error (json keeps the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {json.dumps(key)[:60]} appears twice in one object")
        out[key] = value
    return out


def problem_from_json(data: Any) -> Any:
    """Build an :class:`~fedalign.AlignmentProblem` from a parsed JSON document.

    Parameters
    ----------
    data : object
        The parsed ``PROBLEM.json``; it must be a JSON object (a dict).

    Returns
    -------
    AlignmentProblem

    Raises
    ------
    CommandError
        Not an object, or anything :meth:`AlignmentProblem.from_dict` refuses; the message
        names the field (and position where there is one).
    """
    from .errors import InvalidProblemError
    from .problem import AlignmentProblem

    if not isinstance(data, dict):
        kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        got = kinds.get(type(data), "a number")
        raise CommandError(f"PROBLEM.json: expected a JSON object, got {got}")
    try:
        return AlignmentProblem.from_dict(data)
    except InvalidProblemError as exc:
        raise CommandError(str(exc)) from None


def format_json(result: dict[str, Any]) -> str:
    """Indented JSON with each client's expert list on its own single line."""
    lines = ["{"]
    items = list(result.items())
    for k, (key, value) in enumerate(items):
        comma = "," if k < len(items) - 1 else ""
        if key == "assignment" and isinstance(value, dict) and value:
            rows = [f"    {json.dumps(c)}: {json.dumps(e)}" for c, e in value.items()]
            lines.append(f"  {json.dumps(key)}: {{\n" + ",\n".join(rows) + f"\n  }}{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _write(output: str | None, text: str) -> None:
    """Write ``text`` to stdout (``None`` or ``-``) or whole to the file ``output``.

    The file is written through a temporary file created exclusively under a unique name
    in the same directory, then renamed over ``output`` (:mod:`fedalign._files`): a reader
    never sees half a result, and a directory or FIFO is never replaced.
    """
    from ._files import write_text_atomic

    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_text_atomic(output, text)
    except OSError as exc:
        raise CommandError(f"--output: cannot write {output}: {exc}", EXIT_FAILURE) from None


# --------------------------------------------------------------------------- simulate, demo


def _add_simulate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="federated MoE runs comparing assignment strategies (the paper's Fig. 3)",
        description=(
            "Train a small Mixture-of-Experts federatedly under each strategy and seed "
            "(random, greedy, load-balanced, load-balanced/<solver>, and in the cross-device "
            "scenario oort and balanced) and write DIR/results.json, DIR/summary.md and plots "
            "(docs/experiments.md)."
        ),
    )
    p.add_argument("--quick", action="store_true", help="the quick variant (minutes)")
    p.add_argument(
        "--scenario",
        choices=("fig3", "cross-device"),
        default="fig3",
        help="fig3: 20 clients, all online (default); cross-device: 1,000 devices, budgets",
    )
    p.add_argument(
        "--gate",
        choices=("global", "local", "both"),
        default="global",
        help="averaged gate, each client's own (cross-device), or both side by side",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="first seed (default 0)")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="K",
        help="number of seeds (default 5; quick: 2, cross-device 1)",
    )
    p.add_argument(
        "--strategies",
        default=None,
        metavar="S1,S2,...",
        help="comma-separated, each optionally @global or @local (default fig3: "
        "random,greedy,load-balanced,load-balanced/flow; cross-device: see docs/experiments.md)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "flower", "nvflare"),
        default="local",
        help="runtime: in-process, Flower's simulation engine, or NVIDIA FLARE's simulator",
    )
    p.add_argument("--dataset", choices=("digits", "mnist1d", "cifar10"), default=None)
    p.add_argument("--partition", choices=("domain", "label-skew", "dirichlet"), default=None)
    p.add_argument("--rounds", type=int, default=None, metavar="R", help="federated rounds")
    p.add_argument(
        "--lr", type=float, default=None, metavar="LR",
        help="clients' local learning rate (default: the scenario's)",
    )  # fmt: skip
    p.add_argument(
        "--data-root", default=None, metavar="DIR", help="CIFAR-10 python batches folder"
    )
    p.add_argument("--out", default="fedalign-results", metavar="DIR", help="output folder")
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N",
        help="run seeds side by side in N worker processes (local engine; default 1)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threat_flags(p)
    p.set_defaults(run=_run_simulate, command="simulate")


def _add_threat_flags(p: argparse.ArgumentParser) -> None:
    """Attacks, defenses, fairness and privacy (docs/trust.md); local engine only."""
    g = p.add_argument_group("trust, fairness and privacy (docs/trust.md)")
    g.add_argument(
        "--attack",
        choices=("reward-inflation", "capacity-lie", "poison", "free-ride"),
        default=None,
        help="attackers' behaviour (default: none)",
    )
    g.add_argument(
        "--attackers", type=float, default=None, metavar="SHARE",
        help="share of attacking clients with --attack (default 0.2)",
    )  # fmt: skip
    g.add_argument(
        "--defense", default=None, metavar="D1,D2,...",
        help="median|trimmed-mean|clipped-mean, weight-cap, screen, validation, trust, "
        "reward-check, all or none (default none)",
    )  # fmt: skip
    g.add_argument(
        "--max-idle-rounds", type=int, default=None, metavar="W",
        help="fairness floor: an idle client gets an expert after W offered rounds",
    )  # fmt: skip
    g.add_argument(
        "--ldp-epsilon", type=float, default=None, metavar="E",
        help="local differential privacy of each reward report (epsilon per report)",
    )  # fmt: skip
    g.add_argument(
        "--ldp-mechanism", choices=("laplace", "duchi", "best-expert"), default="laplace",
        help="LDP mechanism with --ldp-epsilon (default laplace; best-expert: each client "
        "reports which expert of all suits it best, k-ary randomized response)",
    )  # fmt: skip
    g.add_argument(
        "--exploration-weight", type=float, default=None, metavar="X",
        help="the scheduler's exploration_weight (default: its own)",
    )  # fmt: skip
    g.add_argument(
        "--audit", action="store_true",
        help="report what the assignments leak about each client's domain",
    )  # fmt: skip


def _threats(args: argparse.Namespace) -> Any:
    """The ThreatConfig of the flags (None for a clean run on another engine)."""
    try:
        from .sim.threats import ThreatConfig
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"needs the sim extra (pip install 'fedalign[sim]'): {exc}", EXIT_FAILURE
        ) from None
    if args.attack is None and args.attackers is not None:
        raise CommandError("--attackers: needs --attack KIND")
    share = 0.2 if args.attackers is None else args.attackers
    try:
        config = ThreatConfig(
            attack=args.attack,
            attackers=share if args.attack else 0.0,
            defenses=args.defense,
            max_idle_rounds=args.max_idle_rounds,
            ldp_epsilon=args.ldp_epsilon,
            ldp_mechanism=args.ldp_mechanism,
            audit=args.audit,
            exploration_weight=args.exploration_weight,
        )
    except ValueError as exc:
        raise CommandError(_sim_flag(str(exc))) from None
    if args.engine != "local":
        if config != ThreatConfig():
            raise CommandError(
                "--attack, --defense, --max-idle-rounds, --ldp-epsilon, --exploration-weight "
                f"and --audit run only with --engine local, not {args.engine!r}"
            )
        return None
    return config


def _run_simulate(args: argparse.Namespace) -> int:
    strategies = None
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    threats = _threats(args)  # before any adapter import: a bad flag fails fast
    # fedalign.sim never imports an adapter: the CLI hands it the adapter's runner
    runner = None if args.engine == "local" else _engine_runner(args.engine)
    return _call_sim(
        "simulate",
        quick=args.quick,
        seed=args.seed,
        seeds=args.seeds,
        strategies=strategies,
        engine=args.engine,
        runner=runner,
        dataset=args.dataset,
        partition=args.partition,
        rounds=args.rounds,
        lr=args.lr,
        data_root=args.data_root,
        out=args.out,
        progress=not args.no_progress,
        threats=threats,
        scenario=args.scenario,
        gate=args.gate,
        jobs=args.jobs,
    )


def _engine_runner(name: str) -> Callable[..., Any]:
    """``run_strategy`` of the adapter behind ``--engine NAME`` (``flower`` or ``nvflare``)."""
    framework = {"flower": "Flower", "nvflare": "NVIDIA FLARE"}[name]
    try:
        if name == "flower":
            from .flower import engine
        else:
            from .nvflare import engine  # type: ignore[no-redef]
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"--engine: {name!r} needs fedalign.{name}.engine and {framework} "
            f"(pip install 'fedalign[{name},sim]'); import failed: {exc}",
            EXIT_FAILURE,
        ) from None
    return engine.run_strategy  # type: ignore[no-any-return]


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the quick strategy comparison on the bundled digits data",
        description=(
            "Run the quick comparison (fedalign simulate --quick) on scikit-learn's digits, "
            "print the table, and write results.json, summary.md and plots."
        ),
    )
    p.add_argument("--out", default="fedalign-demo", metavar="DIR", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_demo, command="demo")


def _run_demo(args: argparse.Namespace) -> int:
    return _call_sim("demo", out=args.out, progress=not args.no_progress)


def _call_sim(command: str, **kwargs: Any) -> int:
    """Call :mod:`fedalign.sim.experiments`; map its errors to exit statuses."""
    try:
        from .sim import experiments
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"needs the sim extra (pip install 'fedalign[sim]'): {exc}", EXIT_FAILURE
        ) from None
    try:
        if command == "demo":
            experiments.demo(**kwargs)
        else:
            experiments.simulate(**kwargs)
    except ValueError as exc:
        raise CommandError(_sim_flag(str(exc))) from None
    except FileNotFoundError as exc:
        raise CommandError(f"--data-root: {exc}") from None
    except (RuntimeError, OSError) as exc:
        raise CommandError(str(exc), EXIT_FAILURE) from None
    return 0


def _sim_flag(message: str) -> str:
    flags = (
        "strategies", "seeds", "rounds", "lr", "jobs", "engine", "dataset", "partition", "scenario", "gate",
        "attack", "attackers", "defense", "max_idle_rounds", "ldp_epsilon",
        "ldp_mechanism", "exploration_weight",
    )  # fmt: skip
    for arg, flag in ((a, "--" + a.replace("_", "-")) for a in flags):
        if message.startswith(f"{arg}:"):
            return f"{flag}: {message[len(arg) + 1 :].strip()}"
    return message


# --------------------------------------------------------------------------- bench


def _add_bench(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bench",
        help="solver optimality vs latency on instance families and OR-Library GAP",
        description=(
            "Run every solver under a time limit on the instance families (and the "
            "OR-Library GAP files with --orlib: the copy fedalign ships, or those of "
            "--orlib DIR), and write OUT/results.csv, "
            "DIR/results.json, a Pareto plot per family and a scaling plot "
            "(docs/benchmarks.md)."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small sizes, 2 seeds, 2 s: minutes")
    p.add_argument("--solvers", default=None, metavar="S1,S2,...", help="default: all")
    p.add_argument(
        "--orlib", nargs="?", const="bundled", default=None, metavar="DIR",
        help="add the OR-Library GAP instances: those fedalign ships, or the gap*.txt files of DIR",
    )
    p.add_argument(
        "--instance", nargs="+", action="extend", default=[], metavar="FILE.json",
        help="your own problems, in fedalign solve's format (one or more; then the generated "
        "families are left out unless --families names some)",
    )
    p.add_argument(
        "--families", default=None, metavar="F1,F2,...",
        help="generated instance families to run (default: all, or none with --instance)",
    )
    p.add_argument("--out", default="fedalign-bench", metavar="DIR", help="output folder")
    p.add_argument(
        "--time-limit", type=float, default=None, metavar="SEC",
        help="seconds per solver run (default 10, quick 2)",
    )
    p.add_argument(
        "--seeds", type=int, default=None, metavar="K", help="seeds per size (default 3, quick 2)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_bench, command="bench")


def _run_bench(args: argparse.Namespace) -> int:
    from . import bench

    solvers = None
    if args.solvers:
        solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise CommandError(f"--time-limit: expected seconds > 0, got {args.time_limit}")
    if args.seeds is not None and args.seeds < 1:
        raise CommandError(f"--seeds: expected an int >= 1, got {args.seeds}")
    if args.orlib not in (None, "bundled") and not Path(args.orlib).is_dir():
        raise CommandError(f"--orlib: {args.orlib} is not a directory")
    families = None if args.families is None else [f.strip() for f in args.families.split(",") if f.strip()]
    for path in args.instance:
        if not Path(path).is_file():
            raise CommandError(f"--instance: {path} is not a file")
    try:
        _, table = bench.bench(
            args.out,
            quick=args.quick,
            solvers=solvers,
            orlib=args.orlib,
            time_limit=args.time_limit,
            seeds=args.seeds,
            families=families,
            instances=args.instance,
            progress=not args.no_progress,
            log=lambda msg: print(msg, file=sys.stderr),
        )
    except ValueError as exc:
        message = str(exc)
        for arg in ("solvers", "families", "instances"):
            if message.startswith(arg):
                flag = "--instance" if arg == "instances" else f"--{arg}"
                message = flag + message[message.index(":"):]
        raise CommandError(message) from None
    except OSError as exc:
        raise CommandError(f"--out: {exc}", EXIT_FAILURE) from None
    print(table)
    print(f"wrote {Path(args.out) / 'results.csv'}, results.json and plots")
    return 0


# --------------------------------------------------------------------------- wiring

AddCommand = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: Every subcommand's ``_add_<cmd>``, in the order ``fedalign --help`` lists them.
_COMMANDS: list[AddCommand] = [_add_solve, _add_simulate, _add_demo, _add_bench]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, like every other error
    (argparse prints the usage lines first); subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``fedalign`` argument parser with every subcommand."""
    from . import __version__

    parser = _Parser(
        prog="fedalign",
        description="Which experts each client trains, every round of federated MoE training.",
    )
    parser.add_argument("--version", action="version", version=f"fedalign {__version__}")
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_Parser
    )
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fedalign`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        _fail("", "a command is required (see fedalign --help)")
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            # numpy's floating-point warnings would make an error more than one line
            warnings.simplefilter("ignore", RuntimeWarning)
            return run(args)
    except CommandError as exc:
        _fail(args.command, exc)
        return exc.status
    except KeyboardInterrupt:
        _fail(args.command, "interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        _fail(args.command, f"unexpected {type(exc).__name__}: {exc} (this is a bug; please report it)")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
