"""The generic desired-state scheduler (after ligato vpp-agent's KV scheduler).

It knows only the descriptor protocol (:mod:`agent.reconciler.descriptor`):
values keyed by strings, each handled by the descriptor that owns the key's
prefix. Callers hand it desired values; it plans typed operations
(:mod:`agent.reconciler.plan`, :mod:`agent.reconciler.planner`), orders them
by declared dependencies, executes
them, retries temporary failures with backoff and records every transaction
(:mod:`agent.reconciler.history`).
"""
from agent.reconciler.descriptor import Context, Dependency, Descriptor, Retrieved
from agent.reconciler.plan import Operation, OpKind, Plan
from agent.reconciler.scheduler import Scheduler
from agent.reconciler.state import TxnResult, ValueState

__all__ = ["Context", "Dependency", "Descriptor", "OpKind", "Operation", "Plan", "Retrieved",
           "Scheduler", "TxnResult", "ValueState"]
