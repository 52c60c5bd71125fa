"""`selfmod export`: patches that `git apply` takes against the app's own tree."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.export import locate
from daemon.ledger import Ledger
from daemon.synthesis.base import Candidate
from invariants.targets import Target, original_source, resolve, sha256_text
from snapshots import Snapshots

PRICING = '''\
"""Prices."""


def total(xs):
    """The sum of xs."""
    t = 0
    for x in xs:
        t += x
    return t


class Cart:
    def __init__(self, items):
        self.items = items

    def count(self, wanted):
        n = 0
        for item in self.items:
            if item == wanted:
                n += 1
        return n
'''
TESTS = '''\
from shop.pricing import Cart, total

assert total([1, 2, 3]) == 6 and total([]) == 0
assert Cart(["a", "b", "a"]).count("a") == 2
print("tests passed")
'''
FASTER = {
    "shop.pricing:total": 'def total(xs):\n    """The sum of xs."""\n    return sum(xs)\n',
    "shop.pricing:Cart.count": "def count(self, wanted):\n    return self.items.count(wanted)\n",
}


def _git(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A small app in its own git repository, with a test script."""
    tree = tmp_path / "app"
    (tree / "shop").mkdir(parents=True)
    (tree / "shop" / "__init__.py").write_text("")
    (tree / "shop" / "pricing.py").write_text(PRICING)
    (tree / "test_shop.py").write_text(TESTS)
    assert _git(tree, "init", "-q").returncode == 0
    _git(tree, "add", ".")
    _git(tree, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "app")
    return tree


def _activate_faster_versions(tree: Path, state: Path) -> None:
    """Store and activate FASTER's versions as the daemon would, bases read from the tree."""
    sys.path.insert(0, str(tree))
    try:
        with Snapshots(state) as snapshots:
            ledger = Ledger.writer(snapshots)
            for target, source in FASTER.items():
                original = original_source(resolve(Target.parse(target)))
                base = sha256_text(original)
                ledger.remember_base(target, base, original)
                version = ledger.propose(Candidate(target, source, "rules:test", base), base)
                ledger.activate(target, version, {"speedup": 3.2, "ci_low": 2.9,
                                                  "ci_high": 3.5, "calls": 40,
                                                  "checks": ["differential", "property"]})
    finally:
        sys.path.remove(str(tree))
        for name in ("shop.pricing", "shop"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()


def _export(tree: Path, state: Path, out: Path) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "export", "--json", "--out",
                             str(out), "--state-dir", str(state), "--root", str(tree)],
                            cwd=tree, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_exported_patches_apply_with_git_and_the_apps_tests_pass(app: Path,
                                                                 tmp_path: Path) -> None:
    """Each patch names the real file and lines; git apply takes it and the tests still pass."""
    state, out = tmp_path / "state", tmp_path / "patches"
    _activate_faster_versions(app, state)
    data = _export(app, state, out)
    patches = [Path(w["patch"]) for w in data["written"]]  # type: ignore[index]
    assert len(patches) == 2
    assert all(w["file"] for w in data["written"])  # type: ignore[index]
    for patch in patches:
        text = patch.read_text()
        assert text.startswith("--- a/shop/pricing.py\n+++ b/shop/pricing.py\n"), text
        check = _git(app, "apply", "--check", str(patch))
        assert check.returncode == 0, check.stderr
    for patch in patches:
        assert _git(app, "apply", str(patch)).returncode == 0
    patched = (app / "shop" / "pricing.py").read_text()
    assert "return sum(xs)" in patched and "        return self.items.count(wanted)" in patched
    ran = subprocess.run([sys.executable, "test_shop.py"], cwd=app, capture_output=True,
                         text=True, timeout=60, check=False)
    assert ran.returncode == 0 and "tests passed" in ran.stdout, ran.stderr
    summary = (out / "SUMMARY.md").read_text()
    assert "`shop.pricing:total`" in summary and "3.2x (2.9x to 3.5x)" in summary
    assert "differential, property" in summary


def test_a_file_changed_since_gets_a_function_only_patch_that_says_so(app: Path,
                                                                     tmp_path: Path) -> None:
    """When the original is no longer in the file, the patch says it is of the function alone."""
    state, out = tmp_path / "state", tmp_path / "patches"
    _activate_faster_versions(app, state)
    pricing = app / "shop" / "pricing.py"
    pricing.write_text(pricing.read_text().replace("t += x", "t = t + x"))
    data = _export(app, state, out)
    by_target = {w["target"]: w for w in data["written"]}  # type: ignore[index,union-attr]
    assert by_target["shop.pricing:total"]["file"] is None
    text = Path(by_target["shop.pricing:total"]["patch"]).read_text()
    assert text.startswith("# not placed in a file:") and "no longer holds the original" in text
    assert by_target["shop.pricing:Cart.count"]["file"]


def test_locate_finds_a_method_at_its_indentation() -> None:
    """A dedented method source is found at its class's indentation, not elsewhere."""
    lines = PRICING.splitlines(True)
    method = textwrap.dedent("".join(lines[15:21]))
    assert locate(lines, method) == (15, 21, "    ")
    assert locate(lines, "def missing():\n    pass\n") is None
