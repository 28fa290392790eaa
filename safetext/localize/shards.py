"""Split a sweep's prompt pairs over processes with accelerate, and launch those processes.

Every process generates and scores only its shard of the prompt pairs (``split_between_processes``),
writes its per-pair scores to its own checkpoint file, waits for the others, then reads every shard
file and averages over all pairs. So all processes take the same decisions (the greedy growth and the
start search depend on averages), and only the main process writes the outputs. Files, not
collectives, carry the results, so the same code works on CPU (gloo) and GPUs.

    $ safetext localize --processes 2 --out loc/       # re-launches itself through accelerate
    $ accelerate launch --multi_gpu --num_processes 2 -m safetext.localize.cli --out loc/

On a machine without CUDA the processes run on the CPU (``PartialState(cpu=True)``, gloo backend).
They are started by accelerate's torchrun launcher (``--multi_gpu``): accelerate 1.x's ``--cpu``
launcher starts a single process unless an MPI hostfile is given.

A process group is anything with accelerate's ``PartialState`` surface: ``num_processes``,
``process_index``, ``is_main_process``, ``wait_for_everyone()`` and
``split_between_processes(items)`` (a context manager yielding this process's slice).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from safetext.localize.records import LocalizationError

#: Environment variable set by accelerate/torchrun in every launched process.
WORLD_SIZE_ENV = "WORLD_SIZE"


@runtime_checkable
class ProcessGroup(Protocol):
    """The part of ``accelerate.PartialState`` a sweep uses."""

    num_processes: int
    process_index: int

    @property
    def is_main_process(self) -> bool: ...

    def wait_for_everyone(self) -> None: ...

    def split_between_processes(self, inputs: Any, apply_padding: bool = False) -> Any: ...


class SingleProcess:
    """The process group of a plain, unlaunched run: one process owning every pair."""

    num_processes = 1
    process_index = 0

    @property
    def is_main_process(self) -> bool:
        return True

    def wait_for_everyone(self) -> None:
        return None

    @contextmanager
    def split_between_processes(self, inputs: Any, apply_padding: bool = False) -> Iterator[Any]:
        yield inputs

    def __repr__(self) -> str:
        return "SingleProcess()"


def launched_world_size() -> int:
    """Number of processes of the launch this process belongs to (1 when not launched)."""
    try:
        return max(1, int(os.environ.get(WORLD_SIZE_ENV, "1")))
    except ValueError:
        return 1


def current_process_group() -> ProcessGroup:
    """accelerate's ``PartialState`` inside a multi-process launch, else :class:`SingleProcess`.

    ``PartialState`` is only created when this process was launched with several processes, so a
    single-process sweep never initialises ``torch.distributed``.
    """
    if launched_world_size() <= 1:
        return SingleProcess()
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def shard_indices(group: ProcessGroup, count: int) -> tuple[int, ...]:
    """The pair indices this process owns (contiguous, in order; possibly empty)."""
    with group.split_between_processes(list(range(count))) as mine:
        return tuple(int(index) for index in mine)


def free_port() -> int:
    """A TCP port on localhost that is free right now (for the launch's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accelerate_launch_command(processes: int, module: str, argv: Sequence[str], *, port: int | None = None) -> list[str]:
    """The command that runs ``python -m module argv`` in ``processes`` processes with accelerate.

    Args:
        processes: number of processes (>= 2).
        module: the module to run in every process (``safetext.localize.cli``).
        argv: its arguments.
        port: rendezvous port (default: a free one, so concurrent launches do not collide).
    """
    if processes < 2:
        raise LocalizationError(f"a multi-process launch needs at least 2 processes, got {processes}")
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--multi_gpu",
        "--main_process_port",
        str(port if port is not None else free_port()),
    ]
    return [*command, "-m", module, *argv]
