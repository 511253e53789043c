"""Sharding work across processes with torch.distributed (``torchrun``), results identical to one process.

Launch any command under ``torchrun --nproc-per-node K [--nnodes ...] -m tda_plugin.cli ...``: torchrun
sets RANK / WORLD_SIZE / MASTER_ADDR, and the first call of :func:`init_from_env` joins the group
(gloo on CPU, NCCL when every rank has a GPU; ``TDA_DIST_BACKEND`` overrides). Without those
variables everything runs in one process and these helpers are no-ops.

Work is split into units that one process would also compute as a whole, in the same order —
index shards, Fisher chunks, scoring batches of segment ids — and dealt out round-robin
(unit k to rank k mod K). Each unit's numbers therefore do not depend on K, and merging them in
unit order gives bit-identical results to a single process.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def init_from_env() -> bool:
    """Join the process group torchrun describes (once); True when running with more than one rank."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        gpu = torch.cuda.is_available() and torch.cuda.device_count() > 0
        backend = os.environ.get("TDA_DIST_BACKEND") or ("nccl" if gpu else "gloo")
        if gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend)
    return world() > 1


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def mine(units: Sequence[T]) -> list[T]:
    """The units this rank computes: every K-th, starting at its rank."""
    return list(units[rank()::world()])


def mine_pending(units: Sequence[T], done: Callable[[T], bool]) -> list[T]:
    """This rank's share of the ``units`` not ``done`` yet (a resumed build skips finished work). Every rank reads
    the finished work before any rank writes more (a barrier): a rank that wrote its first unit before a slower
    rank looked would shorten that rank's list, shift its share, and leave a unit to no one."""
    todo = [u for u in units if not done(u)]
    barrier()
    return mine(todo)


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def agree_min(value: int) -> int:
    """The smallest of every rank's ``value`` (e.g. a batch size sized from each rank's free memory)."""
    if world() == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def merge(parts: dict[int, T]) -> dict[int, T]:
    """Every rank's {unit: result}, gathered on every rank (unit keys are disjoint across ranks)."""
    if world() == 1:
        return dict(parts)
    gathered: list[dict[int, T] | None] = [None] * world()
    dist.all_gather_object(gathered, parts)
    out: dict[int, T] = {}
    for g in gathered:
        out.update(g or {})
    return out
