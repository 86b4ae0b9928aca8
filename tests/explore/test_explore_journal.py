"""The journal: round trip, torn last line, duplicates, node invariants."""

from __future__ import annotations

from pathlib import Path

import pytest
from explore_fakes import node

from fieldlab.errors import InputError
from fieldlab.explore.journal import Journal, Node


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    a = node(1, None, 0.9, exp_name="b1-i1", commit="abc", strategy="root")
    b = node(2, 1, None, error="boom", strategy="exploit", mutation="lr 0.0001 -> 5e-05")
    j.append(a)
    j.append(b)
    assert j.load() == [a, b]
    assert j.load()[1].r2 is None and j.load()[0].r2 == 0.9


def test_torn_last_line_is_dropped_and_truncated(tmp_path: Path) -> None:
    """An interrupted write leaves a partial line: it is not a node, and the file is cut back to the last newline."""
    j = Journal(tmp_path / "journal.jsonl")
    j.append(node(1, None, 0.9))
    whole = j.path.read_bytes()
    full_second = node(2, 1, 0.95).to_json().encode()
    j.path.write_bytes(whole + full_second[: len(full_second) // 2])
    assert [n.id for n in j.load()] == [1]
    assert j.path.read_bytes() == whole
    j.path.write_bytes(whole + full_second)  # complete JSON without its newline: also torn
    assert [n.id for n in j.load()] == [1]
    j.append(node(2, 1, 0.95))
    assert [n.id for n in j.load()] == [1, 2]


def test_corrupt_middle_line_and_duplicate_ids_are_errors(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    j.path.write_text(node(1, None, 0.9).to_json() + "\n{oops\n" + node(2, 1, 0.9).to_json() + "\n")
    with pytest.raises(InputError, match="line 2"):
        j.load()
    j.path.write_text(node(1, None, 0.9).to_json() + "\n" + node(1, None, 0.9).to_json() + "\n")
    with pytest.raises(InputError, match="duplicate node ids"):
        j.load()


def test_node_invariants() -> None:
    with pytest.raises(InputError, match="final_r2"):
        Node(id=1, parent=None, block=1, iteration=1, params={}, metrics={})
    with pytest.raises(InputError, match="status"):
        Node(id=1, parent=None, block=1, iteration=1, params={}, status="running")


def test_missing_journal_is_empty(tmp_path: Path) -> None:
    assert Journal(tmp_path / "none.jsonl").load() == []
