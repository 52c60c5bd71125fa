"""Tests for daemon.selection: which hot target a cycle works on, and the cycle budget."""

from __future__ import annotations

from structlog.testing import capture_logs

from daemon.events import CycleOutcome
from daemon.logs import get_logger
from daemon.profiler import HotSpot
from daemon.selection import Selection, app_scope
from envelope.policy import DEFAULT_POLICY, Budgets, Policy
from tests.clock import FakeClock


def selection(clock: FakeClock, policy: Policy = DEFAULT_POLICY,
              versions: dict[str, str] | None = None) -> Selection:
    live = versions if versions is not None else {}
    return Selection(policy=lambda: policy,
                     current_version=lambda target: live.get(target, "original"),
                     log=get_logger(), scope=("app.*:*",), clock=clock)


RANKING = [HotSpot("other:hot", 0.6, 60), HotSpot("app.a:f", 0.3, 30),
           HotSpot("app.b:g", 0.1, 10)]


def test_pick_takes_the_hottest_target_in_scope():
    """Targets outside the scope are passed over, however hot."""
    assert selection(FakeClock()).pick(RANKING) == RANKING[1]


def test_a_target_never_seen_returning_is_passed_over():
    """A loop that never returns (an app's main) records no calls: it is not picked."""
    looping = [HotSpot("app.a:main", 0.9, 90, returning=False, running_seconds=30.0),
               *RANKING[1:]]
    assert selection(FakeClock()).pick(looping) == RANKING[1]
    assert selection(FakeClock()).pick(looping[:1]) is None


def test_an_excluded_target_is_passed_over_while_it_is_excluded():
    """What an operator excluded is never picked, however hot; included again, it is."""
    excluded = {"app.a:f"}
    chooser = Selection(policy=lambda: DEFAULT_POLICY, current_version=lambda _: "original",
                        log=get_logger(), scope=("app.*:*",), clock=FakeClock(),
                        excluded=lambda: excluded)
    assert chooser.pick(RANKING) == RANKING[2]
    excluded.clear()
    assert chooser.pick(RANKING) == RANKING[1]


def test_a_rejected_target_cools_down_and_is_not_retried_at_the_same_version():
    """After a rejection the target waits out the cool-down, then stays tried at that version."""
    clock = FakeClock()
    versions: dict[str, str] = {}
    chooser = selection(clock, versions=versions)
    chooser.finished("app.a:f", "original", CycleOutcome.REJECTED)
    assert chooser.pick(RANKING) == RANKING[2]
    clock.now += DEFAULT_POLICY.budgets.cooldown_seconds + 1
    assert chooser.pick(RANKING) == RANKING[2]  # tried at "original"
    versions["app.a:f"] = "v2"
    assert chooser.pick(RANKING) == RANKING[1]  # a new live version may be improved


def test_a_canary_rollback_is_retried_after_the_cool_down():
    """A rolled-back cycle cools the target down but does not mark its version as tried."""
    clock = FakeClock()
    chooser = selection(clock)
    chooser.finished("app.a:f", "original", CycleOutcome.ROLLED_BACK)
    assert chooser.pick(RANKING) == RANKING[2]
    clock.now += DEFAULT_POLICY.budgets.cooldown_seconds + 1
    assert chooser.pick(RANKING) == RANKING[1]


def test_an_operator_rollback_keeps_the_daemon_from_the_code_now_live():
    """refused marks the target's current version as tried, so it is not picked again."""
    chooser = selection(FakeClock())
    chooser.refused("app.a:f")
    assert chooser.tried == {("app.a:f", "original"): "rolled_back"}
    assert chooser.pick(RANKING) == RANKING[2]


def test_a_new_policy_forgets_rejections_and_cool_downs():
    """forget_rejections lets rejected targets be tried again at once; swaps stay tried."""
    chooser = selection(FakeClock())
    chooser.finished("app.a:f", "original", CycleOutcome.REJECTED)
    chooser.finished("app.b:g", "original", CycleOutcome.SWAPPED)
    chooser.forget_rejections()
    assert chooser.tried == {("app.b:g", "original"): "swapped"} and chooser.cooldown == {}
    assert chooser.pick(RANKING) == RANKING[1]


def test_the_cycle_budget_halts_and_resumes_with_one_log_line_each():
    """Reaching cycles_per_hour halts synthesis (logged once) until the oldest start ages out."""
    clock = FakeClock()
    policy = DEFAULT_POLICY.model_copy(update={"budgets": Budgets(cycles_per_hour=2)})
    chooser = selection(clock, policy)
    with capture_logs() as logs:
        for _ in range(2):
            assert not chooser.budget_exhausted()
            chooser.started()
            clock.now += 10
        assert chooser.budget_exhausted() and chooser.budget_exhausted()
        assert chooser.halt is not None and "cycles_per_hour (2)" in chooser.halt.reason
        clock.now += 3600
        assert not chooser.budget_exhausted() and chooser.halt is None
    assert [line["event"] for line in logs] == ["synthesis_halted", "synthesis_resumed"]


def test_an_app_is_scoped_to_its_own_top_level_package():
    """app_scope covers the app's package and its submodules, nothing for no app."""
    assert app_scope("shop.main:run") == ("shop:*", "shop.*:*")
    assert app_scope(None) == ()
