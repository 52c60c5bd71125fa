"""The state guard: rebinding what the harness relies on is noticed, whatever else is patched."""

from __future__ import annotations

import builtins
import types

from invariants.guard import harness_modules, make_guard


def fake_module() -> types.ModuleType:
    module = types.ModuleType("fake_harness")
    exec("def helper():\n    return 1\n\nclass Tool:\n    def run(self):\n        return 2\n",
         module.__dict__)
    return module


def test_rebinding_a_function_or_a_method_is_listed() -> None:
    """A replaced module function or class method shows up by its dotted name."""
    module = fake_module()
    _, changes = make_guard([module])
    assert changes() == []
    module.helper = lambda: 0
    module.Tool.run = lambda self: 0
    assert changes() == ["fake_harness.helper", "fake_harness.Tool.run"]


def test_shadowing_a_builtin_in_a_module_is_listed() -> None:
    """A new global that would shadow a builtin in a watched module is an addition."""
    module = fake_module()
    _, changes = make_guard([module])
    module.len = lambda value: 0
    assert changes() == ["fake_harness.len (added)"]
    del module.len
    module.submodule = types.ModuleType("fake_harness.submodule")
    assert changes() == []


def test_refresh_accepts_what_happened_before_it() -> None:
    """Changes made before a refresh (by the original, say) are not the candidate's."""
    module = fake_module()
    refresh, changes = make_guard([module])
    module.helper = lambda: 3
    refresh()
    assert changes() == []


def test_the_guard_is_not_blinded_by_rebinding_builtins() -> None:
    """With builtins.len and builtins.type replaced, the guard still sees the change."""
    module = fake_module()
    _, changes = make_guard([module, builtins])  # type: ignore[list-item]
    saved_len, saved_type = builtins.len, builtins.type
    try:
        builtins.len = lambda value: 0
        builtins.type = lambda value: object  # type: ignore[assignment,misc]
        module.helper = lambda: 0
        found = changes()
    finally:
        builtins.len, builtins.type = saved_len, saved_type
    assert "fake_harness.helper" in found and "builtins.len" in found


def test_the_harness_modules_include_this_package_and_json() -> None:
    """The watched set covers the harness's own modules and what it calls into."""
    names = {module.__name__ for module in harness_modules()}
    assert {"invariants.guard", "json", "builtins", "time"} <= names
