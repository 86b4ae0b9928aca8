"""The exploration journal: one JSON line per node, the single source of truth of a study.

Every other output of the loop (``ucb_scores.txt``, the markdown memory files, the pictures) is rendered from the
list of :class:`Node` read back from ``journal.jsonl``; nothing is ever parsed back from those renderings.
A line is appended only once its fit has finished (successfully or not), with one ``write`` and an ``fsync``, so
an interrupted study holds only complete nodes; a torn last line (the process died inside the write) is dropped
on load and the file is truncated to its last complete line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldlab.errors import InputError

#: statuses of a node
OK, FAILED = "ok", "failed"


@dataclass(frozen=True)
class Node:
    """One fitted configuration of the study.

    ``parent`` is ``None`` for the root of a block (its first iteration); ``params`` is the full ``inr`` section the
    fit ran with; ``metrics`` holds ``final_r2`` and whatever else the stage wrote; ``seed`` is the top-level seed
    of the fit when it is not the study's (a robustness repeat), else ``None``.
    """

    id: int
    parent: int | None
    block: int
    iteration: int
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str = OK
    error: str = ""
    strategy: str = "root"
    mutation: str = ""
    rationale: str = ""
    observation: str = ""
    ucb_c: float = 1.414
    started: str = ""
    finished: str = ""
    exp_name: str = ""
    commit: str = ""
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("id", "block", "iteration"):
            value = getattr(self, name)
            if not _integer(value) or value < 1:
                raise InputError(f"journal node {self.id!r}: {name} = {value!r}: expected a positive integer")
        if self.seed is not None and not _integer(self.seed):
            raise InputError(f"journal node {self.id}: seed = {self.seed!r}: expected an integer or null")
        if self.parent is not None and not _integer(self.parent):
            raise InputError(f"journal node {self.id}: parent = {self.parent!r}: expected a node id or null")
        for name in ("params", "metrics"):
            if not isinstance(getattr(self, name), dict):
                raise InputError(f"journal node {self.id}: {name} = {getattr(self, name)!r}: expected a mapping")
        if self.status not in (OK, FAILED):
            raise InputError(f"journal node {self.id}: status = {self.status!r}: expected 'ok' or 'failed'")
        r2 = self.metrics.get("final_r2")
        if self.status == OK and not (isinstance(r2, int | float) and not isinstance(r2, bool) and math.isfinite(r2)):
            raise InputError(
                f"journal node {self.id}: metrics.final_r2 = {r2!r}: an 'ok' node needs a finite numeric final_r2"
            )

    @property
    def r2(self) -> float | None:
        """``final_r2`` of a successful node, ``None`` for a failed one."""
        return float(self.metrics["final_r2"]) if self.status == OK else None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=False, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Journal:
    """Append-only JSONL file of :class:`Node` records.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> j = Journal(pathlib.Path(tempfile.mkdtemp()) / "journal.jsonl")
    >>> j.append(Node(id=1, parent=None, block=1, iteration=1, params={"lr": 1e-4}, metrics={"final_r2": 0.9}))
    >>> [n.id for n in j.load()]
    [1]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[Node]:
        """Read every complete node; drop (and truncate away) a torn last line; reject anything else malformed.

        A torn line is the last one and lacks its newline (an interrupted ``write``); every other defect -- a
        line that is not JSON or not an object, a node that breaks :class:`Node`'s invariants, a duplicate id,
        a parent that is not an earlier node -- raises :class:`InputError` naming the file and the line, and the
        file is left as it was.
        """
        if not self.path.is_file():
            return []
        raw = self.path.read_bytes()
        nodes: list[Node] = []
        good_end = 0
        pos = 0
        for number, line in enumerate(raw.splitlines(keepends=True), start=1):
            pos += len(line)
            text = line.strip()
            if not text:
                good_end = pos
                continue
            torn = pos == len(raw) and not line.endswith(b"\n")
            try:
                data = json.loads(text)
            except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
                if torn:  # the final line of an interrupted write
                    break
                raise InputError(f"{self.path}: line {number} is not valid JSON; expected one node per line") from None
            if torn:
                break  # complete JSON but no newline: treat as torn, rewritten by the caller
            nodes.append(self._node(data, number))
            good_end = pos
        ids = [n.id for n in nodes]
        if len(set(ids)) != len(ids):
            raise InputError(f"{self.path}: duplicate node ids {sorted({i for i in ids if ids.count(i) > 1})}")
        for k, n in enumerate(nodes):
            if n.parent is not None and n.parent not in ids[:k]:
                raise InputError(f"{self.path}: node {n.id}: parent {n.parent} is not an earlier node of the journal")
        if good_end < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        return nodes

    def _node(self, data: Any, number: int) -> Node:
        """The :class:`Node` of one parsed line; any defect is an :class:`InputError` naming file and line."""
        where = f"{self.path}: line {number}"
        if not isinstance(data, dict):
            raise InputError(f"{where}: holds a JSON {type(data).__name__}; expected an object (one node)")
        missing = [f.name for f in dataclasses.fields(Node) if f.name not in data and _required(f)]
        if missing:
            raise InputError(f"{where}: node lacks {', '.join(missing)}")
        try:
            return Node.from_dict(data)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def append(self, node: Node) -> None:
        """Append one node as one line, flushed and fsync'ed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(node.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def block_nodes(nodes: list[Node], block: int) -> list[Node]:
    """The nodes of one block, in order of creation."""
    return [n for n in nodes if n.block == block]
