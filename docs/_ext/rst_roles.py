"""Griffe extension for the docs site: numpydoc as fedalign writes it, rendered right.

Two rewrites of every docstring, before griffe parses it:

* **Sphinx roles become cross-references.**
fedalign's numpydoc docstrings name other objects the Sphinx way (:class:`fedalign.Scheduler`,
:meth:`ActiveRound.close`, :func:`~fedalign.rounds.naming.expert_of_key`). mkdocstrings
renders docstrings as Markdown, where a role would show as literal text; this extension
rewrites each role into an *optional* autorefs link before the docstring is parsed: a link
when the target is documented on the site, plain code when it is not (an object of the
PyTorch harness, say), never a broken reference. A short name (``RoundDriver``) is looked up
next to the object first (its class, then its module), then as written.
* **Grouped parameters are split.** numpydoc allows ``fitness_weight, usage_weight : float``;
  griffe gives every name of such a group the *first* name's default, so the API reference
  would show ``usage_weight``'s default as ``fitness_weight``'s. Each name gets its own entry
  (same type and description), and so its own default from the signature.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?P<role>class|meth|func|attr|data|mod|obj|exc|const):`(?P<body>[^`]+)`")


GROUP = re.compile(r"^(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)\s*:\s*(?P<rest>.*)$")
SPLIT_SECTIONS = {"Parameters", "Other Parameters", "Attributes"}


class RstRoles(griffe.Extension):
    """Rewrite Sphinx roles into optional autorefs and split grouped parameters."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        docstring = getattr(obj, "docstring", None)
        if docstring is None or ":" not in docstring.value:
            return
        text = _split_groups(docstring.value)
        docstring.value = ROLE.sub(lambda m: _link(m, obj), text)


def _split_groups(text: str) -> str:
    """``a, b : type`` entries of parameter-like sections, one entry per name."""
    lines = text.splitlines()
    out: list[str] = []
    section = ""
    k = 0
    while k < len(lines):
        line = lines[k]
        nxt = lines[k + 1] if k + 1 < len(lines) else ""
        if nxt.strip() and set(nxt.strip()) == {"-"} and line.strip():
            section = line.strip()
        match = GROUP.match(line) if section in SPLIT_SECTIONS else None
        if match is None:
            out.append(line)
            k += 1
            continue
        body = []
        k += 1
        while k < len(lines) and (not lines[k].strip() or lines[k][:1].isspace()):
            body.append(lines[k])
            k += 1
        while body and not body[-1].strip():  # keep the blank lines after the entry once
            body.pop()
            k -= 1
        for name in re.split(r"\s*,\s*", match["names"]):
            out.append(f"{name} : {match['rest']}")
            out.extend(body)
    return "\n".join(out)


def _candidates(target: str, obj: Any) -> list[str]:
    """Identifiers ``target`` may mean, nearest first."""
    scopes = []
    parent = obj if getattr(obj, "is_class", False) or getattr(obj, "is_module", False) else obj.parent
    while parent is not None:
        scopes.append(parent.path)
        parent = parent.parent
    names = [f"{scope}.{target}" for scope in scopes if "." not in target or target[0].isupper()]
    return [*names, target]


def _link(match: re.Match[str], obj: Any) -> str:
    body = match["body"].strip()
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        target = body.lstrip("~")
        title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    target = target.lstrip(".")
    if match["role"] in ("meth", "func"):
        title += "()"
    identifier = _resolve(target, obj)
    code = f"<code>{html.escape(title)}</code>"
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def _resolve(target: str, obj: Any) -> str:
    """The first candidate griffe knows (through the object's package), else ``target``."""
    root = obj
    while root.parent is not None:
        root = root.parent
    for candidate in _candidates(target, obj):
        parts = candidate.split(".")
        if parts[0] != root.name:
            continue
        try:
            found = root
            for part in parts[1:]:
                found = found.members[part]
        except KeyError:
            continue
        return candidate if not getattr(found, "is_alias", False) else candidate
    return target
