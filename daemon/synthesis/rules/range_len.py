"""range-len-to-enumerate: ``for i in range(len(x))`` with ``x[i]`` iterates ``x`` directly."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import libcst.matchers as m

from daemon.synthesis.rules import edit
from daemon.synthesis.rules.analysis import Function
from daemon.synthesis.rules.preconditions import (
    confined,
    read_only_use,
    store_context,
    stored_within,
    unaliased,
)
from daemon.synthesis.rules.rule import Rule

_RANGE_LEN = m.Call(func=m.Name("range"), args=[m.Arg(
    value=m.Call(func=m.Name("len"), args=[m.Arg(value=m.Name(), keyword=None, star="")]),
    keyword=None, star="")])


class RangeLenToEnumerate(Rule):
    """Iterates a sequence directly instead of indexing it by position.

    ::

        for i in range(len(xs)):          for x in xs:               (i unused otherwise)
            total += xs[i] * w     ->          total += x * w

        for i in range(len(xs)):          for i, x in enumerate(xs):  (i used otherwise)
            out[i] = xs[i] + i     ->          out[i] = x + i

    Every read ``xs[i]`` in the body becomes the new name; other uses of ``i`` stay.

    Preconditions checked syntactically:

    - the iterable is literally ``range(len(<name>))`` and the target a plain name;
      ``range``, ``len``, ``enumerate`` are not rebound in the function;
    - ``i`` is bound in the loop only by the ``for`` itself and is not deleted;
    - ``xs`` is not bound, deleted or assigned into (``xs[j] = ...``) in the loop, and
      every use of it there is read-only: indexing, ``len()``, iteration, membership,
      or an argument of a builtin that cannot change it; no method is called on it;
      elsewhere in the function it is only read too, or used after the loop, so no
      alias (``push = xs.append``) exists;
    - no ``xs[i]`` sits in a lambda, nested function or lazy generator;
    - ``i`` is dropped only when the body has no other use of it and it is not read
      after the loop (``for x in xs`` leaves ``i`` unbound).

    Runtime preconditions (gate-checked): ``xs`` is a sequence whose iteration yields
    ``xs[0]``, ``xs[1]``, ... ``xs[len(xs) - 1]`` (lists, tuples, strings, ranges; not
    dicts keyed by position, not objects without ``__len__``), and nothing changes it
    during the loop through another reference.
    """

    id: ClassVar[str] = "range-len-to-enumerate"
    summary: ClassVar[str] = "iterate the sequence (with enumerate) instead of range(len(...))"

    def rewrite(self, fn: Function) -> cst.Module | None:
        if not all(fn.is_builtin(name) for name in ("range", "len", "enumerate")):
            return None
        for _block, _index, loop in fn.loops():
            if isinstance(loop, cst.For) and loop.asynchronous is None:
                result = self._site(fn, loop)
                if result is not None:
                    return result
        return None

    def _site(self, fn: Function, loop: cst.For) -> cst.Module | None:
        if not (isinstance(loop.target, cst.Name) and m.matches(loop.iter, _RANGE_LEN)):
            return None
        index = loop.target.value
        length = cst.ensure_type(cst.ensure_type(loop.iter, cst.Call).args[0].value, cst.Call)
        sequence = cst.ensure_type(length.args[0].value, cst.Name).value
        if index == sequence or not fn.is_local(index) or sequence in fn.escaped:
            return None
        if [s for s in fn.stores(index) if fn.within(s, loop)] != [loop.target] or any(
                isinstance(a, cst.Del) for r in fn.reads(index) if fn.within(r, loop)
                for a in fn.ancestors(r)):
            return None
        if stored_within(fn, sequence, loop) or not unaliased(fn, sequence, loop):
            return None
        sites: list[cst.Subscript] = []
        for use in fn.reads(sequence):
            if not fn.within(use, loop):
                continue
            if fn.lazy(use):
                return None
            parent = fn.parent(use)
            if isinstance(parent, cst.Subscript) and _indexed_by(parent, index) \
                    and not store_context(fn, parent) and fn.within(parent, loop.body):
                sites.append(parent)
            elif not read_only_use(fn, use, known_list=False):
                return None
        if not sites:
            return None
        in_sites = {id(s.slice[0].slice.value) for s in sites
                    if isinstance(s.slice[0].slice, cst.Index)}
        other_reads = [r for r in fn.reads(index)
                       if fn.within(r, loop) and id(r) not in in_sites]
        keep_index = bool(other_reads) or not confined(fn, [index], loop)
        item = fn.fresh(_singular(sequence))
        new_target: cst.BaseAssignTargetExpression
        new_iter: cst.BaseExpression
        if keep_index:
            new_target = cst.Tuple([
                cst.Element(cst.Name(index),
                            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))),
                cst.Element(cst.Name(item))], lpar=[], rpar=[])
            new_iter = cst.Call(func=cst.Name("enumerate"), args=[cst.Arg(cst.Name(sequence))])
        else:
            new_target, new_iter = cst.Name(item), cst.Name(sequence)
        new_body = loop.body.visit(_Sites({id(s) for s in sites}, item))
        assert isinstance(new_body, cst.BaseSuite)
        new_loop = loop.with_changes(target=new_target, iter=new_iter, body=new_body)
        return edit.replace_node(fn, loop, new_loop)


def _indexed_by(subscript: cst.Subscript, index: str) -> bool:
    return len(subscript.slice) == 1 and m.matches(
        subscript.slice[0].slice, m.Index(value=m.Name(index), star=None))


def _singular(name: str) -> str:
    if name.endswith("ies") and len(name) > 3:
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith(("ss", "us", "is")) and len(name) > 2:
        return name[:-1]
    return "item"


class _Sites(cst.CSTTransformer):
    def __init__(self, sites: set[int], item: str) -> None:
        super().__init__()
        self.sites, self.item = sites, item

    def leave_Subscript(self, original_node: cst.Subscript,
                        updated_node: cst.Subscript) -> cst.BaseExpression:
        if id(original_node) in self.sites:
            return cst.Name(self.item, lpar=updated_node.lpar, rpar=updated_node.rpar)
        return updated_node
