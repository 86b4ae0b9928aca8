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
    fit ran with; ``metrics`` holds ``final_r2`` and whatever else the stage wrote.
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

    def __post_init__(self) -> None:
        if self.status not in (OK, FAILED):
            raise InputError(f"journal node {self.id}: status = {self.status!r}: expected 'ok' or 'failed'")
        if self.status == OK and not isinstance(self.metrics.get("final_r2"), int | float):
            raise InputError(f"journal node {self.id}: an 'ok' node needs a numeric metrics.final_r2")

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
        """Read every complete node; drop (and truncate away) a torn last line; reject duplicates."""
        if not self.path.is_file():
            return []
        raw = self.path.read_bytes()
        nodes: list[Node] = []
        good_end = 0
        pos = 0
        for line in raw.splitlines(keepends=True):
            pos += len(line)
            text = line.strip()
            if not text:
                good_end = pos
                continue
            try:
                node = Node.from_dict(json.loads(text))
            except json.JSONDecodeError:
                if pos == len(raw):  # torn final line of an interrupted write
                    break
                raise InputError(f"{self.path}: line {len(nodes) + 1} is not valid JSON") from None
            except TypeError as exc:
                raise InputError(f"{self.path}: line {len(nodes) + 1}: {exc}") from None
            if not line.endswith(b"\n"):
                break  # complete JSON but no newline: treat as torn, rewritten by the caller
            nodes.append(node)
            good_end = pos
        if good_end < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        ids = [n.id for n in nodes]
        if len(set(ids)) != len(ids):
            raise InputError(f"{self.path}: duplicate node ids {sorted({i for i in ids if ids.count(i) > 1})}")
        return nodes

    def append(self, node: Node) -> None:
        """Append one node as one line, flushed and fsync'ed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(node.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def block_nodes(nodes: list[Node], block: int) -> list[Node]:
    """The nodes of one block, in order of creation."""
    return [n for n in nodes if n.block == block]
