"""Planning: desired vs actual -> a dependency-ordered :class:`Plan`.

A function over the scheduler's state, called under its lock; it owns no
state and changes none (it only reads ``sched``'s desired values, actual
values, reverse dependencies and failures). Four steps:

1. validate the desired values in scope;
2. decide what must go (no longer desired, invalid, changed beyond an
   in-place update) and cascade that to what depends on it;
3. order the deletions, dependents first;
4. order creations and updates by dependency, simulating the state after
   each step; a value whose dependency is missing is *pending*, not failed.

Planning is incremental: ``keys`` are the changed keys, and only they, what
depends on them and the pending values they unblock are visited.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from agent.errors import InvalidInput
from agent.reconciler.plan import Operation, OpKind, Plan

if TYPE_CHECKING:
    from agent.reconciler.scheduler import Scheduler


def plan(sched: "Scheduler", keys: set[str] | None, actual: Mapping[str, Any]) -> Plan:
    """Plan over ``keys`` (None: everything) against ``actual`` (key -> the
    scheduler's Actual; not mutated)."""
    plan = Plan()
    desired = sched._desired
    if keys is None:
        keys = set(desired) | set(actual)
    rdeps_actual: dict[str, set[str]] = {}
    if actual is not sched._actual:
        for k, a in actual.items():
            for d in a.deps:
                rdeps_actual.setdefault(d.key, set()).add(k)
    else:
        rdeps_actual = sched._rdeps_actual

    # 1. validation of the desired values in scope
    invalid: dict[str, str] = {}
    for k in keys:
        if k in desired:
            try:
                sched.descriptor_for(k).validate(k, desired[k])
            except InvalidInput as e:
                invalid[k] = e.message
    plan.invalid = invalid

    # 2. what must go: undesired, invalid, or changed beyond update
    remove: dict[str, str] = {}
    for k in keys:
        a = actual.get(k)
        if a is None:
            continue
        if k not in desired:
            remove[k] = "no longer desired" if k in sched._actual else "found in data plane, not desired"
        elif k in invalid:
            remove[k] = "desired value is invalid: " + invalid[k]
        else:
            desc = sched.descriptor_for(k)
            if not desc.equivalent(k, desired[k], a.value) and desc.needs_recreate(k, a.value, desired[k]):
                remove[k] = "value changed; re-created (no in-place update)"
    # cascade to dependents
    stack = list(remove)
    while stack:
        r = stack.pop()
        for dep in rdeps_actual.get(r, ()):
            if dep not in remove:
                label = next((d.label for d in actual[dep].deps if d.key == r), "")
                remove[dep] = f"dependency {r} ({label}) is removed"
                stack.append(dep)

    # 3. deletion order: dependents before what they depend on
    done: set[str] = set()

    def visit_del(k: str) -> None:
        if k in done:
            return
        done.add(k)
        for dep in rdeps_actual.get(k, ()):
            if dep in remove:
                visit_del(dep)
        plan.operations.append(Operation(OpKind.DELETE, k, actual[k].value, remove[k],
                                         still_desired=k in desired))

    for k in sorted(remove):
        visit_del(k)

    # 4. creations and updates in dependency order
    # The simulated state after each step, as an overlay on ``actual``:
    # copying ``actual`` would make every transaction O(all values).
    added: set[str] = set()

    def present(k: str) -> bool:
        return k in added or (k in actual and k not in remove)
    cand = [k for k in keys if k in desired and k not in invalid]
    cand += [k for k in remove if k in desired and k not in invalid and k not in keys]
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(k: str) -> None:
        st = state.get(k)
        if st == 2:
            return
        if st == 1:
            plan.pending[k] = "dependency cycle"
            return
        state[k] = 1
        value = desired[k]
        missing = None
        for d in sched._deps(k, value):
            if d.key in desired and d.key not in invalid and not present(d.key):
                visit(d.key)
            if not present(d.key):
                missing = d
                break
        state[k] = 2
        if missing is not None:
            why = (f"waiting for {missing.key} ({missing.label})")
            if missing.key in invalid:
                why += ": it is invalid"
            elif missing.key not in desired:
                why += ": not desired"
            plan.pending[k] = why
            return
        plan.pending.pop(k, None)
        if present(k):
            a = actual[k]
            if not sched.descriptor_for(k).equivalent(k, value, a.value):
                plan.operations.append(Operation(OpKind.UPDATE, k, value,
                                                 "value changed" if k in sched._actual and actual is sched._actual
                                                 else "drift: data plane differs from desired", old=a.value))
            else:
                plan.unchanged.add(k)
            return
        if k in remove:
            reason = "re-create: " + remove[k]
        elif actual is not sched._actual and k in sched._actual:
            reason = "drift: missing in data plane"
        elif k in sched._failures:
            reason = "retry after error: " + sched._failures[k].error
        else:
            reason = "new desired value"
        plan.operations.append(Operation(OpKind.CREATE, k, value, reason))
        added.add(k)
        # Unblock dependents -- later, from the work list, not recursively:
        # a recursive visit from here could meet a value still on the DFS
        # stack (one that is being created right now) and take it for a cycle.
        for dep in sorted(sched._rdeps_desired.get(k, ())):
            if dep in desired and dep not in invalid and (dep not in state or dep in plan.pending):
                state.pop(dep, None)
                work.append(dep)

    work = sorted(cand)
    i = 0
    while i < len(work):
        visit(work[i])
        i += 1
    return plan
