"""``fedalign solve``: JSON in, JSON out, one-line errors with the right exit status.

Most tests call :func:`fedalign.cli.main` in-process. Solvers used here are test doubles put
into the registry for one test (``monkeypatch``), so the command line is tested whatever
solvers exist; the examples are also solved with every available real solver, and one run
goes through a subprocess.
"""

from __future__ import annotations

import io
import json
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import fedalign as fa
from fedalign.cli import main, problem_from_json
from fedalign.solvers import base
from fedalign.solvers.base import Result, Solver
from strategies import brute_force, planted_problems

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


# --------------------------------------------------------------------------- test doubles


class BruteForceSolver(Solver):
    """Exact by enumeration (tiny problems only): a solver whose answer the tests know."""

    name = "test-bruteforce"
    exact = True

    def _solve(self, problem: fa.AlignmentProblem, *, budget: Any, rng: Any) -> Result:
        bf = brute_force(problem)
        if bf.assignment is None:
            raise fa.InfeasibleError("no feasible assignment (enumerated)")
        return Result(bf.assignment, bound=bf.optimum, optimal=True)


class EmptySolver(Solver):
    """Assigns nothing, and says something on stdout the way native back-ends do."""

    name = "test-empty"

    def _solve(self, problem: fa.AlignmentProblem, *, budget: Any, rng: Any) -> Result:
        print("banner from a chatty back-end")
        return Result(np.zeros(problem.shape, bool))


class NoKnapsackSolver(EmptySolver):
    name = "test-noknapsack"

    def unsupported_reason(self, problem: fa.AlignmentProblem) -> str | None:
        return "knapsack rows are not supported; use 'test-bruteforce'" if problem.has_knapsack else None


class MissingDependencySolver(EmptySolver):
    name = "test-missing"
    requires = ("fedalign_no_such_module",)
    extra = "nothing"


class CrashingSolver(EmptySolver):
    name = "test-crash"

    def _solve(self, problem: fa.AlignmentProblem, *, budget: Any, rng: Any) -> Result:
        raise RuntimeError("solver exploded")


class ValueErrorSolver(EmptySolver):
    """A solver bug that happens to be a ValueError: not the user's bad input."""

    name = "test-valueerror"

    def _solve(self, problem: fa.AlignmentProblem, *, budget: Any, rng: Any) -> Result:
        raise ValueError("zero-size array to reduction operation maximum")


class InfeasibleResultSolver(EmptySolver):
    name = "test-liar"

    def _solve(self, problem: fa.AlignmentProblem, *, budget: Any, rng: Any) -> Result:
        return Result(np.ones(problem.shape, bool))


DOUBLES = [
    BruteForceSolver,
    EmptySolver,
    NoKnapsackSolver,
    MissingDependencySolver,
    CrashingSolver,
    ValueErrorSolver,
    InfeasibleResultSolver,
]


