"""Tests for daemon.target_info: what a cycle tells proposers and the shadow about a target."""

from __future__ import annotations

import pickle
from pathlib import Path

from daemon.target_info import child_sys_path, input_shapes, module_source
from snapshots.corpus import CallRecord, Corpus
from tests.daemon.fixtures import canary_targets

CHECKSUM = "tests.daemon.fixtures.canary_targets:checksum"


def test_input_shapes_render_the_first_recorded_calls_briefly():
    """Each shape names container kinds, sizes and a first element, a few calls at most."""
    records = tuple(CallRecord(pickle.dumps(((list(range(n)),), {"scale": 2.0})), "return")
                    for n in (120, 3, 0, 7))
    shapes = input_shapes(Corpus(CHECKSUM, "base", records))
    assert shapes == ("tuple[2](tuple[1](list[120](…)))", "tuple[2](tuple[1](list[3](…)))",
                      "tuple[2](tuple[1](list[0]()))")


def test_an_unreadable_record_is_left_out():
    """A record whose arguments cannot be unpickled gives no shape instead of failing."""
    shapes = input_shapes(Corpus(CHECKSUM, "base", (CallRecord(b"not a pickle", "return"),)))
    assert shapes == ()


def test_the_shadow_imports_the_target_from_its_own_root_first():
    """The first import root is the directory the target's top-level package lives in."""
    roots = child_sys_path(CHECKSUM)
    assert Path(roots[0]) == Path(canary_targets.__file__).resolve().parents[3]
    assert len(set(roots)) == len(roots)


def test_the_module_source_is_the_whole_file_around_the_function():
    """module_source gives the module's text, or "" for a function without a source file."""
    assert "WRONG_ON_FIVE_PERCENT" in module_source(canary_targets.checksum)
    assert module_source(len) == ""
