"""OR-Library generalised assignment (GAP) instances as alignment problems.

The files (Beasley's OR-Library, instances by Osman, Chu and Beasley, Martello and Toth) hold
whitespace-separated integers::

    P                    number of problems in the file
    then P times:
      m n                agents, jobs
      c[m][n]            cost (gapa-gapd) or profit (gap1-gap12) of giving job j to agent i
      a[m][n]            resource job j consumes on agent i
      b[m]               capacity of agent i

Every job goes to exactly one agent and each agent's resource use stays within its capacity.
As an :class:`~fedalign.AlignmentProblem` agents are clients and jobs are experts:
``desirability = c`` (gap1-gap12, maximise profit) or ``-c`` (gapa-gapd, minimise cost),
``train_time = a``, ``deadline = b``, ``expert_min_clients = expert_max_clients = 1`` and
``max_experts = n``. Objectives are reported in the file's own sense: profit for gap1-gap12,
cost (``-objective``) for gapa-gapd. :data:`BEST_KNOWN` holds the published optimal (or best
known) values in file order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..problem import AlignmentProblem

__all__ = ["BEST_KNOWN", "BUNDLED", "GapInstance", "bundled_dir", "find_files", "load_file", "parse_gap"]

#: What ``--orlib`` without a folder means: the copy of the files fedalign ships.
BUNDLED = "bundled"


def bundled_dir() -> Path:
    """The folder of the OR-Library GAP files shipped with fedalign (with their README)."""
    return Path(__file__).resolve().parent / "orlib_data"

#: Published optimal values (best known where no optimum is proven), in file order.
BEST_KNOWN: dict[str, list[int]] = {
    "gap1": [336, 327, 339, 341, 326],
    "gap2": [434, 436, 420, 419, 428],
    "gap3": [580, 564, 573, 570, 564],
    "gap4": [656, 644, 673, 647, 664],
    "gap5": [563, 558, 564, 568, 559],
    "gap6": [761, 759, 758, 752, 747],
    "gap7": [942, 949, 968, 945, 951],
    "gap8": [1133, 1134, 1141, 1117, 1127],
    "gap9": [709, 717, 712, 723, 706],
    "gap10": [958, 963, 960, 947, 947],
    "gap11": [1139, 1178, 1195, 1171, 1171],
    "gap12": [1451, 1449, 1433, 1447, 1446],
    "gapa": [1698, 3235, 1360, 2623, 1158, 2339],
    "gapb": [1843, 3552, 1407, 2827, 1166, 2339],
    "gapc": [1931, 3456, 1402, 2806, 1243, 2391],
    "gapd": [6353, 12742, 6347, 12430, 6185, 12241],
}

#: Files whose best-known values are proven optima (gapd's are best known only).
PROVEN_OPTIMAL = frozenset(BEST_KNOWN) - {"gapd"}


@dataclass(frozen=True)
class GapInstance:
    """One GAP problem of an OR-Library file.

    Attributes
    ----------
    name : str
        ``"<file>-<k>"`` with ``k`` the 1-based position in the file, e.g. ``"gap1-1"``.
    file : str
        File stem, e.g. ``"gapd"``.
    index : int
        0-based position in the file.
    minimise : bool
        True for the cost instances (gapa-gapd).
    problem : AlignmentProblem
        The instance mapped as in the module docstring.
    best_known : int or None
        Published optimum / best known value in the file's sense (None if not listed).
    proven : bool
        Whether ``best_known`` is a proven optimum.
    """

    name: str
    file: str
    index: int
    minimise: bool
    problem: AlignmentProblem
    best_known: int | None
    proven: bool

    def reported(self, objective: float) -> float:
        """An alignment objective in the file's own sense (cost for gapa-gapd)."""
        return -objective if self.minimise else objective


def parse_gap(text: str, *, minimise: bool) -> list[AlignmentProblem]:
    """Parse the text of one OR-Library GAP file into alignment problems.

    Parameters
    ----------
    text : str
        The file's content.
    minimise : bool
        True for cost files (desirability = -c), False for profit files.

    Raises
    ------
    ValueError
        Malformed content (the message says where).
    """
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"text: not a file of integers ({exc})") from None
    if values.size == 0:
        raise ValueError("text: empty")
    count = int(values[0])
    pos = 1
    out: list[AlignmentProblem] = []
    for k in range(count):
        if pos + 2 > values.size:
            raise ValueError(f"text: problem {k + 1} of {count} is missing its sizes")
        m, n = int(values[pos]), int(values[pos + 1])
        pos += 2
        need = 2 * m * n + m
        if m < 1 or n < 1 or pos + need > values.size:
            raise ValueError(f"text: problem {k + 1} of {count} ({m} x {n}) is truncated")
        c = values[pos : pos + m * n].reshape(m, n).astype(np.float64)
        pos += m * n
        a = values[pos : pos + m * n].reshape(m, n).astype(np.float64)
        pos += m * n
        b = values[pos : pos + m].astype(np.float64)
        pos += m
        out.append(
            AlignmentProblem(
                -c if minimise else c,
                max_experts=n,
                train_time=a,
                deadline=b,
                expert_min_clients=1,
                expert_max_clients=1,
            )
        )
    if pos != values.size:
        raise ValueError(f"text: {values.size - pos} values left after {count} problems")
    return out


def _stem_key(stem: str) -> tuple[int, int | str]:
    m = re.fullmatch(r"gap(\d+)", stem)
    return (0, int(m.group(1))) if m else (1, stem)


def find_files(directory: str | Path) -> list[Path]:
    """The GAP files (``gap*.txt``) in ``directory``, gap1..gap12 then gapa..gapd.

    ``directory`` may be :data:`BUNDLED` for the files fedalign ships.
    """
    path = bundled_dir() if str(directory) == BUNDLED else Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"orlib: {str(path)!r} is not a directory")
    files = [p for p in path.glob("gap*.txt") if re.fullmatch(r"gap(\d+|[a-z])", p.stem)]
    return sorted(files, key=lambda p: _stem_key(p.stem))


def load_file(path: str | Path) -> list[GapInstance]:
    """Every problem of one GAP file, mapped and labelled with its best-known value."""
    path = Path(path)
    stem = path.stem
    minimise = re.fullmatch(r"gap[a-z]", stem) is not None
    problems = parse_gap(path.read_text(), minimise=minimise)
    known = BEST_KNOWN.get(stem)
    return [
        GapInstance(
            name=f"{stem}-{k + 1}",
            file=stem,
            index=k,
            minimise=minimise,
            problem=prob,
            best_known=None if known is None or k >= len(known) else known[k],
            proven=stem in PROVEN_OPTIMAL,
        )
        for k, prob in enumerate(problems)
    ]