@pytest.fixture(autouse=True)
def doubles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the test solvers into the registry for the duration of one test."""
    for cls in DOUBLES:
        monkeypatch.setitem(base._REGISTRY, cls.name, cls)


# --------------------------------------------------------------------------- helpers

TINY = {
    "client_ids": ["a", "b", "c"],
    "expert_ids": [10, 20],
    "desirability": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.5]],
    "max_experts": 1,
    "expert_max_clients": [2, 1],
}


def write(tmp_path: Path, data: Any, name: str = "problem.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def run(
    capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str | None = None
) -> tuple[int, str, str]:
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(argv)
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("fedalign solve: error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def assert_valid_output(data: dict[str, Any], result: dict[str, Any]) -> None:
    """The printed result is feasible for the problem and its numbers add up."""
    assert set(result) == {"assignment", "objective", "bound", "gap", "status", "solver", "runtime"}
    problem = problem_from_json(data)
    x = np.zeros(problem.shape, bool)
    assert list(result["assignment"]) == [str(c) for c in problem.client_ids]
    for i, cid in enumerate(problem.client_ids):
        for eid in result["assignment"][str(cid)]:
            x[i, problem.expert_position(eid)] = True
    assert fa.check(problem, x) == []
    assert result["objective"] == pytest.approx(problem.objective(x))
    assert result["status"] in {"optimal", "feasible"}
    assert isinstance(result["runtime"], float) and result["runtime"] >= 0
    if result["bound"] is None:
        assert result["gap"] is None
    else:
        assert result["bound"] >= result["objective"] - 1e-6 and result["gap"] >= 0


# --------------------------------------------------------------------------- success paths


def test_solve_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce"])
    assert code == 0, err
    result = json.loads(out)
    assert result["assignment"] == {"a": [10], "b": [20], "c": [10]}
    assert result["objective"] == pytest.approx(2.3)
    assert result["bound"] == pytest.approx(2.3) and result["gap"] == 0.0
    assert result["status"] == "optimal" and result["solver"] == "test-bruteforce"
    assert_valid_output(TINY, result)


def test_solve_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, ["solve", "-", "--solver", "test-bruteforce"], stdin=json.dumps(TINY))
    assert code == 0
    assert json.loads(out)["assignment"] == {"a": [10], "b": [20], "c": [10]}


def test_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.json"
    code, out, _ = run(
        capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", "--output", str(target)]
    )
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["objective"] == pytest.approx(2.3)
    assert {p.name for p in tmp_path.iterdir()} == {"problem.json", "out.json"}  # no temp left


def test_int_client_ids_become_json_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {**TINY, "client_ids": [7, 8, 9], "expert_ids": ["x", "y"]}
    code, out, _ = run(capsys, ["solve", write(tmp_path, data), "--solver", "test-bruteforce"])
    assert code == 0
    assert json.loads(out)["assignment"] == {"7": ["x"], "8": ["y"], "9": ["x"]}


def test_default_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {"desirability": [[1.0, -1.0], [0.0, 2.0]], "max_experts": 2}
    code, out, _ = run(capsys, ["solve", write(tmp_path, data), "--solver", "test-bruteforce"])
    assert code == 0
    assert json.loads(out)["assignment"] == {"0": [0], "1": [1]}


def test_solver_stdout_does_not_corrupt_the_json(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = main(["solve", write(tmp_path, TINY), "--solver", "test-empty"])
    out, err = capfd.readouterr()
    assert code == 0
    assert json.loads(out)["assignment"] == {"a": [], "b": [], "c": []}
    assert "banner from a chatty back-end" in err


def test_seed_and_time_limit_are_passed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", "--seed", "3", "--time-limit", "2.5"]
    code, out, _ = run(capsys, argv)
    assert code == 0 and json.loads(out)["status"] == "optimal"


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(planted_problems(max_clients=3, max_experts=3, max_pairs=9, json_ids=True))
def test_any_feasible_problem_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pair: tuple[fa.AlignmentProblem, np.ndarray]
) -> None:
    problem, _ = pair
    data = problem.to_dict()
    code, out, err = run(capsys, ["solve", "-", "--solver", "test-bruteforce"], stdin=json.dumps(data))
    assert code == 0, err
    result = json.loads(out)
    assert_valid_output(data, result)
    assert result["objective"] == pytest.approx(brute_force(problem).optimum)


# --------------------------------------------------------------------------- bad input: exit 2


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("{not json", ["not valid JSON", "line 1"]),
        ("", ["not valid JSON"]),
        ("[[1, 2]]", ["expected a JSON object", "an array"]),
        ('"problem"', ["expected a JSON object", "a string"]),
        ("{}", ["desirability", "missing"]),
        ('{"desirability": [[1]], "max_expert": 2}', ["max_expert", "unknown field", "max_experts"]),
        ('{"desirability": [[1, "x"]]}', ["desirability[0, 1]", "number", "string"]),
        ('{"desirability": [[1, true]]}', ["desirability[0, 1]", "boolean"]),
        ('{"desirability": [[1, null]]}', ["desirability[0, 1]", "null"]),
        ('{"desirability": [[1], [1, 2]]}', ["desirability"]),
        ('{"desirability": [1, 2]}', ["desirability", "2-D"]),
        ('{"desirability": [[NaN, 1]]}', ["desirability[0, 0]", "finite"]),
        ('{"desirability": [[1, 2]], "max_experts": -1}', ["max_experts[0]", ">= 0"]),
        ('{"desirability": [[1, 2]], "max_experts": "2"}', ["max_experts", "string"]),
        ('{"desirability": [[1, 2]], "max_experts": 1.5}', ["max_experts[0]", "integer"]),
        ('{"desirability": [[1, 2]], "min_experts": 2}', ["min_experts[0]", "max_experts[0]"]),
        ('{"desirability": [[1, 2]], "expert_memory": [1, 1]}', ["expert_memory", "client_memory"]),
        ('{"desirability": [[1, 2]], "train_time": [[1, 1]], "deadline": 0}', ["deadline[0]", "> 0"]),
        ('{"desirability": [[1, 2]], "allowed": [[1, 2]]}', ["allowed[0, 1]"]),
        ('{"desirability": [[1, 2]], "allowed": [["y", "n"]]}', ["allowed[0, 0]", "boolean"]),
        ('{"desirability": [[1, 2]], "expert_min_clients": [0, 2]}', ["expert_min_clients[1]"]),
        ('{"desirability": [[1, 2]], "client_ids": ["a", "b"]}', ["client_ids", "expected 1 ids"]),
        ('{"desirability": [[1], [2]], "client_ids": ["a", "a"]}', ["client_ids[1]", "duplicate"]),
        ('{"desirability": [[1], [2]], "client_ids": [1, "1"]}', ["client_ids[1]", "same JSON key"]),
        ('{"desirability": [[1], [2]], "client_ids": ["a", 1.5]}', ["client_ids[1]", "strings or integers"]),
        ('{"desirability": [[1], [2]], "client_ids": ["a", true]}', ["client_ids[1]", "strings or integers"]),
        ('{"desirability": [[1, 2]], "expert_ids": [[1], [2]]}', ["expert_ids[0]", "strings or integers"]),
        ('{"desirability": [[1, 2]], "expert_ids": "ab"}', ["expert_ids", "array"]),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], text: str, fragments: list[str]
) -> None:
    code, out, err = run(capsys, ["solve", "-", "--solver", "test-bruteforce"], stdin=text)
    assert code == 2 and out == ""
    assert_one_line_error(err, *fragments)


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ["solve", str(tmp_path / "nope.json")])
    assert code == 2 and out == ""
    assert_one_line_error(err, "cannot read", "nope.json")


def test_unknown_solver_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ["solve", write(tmp_path, TINY), "--solver", "nonesuch"])
    assert code == 2
    assert_one_line_error(err, "--solver", "nonesuch", "test-bruteforce")


def test_option_errors_come_before_reading_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ["solve", "/no/such/file.json", "--solver", "nonesuch"])
    assert code == 2
    assert_one_line_error(err, "--solver", "nonesuch")


@pytest.mark.parametrize("limit", ["0", "-1", "nan", "inf"])
def test_bad_time_limit_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: str) -> None:
    code, _, err = run(
        capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", f"--time-limit={limit}"]
    )
    assert code == 2
    assert_one_line_error(err, "--time-limit")


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ["solve", "-", "--seed", "abc"])
    assert code == 2 and "--seed" in err and "Traceback" not in err
    code, _, err = run(capsys, ["solve"])
    assert code == 2 and "PROBLEM.json" in err
    code, _, err = run(capsys, [])
    assert code == 2 and "fedalign: error:" in err and "command" in err
    code, _, err = run(capsys, ["frobnicate"])
    assert code == 2 and "frobnicate" in err


# --------------------------------------------------------------------------- cannot solve: exit 1


def test_infeasible_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {"desirability": [[1.0, 2.0], [3.0, 4.0]], "min_experts": 1, "expert_max_clients": [1, 0]}
    code, out, err = run(capsys, ["solve", write(tmp_path, data), "--solver", "test-bruteforce"])
    assert code == 1 and out == ""
    assert_one_line_error(err, "InfeasibleError")


def test_unsupported_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {**TINY, "expert_memory": [1, 1], "client_memory": [1, 1, 1]}
    code, _, err = run(capsys, ["solve", write(tmp_path, data), "--solver", "test-noknapsack"])
    assert code == 1
    assert_one_line_error(err, "UnsupportedProblemError", "test-bruteforce")


def test_unavailable_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ["solve", write(tmp_path, TINY), "--solver", "test-missing"])
    assert code == 1
    assert_one_line_error(err, "SolverUnavailableError", "fedalign_no_such_module", "fedalign[nothing]")


def test_solver_crash_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ["solve", write(tmp_path, TINY), "--solver", "test-crash"])
    assert code == 1
    assert_one_line_error(err, "RuntimeError", "solver exploded")


def test_solver_value_error_is_not_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, ["solve", write(tmp_path, TINY), "--solver", "test-valueerror"])
    assert code == 1
    assert_one_line_error(err, "ValueError", "bug")


def test_infeasible_result_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ["solve", write(tmp_path, TINY), "--solver", "test-liar"])
    assert code == 1 and out == ""
    assert_one_line_error(err, "infeasible assignment")


def test_unwritable_output_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing-dir" / "out.json"
    code, _, err = run(
        capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", "-o", str(target)]
    )
    assert code == 1
    assert_one_line_error(err, "--output")
    assert not target.parent.exists()


def test_output_temp_file_is_exclusive_and_unique(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file is created with O_EXCL under a fresh random name: a file (or a
    symbolic link to a victim) already at a drawn name is never written through; the next
    name is drawn."""
    import fedalign._files as files

    target = tmp_path / "out.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    trap = tmp_path / f".out.json.{'0' * 16}.tmp"
    trap.symlink_to(victim)
    draws = iter(["0" * 16, "1" * 16])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(draws))
    code, _, err = run(
        capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", "-o", str(target)]
    )
    assert code == 0, err
    assert victim.read_text() == "keep me" and trap.is_symlink()
    assert json.loads(target.read_text())["solver"] == "test-bruteforce"
    assert not (tmp_path / f".out.json.{'1' * 16}.tmp").exists()


