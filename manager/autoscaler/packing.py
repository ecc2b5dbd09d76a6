"""First-fit decreasing bin packing of task shapes onto members, in bulk.

Tasks are taken largest first (by their dominant share of a member: the larger of their core share and
memory share), and each goes to the first member, in SGE's fill order, where it fits; when none has
room, a new member of the resource model is opened. This is what SGE, configured to fill members one
after another, will roughly do with the same tasks.

A million array tasks must not mean a million steps: tasks of one shape are placed in bulk, by
arithmetic (how many fit on a member = min(free cores // cores, free memory // memory)). New members
opened for the same shape end up identical, so they are kept as groups (count, free space); a group is
split only where a shape's run ends part-way through it. Cost: O(shapes x (members + shapes)), independent
of the number of tasks. The result is exactly what task-by-task first-fit decreasing would give.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from manager.autoscaler.model import Shape


@dataclass(frozen=True)
class Packing:
    placed: tuple[int, ...]  # tasks placed on each given member, in the given order
    new_members: int  # members of the resource model opened for the rest
    tasks_on_new: int  # tasks that went to those new members


@dataclass
class _Group:
    """`count` identical new members, each with `cores`/`memory` still free."""

    count: int
    cores: int
    memory: int


def _loaded(count: int, space: Shape, shape: Shape, tasks_each: int) -> _Group:
    """`count` members that had `space` free, each after receiving `tasks_each` tasks of `shape`."""
    return _Group(count, space[0] - tasks_each * shape[0], space[1] - tasks_each * shape[1])


def ffd_order(shapes: Iterable[Shape], capacity: Shape) -> list[Shape]:
    """Shapes largest first: by dominant share of a member's capacity, then cores, then memory."""
    cap_cores, cap_memory = capacity

    def size(shape: Shape) -> tuple[Fraction, int, int]:
        cores, memory = shape
        return (max(Fraction(cores, cap_cores), Fraction(memory, cap_memory)), cores, memory)

    return sorted(shapes, key=size, reverse=True)


def fits(free_cores: int, free_memory: int, shape: Shape) -> int:
    """How many tasks of `shape` fit in the given free space (cores per task is at least 1)."""
    cores, memory = shape
    if free_cores <= 0 or free_memory < 0:
        return 0
    count = free_cores // cores
    return count if memory == 0 else min(count, free_memory // memory)


def pack(demand: Mapping[Shape, int], members_free: Sequence[Shape], new_member: Shape) -> Packing:
    """Place `demand` (tasks by shape) first onto `members_free` (free space of current members, in
    fill order), then onto as many new members of capacity `new_member` as needed.

    Every shape in `demand` must fit an empty `new_member` (oversize jobs are filtered out before).
    """
    free = [[cores, memory] for cores, memory in members_free]
    placed = [0] * len(free)
    groups: list[_Group] = []
    new_members = 0
    tasks_on_new = 0
    for shape in ffd_order(demand, new_member):
        cores, memory = shape
        left = demand[shape]
        for index, space in enumerate(free):
            if left == 0:
                break
            count = min(left, fits(space[0], space[1], shape))
            if count:
                space[0] -= count * cores
                space[1] -= count * memory
                placed[index] += count
                left -= count
        if left:
            before = left
            left = _fill_groups(groups, shape, left)
            tasks_on_new += before - left
        if left:
            per_member = fits(new_member[0], new_member[1], shape)
            if per_member < 1:
                raise ValueError(f"a task of {shape} does not fit a new member {new_member}")
            full, rest = divmod(left, per_member)
            if full:
                groups.append(_loaded(full, new_member, shape, per_member))
            if rest:
                groups.append(_loaded(1, new_member, shape, rest))
            new_members += full + (1 if rest else 0)
            tasks_on_new += left
    return Packing(placed=tuple(placed), new_members=new_members, tasks_on_new=tasks_on_new)


def _fill_groups(groups: list[_Group], shape: Shape, left: int) -> int:
    """First-fit `left` tasks of `shape` into the already opened new members; returns what is left.

    When the tasks run out part-way through a group, the group is split in place (filled members,
    one partly filled member, untouched members) so the opening order — first-fit's order — is kept.
    """
    cores, memory = shape
    index = 0
    while index < len(groups) and left:
        group = groups[index]
        per_member = fits(group.cores, group.memory, shape)
        if per_member == 0:
            index += 1
            continue
        if left >= group.count * per_member:
            group.cores -= per_member * cores
            group.memory -= per_member * memory
            left -= group.count * per_member
            index += 1
            continue
        full, rest = divmod(left, per_member)
        split: list[_Group] = []
        space = (group.cores, group.memory)
        if full:
            split.append(_loaded(full, space, shape, per_member))
        if rest:
            split.append(_loaded(1, space, shape, rest))
        untouched = group.count - full - (1 if rest else 0)
        if untouched:
            split.append(_Group(untouched, group.cores, group.memory))
        groups[index : index + 1] = split
        left = 0
    return left
