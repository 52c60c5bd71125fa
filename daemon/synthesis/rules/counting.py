"""dict-get-counting: a loop that counts keys into a dict becomes ``dict(Counter(...))``."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import confined, local_init, stored_within
from daemon.synthesis.rules.rule import ForLoopRule
from daemon.synthesis.rules.shapes import (
    assigned_name,
    is_pure,
    movable,
    parenthesized,
    plain_for,
    single_small,
    single_statement,
    target_names,
)

IMPORT = "from collections import Counter"


def _item(dict_name: str) -> m.Subscript:
    return m.Subscript(value=m.Name(dict_name),
                       slice=[m.SubscriptElement(slice=m.Index(star=None))])


def _key(subscript: cst.BaseExpression) -> cst.BaseExpression:
    index = cst.ensure_type(cst.ensure_type(subscript, cst.Subscript).slice[0].slice, cst.Index)
    return index.value


class DictGetCounting(ForLoopRule):
    """Counts with ``collections.Counter`` (a C loop) instead of a Python loop.

    ::

        counts = {}                              from collections import Counter
        for rec in records:              ->      ...
            key = rec[3] + " " + rec[4]          counts = dict(Counter(
            counts[key] = counts.get(key, 0) + 1     rec[3] + " " + rec[4] for rec in records))

    The counting statement may be ``d[k] = d.get(k, 0) + 1``, or
    ``if k in d: d[k] += 1 else: d[k] = 1``, or its ``not in`` mirror. When the key
    is the whole loop variable the rewrite is ``dict(Counter(iter(xs)))``: ``iter``
    matters, because ``Counter`` given a mapping would copy its counts instead of
    counting its keys.

    Why this is exact: ``Counter`` counts with the same ``get``-and-store sequence
    in iteration order, so keys appear in first-seen order, the first-seen key object
    is the one kept, the values are ints, and ``dict(...)`` of it is a plain dict
    with that order.

    Preconditions checked syntactically:

    - ``d = {}`` (an empty dict display, optionally annotated) binds ``d`` earlier in
      the same block, with no mention of ``d`` and no ``break``/``continue`` in between;
    - the loop body is the counting statement alone, or one ``temp = <expr>``
      followed by it with ``temp`` as the key, where ``temp`` is read nowhere else;
    - the key expressions in the statement are textually equal and pure-looking
      (names, attribute reads, constant-index subscripts) or the temp;
    - ``d`` is read nowhere else in the loop and not bound there; loop variables
      are not read after the loop; nothing is inside ``try``/``with``;
    - the name ``Counter`` is not used in the function; the rule imports it inside
      the function, and the proposer offers it only when the policy allows
      ``collections``.

    Runtime preconditions (gate-checked): keys are hashable (both raise
    ``TypeError`` otherwise, at the same element); a key expression that is an
    attribute or item read has no side effects, since the loop evaluates it two or
    three times and the rewrite once.
    """

    id: ClassVar[str] = "dict-get-counting"
    summary: ClassVar[str] = "count with collections.Counter instead of dict.get in a loop"
    imports: ClassVar[tuple[str, ...]] = ("collections",)

    def applicable(self, fn: Function) -> bool:
        if "Counter" in fn.identifiers and not edit.has_function_import(fn.module, IMPORT):
            return False
        return fn.is_builtin("dict") and fn.is_builtin("iter")

    def rewrite(self, fn: Function) -> cst.Module | None:
        result = super().rewrite(fn)
        if result is None:
            return None
        return edit.add_function_import(cst.parse_module(result.code), IMPORT)

    def site(self, fn: Function, block: cst.IndentedBlock, index: int,
             statement: cst.For) -> cst.Module | None:
        loop = plain_for(statement)
        if loop is None or fn.guarded(loop) or not isinstance(loop.body, cst.IndentedBlock):
            return None
        body = loop.body.body
        temp: tuple[str, cst.BaseExpression] | None = None
        if len(body) == 2:
            temp = assigned_name(single_small(body[0]))
            if temp is None:
                return None
        elif len(body) != 1:
            return None
        counting = body[-1]
        found = _counting(counting)
        if found is None:
            return None
        name, key = found
        found_init = local_init(fn, block, index, name, m.Dict(elements=[]))
        if found_init is None:
            return None
        init_at, init = found_init
        if any(not fn.within(r, counting) for r in fn.reads(name) if fn.within(r, loop)) \
                or stored_within(fn, name, loop):
            return None
        names = target_names(loop.target)
        if names is None or name in names or not confined(fn, names, loop):
            return None
        if temp is not None:
            temp_name, source = temp
            if not (m.matches(key, m.Name(temp_name)) and fn.is_local(temp_name)
                    and temp_name not in names and temp_name != name):
                return None
            if any(not fn.within(r, counting) for r in fn.reads(temp_name)) or any(
                    not fn.within(s, body[0]) for s in fn.stores(temp_name)):
                return None
        else:
            source = key
            if not is_pure(key):
                return None
        if not movable(source, names) or fn.mentions(source, name):
            return None
        if m.matches(source, m.Name()) and m.matches(loop.target, m.Name()) \
                and fn.code(source) == fn.code(loop.target):
            counted = f"iter({fn.code(loop.iter)})"
        else:
            counted = (f"{parenthesized(fn, source, element=True)} for {fn.code(loop.target)}"
                       f" in {parenthesized(fn, loop.iter)}")
        value = f"dict(Counter({counted}))"
        return edit.bind_instead(fn, block, index, init_at, init, name, value)


def _counting(statement: cst.BaseStatement) -> tuple[str, cst.BaseExpression] | None:
    """``(dict name, key)`` when ``statement`` adds one to ``d[key]`` in a known form."""
    small = single_small(statement)
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        target = small.targets[0].target
        for name in _subscripted(target):
            get = m.Call(func=m.Attribute(value=m.Name(name), attr=m.Name("get")),
                         args=[m.Arg(keyword=None, star=""),
                               m.Arg(value=m.Integer("0"), keyword=None, star="")])
            if m.matches(small.value, m.BinaryOperation(left=get, operator=m.Add(),
                                                        right=m.Integer("1"))):
                call = cst.ensure_type(cst.ensure_type(small.value, cst.BinaryOperation).left,
                                       cst.Call)
                return _same_keys(name, [_key(target), call.args[0].value])
        return None
    if not isinstance(statement, cst.If) or not isinstance(statement.orelse, cst.Else):
        return None
    test = statement.test
    if not m.matches(test, m.Comparison(comparisons=[m.ComparisonTarget(
            operator=m.In() | m.NotIn(), comparator=m.Name())])):
        return None
    comparison = cst.ensure_type(test, cst.Comparison)
    member = comparison.comparisons[0]
    name = cst.ensure_type(member.comparator, cst.Name).value
    present, absent = statement.body, statement.orelse.body
    if isinstance(member.operator, cst.NotIn):
        present, absent = absent, present
    increment = single_statement(present)
    first = single_statement(absent)
    if not (isinstance(increment, cst.AugAssign) and isinstance(first, cst.Assign)
            and m.matches(increment, m.AugAssign(target=_item(name), operator=m.AddAssign(),
                                                 value=m.Integer("1")))
            and m.matches(first, m.Assign(targets=[m.AssignTarget(target=_item(name))],
                                          value=m.Integer("1")))):
        return None
    added = increment.target
    stored = first.targets[0].target
    return _same_keys(name, [comparison.left, _key(added), _key(stored)])


def _subscripted(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name) \
            and len(target.slice) == 1 and isinstance(target.slice[0].slice, cst.Index):
        return [target.value.value]
    return []


def _same_keys(name: str, keys: list[cst.BaseExpression]) -> tuple[str, cst.BaseExpression] | None:
    texts = {cst.Module([]).code_for_node(k) for k in keys}
    return (name, keys[0]) if len(texts) == 1 else None