def test_failed_output_write_leaves_old_file_and_no_temp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.json"
    target.write_text("old result")

    def boom(*args: object) -> None:
        raise OSError("disk pulled out")

    monkeypatch.setattr("os.replace", boom)
    code, _, err = run(
        capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", "-o", str(target)]
    )
    assert code == 1
    assert_one_line_error(err, "--output", "disk pulled out")
    assert target.read_text() == "old result"
    assert {p.name for p in tmp_path.iterdir()} == {"problem.json", "out.json"}


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_output_that_is_not_a_file_is_left_alone_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    import os
    import stat

    target = tmp_path / "out"
    if kind == "directory":
        target.mkdir()
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(target)
    code, _, err = run(
        capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", "-o", str(target)]
    )
    assert code == 1
    assert_one_line_error(err, "--output")
    mode = os.stat(target).st_mode
    assert stat.S_ISDIR(mode) if kind == "directory" else stat.S_ISFIFO(mode)
    assert {p.name for p in tmp_path.iterdir()} == {"problem.json", "out"}


def test_duplicate_json_keys_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """json keeps the last of two equal keys silently; the CLI refuses the document."""
    text = '{"desirability": [[1, 2]], "max_experts": 1, "desirability": [[3, 4]]}'
    code, out, err = run(capsys, ["solve", write(tmp_path, text), "--solver", "test-bruteforce"])
    assert code == 2 and out == ""
    assert_one_line_error(err, "PROBLEM.json", '"desirability" appears twice')


