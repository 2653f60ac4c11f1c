"""Send planned batches, concurrently when asked, never two at once for the same profile.

Each batch waits for the previous batch (in plan order) that carries one of its profiles. That
keeps every profile's events in order and means two requests carrying events of the same
profile are never in flight together; batches of unrelated profiles run side by side.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from django_experience.api.batching import profile_key

T = TypeVar("T")
B = TypeVar("B", bound=Sequence[dict[str, Any]])


def _dependencies(batches: Sequence[Sequence[dict[str, Any]]]) -> list[set[int]]:
    """For each batch, the earlier batches it must wait for (the last one per profile)."""
    last_batch_of: dict[str, int] = {}
    dependencies: list[set[int]] = []
    for index, batch in enumerate(batches):
        keys = {profile_key(event) for event in batch}
        dependencies.append({last_batch_of[key] for key in keys if key in last_batch_of})
        for key in keys:
            last_batch_of[key] = index
    return dependencies


def run_batches(
    batches: Sequence[B],
    send: Callable[[B], T],
    *,
    max_workers: int = 1,
) -> list[T]:
    """``send`` every batch; results in plan order. The first failure is raised.

    After a failure no further batch is started; batches already in flight finish first.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    if max_workers == 1 or len(batches) <= 1:
        return [send(batch) for batch in batches]

    dependencies = _dependencies(batches)
    dependents: list[list[int]] = [[] for _ in batches]
    waiting_on = [len(deps) for deps in dependencies]
    for index, deps in enumerate(dependencies):
        for dep in deps:
            dependents[dep].append(index)
    ready = [index for index, count in enumerate(waiting_on) if count == 0]
    heapq.heapify(ready)  # lowest index first: follow the plan's order where possible

    results: dict[int, T] = {}
    failure: tuple[int, BaseException] | None = None
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="experience-batch") as pool:
        running: dict[Future[T], int] = {}
        while True:
            while failure is None and ready and len(running) < max_workers:
                index = heapq.heappop(ready)
                running[pool.submit(send, batches[index])] = index
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                error = future.exception()
                if error is not None:
                    if failure is None or index < failure[0]:
                        failure = (index, error)
                    continue
                results[index] = future.result()
                for dependent in dependents[index]:
                    waiting_on[dependent] -= 1
                    if waiting_on[dependent] == 0:
                        heapq.heappush(ready, dependent)
    if failure is not None:
        raise failure[1]
    return [results[index] for index in range(len(batches))]


__all__ = ["run_batches"]
