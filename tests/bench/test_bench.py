"""Tests of the benchmark: families, OR-Library parsing, runner rules and the bench CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import fedalign as fa
from fedalign.bench import FAMILIES, make_instance
from fedalign.bench.orlib import BEST_KNOWN, bundled_dir, find_files, load_file, parse_gap
from fedalign.bench.report import COLUMNS
from fedalign.bench.runner import BenchConfig, Instance, run_instance
from fedalign.cli import main

# The OR-Library GAP files ship with fedalign (package data).
ORLIB = bundled_dir()
needs_orlib = pytest.mark.skipif(not ORLIB.is_dir(), reason="OR-Library GAP files not installed")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_families_are_deterministic_and_feasible(family: str) -> None:
    a = make_instance(family, 60, 8, 3)
    b = make_instance(family, 60, 8, 3)
    c = make_instance(family, 60, 8, 4)
    np.testing.assert_array_equal(a.desirability, b.desirability)
    assert not np.array_equal(a.desirability, c.desirability)
    assert a.shape == (60, 8)
    assert a.infeasibility_reason() is None
    sol = fa.solve(a, "milp", time_limit=20)
    assert not fa.check(a, sol.assignment)


def test_family_knapsack_rows_match_their_names() -> None:
    assert make_instance("deadline", 10, 4, 0).has_deadline
    assert not make_instance("deadline", 10, 4, 0).has_memory
    assert not make_instance("no-knapsack", 10, 4, 0).has_knapsack
    assert make_instance("balanced", 400, 8, 0).expert_min_clients.min() > 0
    assert make_instance("uniform", 10, 4, 0).has_memory


@pytest.mark.parametrize(("args", "match"), [(("nope", 5, 3, 0), "family"), (("uniform", 0, 3, 0), "n_clients")])
def test_make_instance_rejects_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_instance(*args)


def test_parse_gap_small_text_and_errors() -> None:
    text = "1\n2 3\n1 2 3\n4 5 6\n1 1 2\n2 1 1\n3 3\n"
    (p,) = parse_gap(text, minimise=True)
    assert p.shape == (2, 3)
    np.testing.assert_array_equal(p.desirability, -np.array([[1, 2, 3], [4, 5, 6]]))
    np.testing.assert_array_equal(p.deadline, [3, 3])
    assert (p.expert_min_clients == 1).all() and (p.expert_max_clients == 1).all()
    assert (p.max_experts == 3).all()
    with pytest.raises(ValueError, match="truncated"):
        parse_gap("1\n2 3\n1 2 3\n", minimise=False)
    with pytest.raises(ValueError, match="left after"):
        parse_gap(text + " 7", minimise=True)
    with pytest.raises(ValueError, match="integers"):
        parse_gap("1 x", minimise=True)


@needs_orlib
def test_gap1_parses_with_sizes_and_reproduces_its_optimum() -> None:
    files = find_files(ORLIB)
    assert [f.stem for f in files][:2] == ["gap1", "gap2"]
    assert {f.stem for f in files} >= set(BEST_KNOWN)
    gaps = load_file(ORLIB / "gap1.txt")
    assert len(gaps) == 5
    assert all(g.problem.shape == (5, 15) for g in gaps)
    assert [g.best_known for g in gaps] == [336, 327, 339, 341, 326]
    first = gaps[0]
    assert first.name == "gap1-1" and not first.minimise and first.proven
    sol = fa.solve(first.problem, "milp", time_limit=10)
    assert sol.status == "optimal"
    assert first.reported(sol.objective) == pytest.approx(336)
    lag = fa.solve(first.problem, "lagrangian", seed=0, time_limit=5)
    assert first.reported(lag.bound) >= 336 - 1e-9


@needs_orlib
def test_cost_files_report_costs() -> None:
    gap = load_file(ORLIB / "gapa.txt")[0]
    assert gap.minimise and gap.best_known == 1698
    assert gap.problem.desirability.max() < 0
    assert gap.reported(-1698.0) == 1698.0


def test_runner_rows_skip_rules_and_best_known() -> None:
    config = BenchConfig(time_limit=2.0, max_pairs={"milp": 10})
    inst = Instance(
        family="uniform", name="u", n_clients=20, n_experts=4, seed=0,
        build=lambda: make_instance("uniform", 20, 4, 0),
    )
    rows = run_instance(inst, ["topk", "flow", "milp", "lagrangian"], config)
    by = {r.solver: r for r in rows}
    assert by["flow"].status == "unsupported" and by["flow"].objective is None
    assert by["milp"].status == "skipped" and "limit" in by["milp"].note
    best = max(r.objective for r in rows if r.objective is not None)
    assert all(r.best_known == best for r in rows)
    lag = by["lagrangian"]
    assert lag.bound is not None and lag.bound >= lag.objective
    assert lag.gap_to_best_bound is not None and 0 <= lag.gap_to_best_bound <= lag.gap + 1e-12


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def test_bench_cli_tiny_run_writes_csv_json_and_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fedalign.bench as fb

    monkeypatch.setattr(fb, "QUICK_SIZES", ((24, 4),))
    out = tmp_path / "out"
    status = main(
        ["bench", "--quick", "--solvers", "topk,lagrangian,flow", "--seeds", "1",
         "--time-limit", "1", "--out", str(out), "--no-progress"]
    )
    assert status == 0
    printed = capsys.readouterr()
    assert "lagrangian" in printed.out and "mean gap" in printed.out
    assert "flow" in printed.err  # the unsupported notice
    rows = _read_csv(out / "results.csv")
    assert len(rows) == len(FAMILIES) * 3
    assert {r["family"] for r in rows} == set(FAMILIES)
    for r in rows:
        if r["status"] in ("optimal", "feasible"):
            assert float(r["runtime"]) >= 0
            assert float(r["objective"]) <= float(r["best_known"]) + 1e-9
    data = json.loads((out / "results.json").read_text())
    assert len(data["rows"]) == len(rows)
    assert data["config"]["time_limit"] == 1.0
    assert data["summary"]
    for family in FAMILIES:
        png = out / f"pareto-{family}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--solvers", "nosuch"], "--solvers"),
        (["--time-limit", "0"], "--time-limit"),
        (["--seeds", "0"], "--seeds"),
        (["--orlib", "/nonexistent/dir"], "--orlib"),
    ],
)
def test_bench_cli_bad_flags_exit_2(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["bench", "--quick", "--out", str(tmp_path), "--no-progress", *argv])
    assert status == 2
    assert flag in capsys.readouterr().err


def test_the_or_library_files_ship_with_fedalign() -> None:
    """``--orlib`` without a folder reads the bundled copy: all 16 files, with their README."""
    files = find_files("bundled")
    assert [p.stem for p in files][:3] == ["gap1", "gap2", "gap3"] and len(files) == 16
    assert (bundled_dir() / "README.md").is_file()
    assert [g.best_known for g in load_file(files[0])] == BEST_KNOWN["gap1"]


# --------------------------------------------------------------------------- your own instances


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_own_instances_run_as_their_own_families(tmp_path: Path) -> None:
    problem = make_instance("deadline", 30, 4, 1)
    config = BenchConfig(
        families=(), time_limit=2.0,
        instances=[EXAMPLES / "rows.json", problem, ("mine", make_instance("uniform", 20, 4, 0))],
    )
    from fedalign.bench.runner import instances

    found = list(instances(config))
    assert [i.family for i in found] == ["instance-rows", "instance-problem-2", "instance-mine"]
    assert found[1].build() is problem
    rows = fb_run(config, ["greedy", "highs"])
    assert {r.family for r in rows} == {i.family for i in found}
    assert all(r.time_limit == 2.0 and r.over_limit is False for r in rows)


def fb_run(config: BenchConfig, solvers: list[str]) -> list:
    from fedalign.bench.runner import run_benchmark

    return run_benchmark(BenchConfig(**{**config.__dict__, "solvers": tuple(solvers)}), progress=False)


def test_bad_own_instance_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"desirability": [[1, 2]], "max_experts": -1}')
    from fedalign.bench.runner import instances

    with pytest.raises(ValueError, match="broken.json.*max_experts"):
        list(instances(BenchConfig(families=(), instances=[bad])))
    with pytest.raises(ValueError, match=r"instances\[0\]"):
        list(instances(BenchConfig(families=(), instances=[3])))


def test_summary_counts_failed_runs_in_runs_and_times() -> None:
    from fedalign.bench.runner import Row, summarise

    def row(status: str, runtime: float, objective: float | None, gap: float | None) -> Row:
        return Row("f", "i", 10, 2, 0, "milp", objective, None, None, None, runtime, status,
                   gap_to_best_bound=gap, time_limit=2.0, over_limit=runtime > 2.2)

    rows = [row("optimal", 0.5, 1.0, 0.0), row("failed", 11.2, None, None),
            row("failed", 6.2, None, None), row("feasible", 1.0, 0.9, 0.1)]
    (s,) = summarise(rows)
    assert s["runs"] == 4 and s["solved"] == 2 and s["failed"] == 2 and s["over_limit"] == 2
    assert s["mean_gap_to_best_bound"] == pytest.approx(0.05)  # over the solved runs only
    assert s["mean_runtime"] == pytest.approx((0.5 + 11.2 + 6.2 + 1.0) / 4)  # failed ones count
    assert s["max_runtime"] == pytest.approx(11.2)


def test_bench_cli_own_instances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    status = main(["bench", "--instance", str(EXAMPLES / "rows.json"), str(EXAMPLES / "small.json"),
                   "--solvers", "greedy,highs", "--time-limit", "2", "--out", str(out), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "instance-rows" in printed and "instance-small" in printed
    for header in ("runs", "solved", "over", "mean/max gap"):
        assert f"  {header}" in printed  # every column explained under the table
    rows = _read_csv(out / "results.csv")
    assert {r["family"] for r in rows} == {"instance-rows", "instance-small"}
    assert (out / "pareto-instance-rows.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_cli_missing_instance_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "--instance", str(tmp_path / "nope.json"), "--out", str(tmp_path), "--no-progress"])
    assert status == 2
    assert "--instance" in capsys.readouterr().err