def test_numpy_warnings_never_reach_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two pairs worth 1e308 overflow the objective's sum; numpy's RuntimeWarning must not
    make stderr more than the one line a failure prints (here: nothing at all)."""
    data = {"desirability": [[1e308], [1e308]], "max_experts": 1}
    code, _, err = run(capsys, ["solve", write(tmp_path, data), "--solver", "test-bruteforce"])
    assert "Warning" not in err and "overflow" not in err, err


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"desirability": ' + "[" * 50_000 + "1" + "]" * 50_000 + "}", "nested too deeply"),
        ('{"desirability": [[1' + "0" * 5000 + "]]}", "not valid JSON"),
        ('{"desirability": [[1e400, 1]]}', "desirability[0, 0]: must be finite"),
        ('{"desirability": [[1, 2]], "client_ids": [{"a": 1}]}', "client_ids[0]"),
        ('{"desirability": [[true, 1]]}', "desirability[0, 0]"),
        ('{"desirability": [[1, 2]], "rows": [' + "[" * 500 + "]" * 500 + "]}", "rows[0]"),
    ],
    ids=["deep", "int-digits", "1e400", "dict-id", "bool", "deep-rows"],
)
def test_hostile_json_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    code, out, err = run(capsys, ["solve", write(tmp_path, text), "--solver", "test-bruteforce"])
    assert code == 2 and out == ""
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize("seed", ["-1", "-99999999999999999999"])
def test_negative_seed_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: str) -> None:
    code, out, err = run(capsys, ["solve", write(tmp_path, TINY), "--solver", "test-bruteforce", "--seed", seed])
    assert code == 2 and out == ""
    assert_one_line_error(err, "--seed: expected an int >= 0")


# --------------------------------------------------------------------------- version, examples


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, ["--version"])
    assert code == 0 and out.strip() == f"fedalign {fa.__version__}"


def test_help_lists_solve(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, ["--help"])
    assert code == 0 and "solve" in out


@pytest.mark.parametrize("example", ["small.json", "cohort.json"])
def test_examples_are_valid_feasible_problems(example: str) -> None:
    data = json.loads((EXAMPLES / example).read_text())
    problem = problem_from_json(data)
    assert problem.infeasibility_reason() is None
    assert all(isinstance(c, str) for c in problem.client_ids)
    assert problem.has_memory and not (problem.expert_memory == problem.expert_memory[0]).all()


def test_small_example_shape() -> None:
    problem = problem_from_json(json.loads((EXAMPLES / "small.json").read_text()))
    assert problem.shape == (6, 4)
    assert problem.expert_max_clients.max() < problem.n_clients


def test_cohort_is_reproducible() -> None:
    script = runpy.run_path(str(EXAMPLES / "make_cohort.py"))
    committed = (EXAMPLES / "cohort.json").read_text()
    assert script["dumps"](script["build_cohort"](0)) == committed
    assert json.loads(committed)["desirability"].__len__() == 200


@pytest.mark.parametrize("solver", fa.available_solvers())
@pytest.mark.parametrize("example", ["small.json", "cohort.json", "rows.json"])
def test_examples_solve_with_real_solvers(
    example: str, solver: str, capfd: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((EXAMPLES / example).read_text())
    code = main(["solve", str(EXAMPLES / example), "--solver", solver, "--time-limit", "10", "--seed", "0"])
    out, err = capfd.readouterr()
    if code == 1 and "UnsupportedProblemError" in err:
        assert fa.solvers.get_solver(solver).unsupported_reason(problem_from_json(data)) is not None
        return
    assert code == 0, err
    result = json.loads(out)
    assert_valid_output(data, result)
    assert result["solver"] == solver or solver == "auto"


def test_subprocess_module_run(tmp_path: Path) -> None:
    """``python -m fedalign.cli``: stdout is pure JSON, errors are one line, exit codes hold."""
    ok = subprocess.run(
        [sys.executable, "-m", "fedalign.cli", "solve", "-", "--solver", "greedy"],
        input=json.dumps(TINY),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "unknown solver 'greedy'" in ok.stderr:
        pytest.skip("greedy is not registered in this build")
    assert ok.returncode == 0, ok.stderr
    assert_valid_output(TINY, json.loads(ok.stdout))

    bad = subprocess.run(
        [sys.executable, "-m", "fedalign.cli", "solve", "-"],
        input="{oops",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert_one_line_error(bad.stderr, "not valid JSON")
