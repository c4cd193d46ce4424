"""Multi-process training under torchrun: this process's place in the run (rank, world size, device),
joining and leaving the process group, and the few collectives training needs.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from realspike_cli.core import errors
from realspike_cli.core.errors import ConfigError, RealSpikeError

TIMEOUT_ENV = "REALSPIKE_DIST_TIMEOUT"
# Long enough for rank 0 to write an ImageNet checkpoint while the others wait, short enough that a rank
# that died on another node does not leave the rest blocked for the NCCL default of hours.
DEFAULT_TIMEOUT_S = 900.0
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """One process's place in a run. The default is a plain single process: every helper is then a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""  # "nccl" or "gloo" once the process group is up

    @property
    def enabled(self) -> bool:
        return bool(self.backend)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # collectives -----------------------------------------------------------------------------------------
    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """`tensor` summed (or maxed) over ranks, on the device it came from; the input is left alone."""
        if not self.enabled:
            return tensor.clone()
        work = tensor.detach().to(self.device, copy=True)  # NCCL only reduces GPU tensors
        dist.all_reduce(work, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return work.to(tensor.device)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts buffers at the start of each forward, so after the last step each rank holds its own
        update; evaluating or saving without this would mix slightly different statistics across ranks.
        """
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer.data, src=0)

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around `model` (the caller keeps the unwrapped one for state_dicts)."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        with _signals_for_main_thread_only():  # DDP may start communication threads of its own
            return DistributedDataParallel(model, device_ids=ids)

    # rank 0 decides ----------------------------------------------------------------------------------------
    def from_main(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 only and hand its result (or its error) to every rank."""
        if not self.enabled:
            return fn()
        if self.is_main:
            return self._run_and_announce(fn, share=True)
        return self._wait_for_main()

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0, then on the others (e.g. a download); rank 0's error stops them all."""
        if not self.enabled:
            return fn()
        if self.is_main:
            return self._run_and_announce(fn, share=False)
        self._wait_for_main()
        return fn()

    def _wait_for_main(self) -> object:
        """Rank 0's shared value, or its error raised here too."""
        failure, value = self._receive()
        if failure:
            raise _mirror(failure)
        return value

    def _run_and_announce(self, fn: Callable[[], T], *, share: bool) -> T:
        try:
            value = fn()
        except Exception as exc:
            self._send((type(exc).__name__, str(exc), isinstance(exc, RealSpikeError)), None)
            raise
        self._send(None, value if share else None)
        return value

    def _send(self, failure: Any, value: Any) -> None:
        dist.broadcast_object_list([failure, value], src=0, device=self.device)

    def _receive(self) -> tuple[Any, Any]:
        box: list[Any] = [None, None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0], box[1]


def _mirror(failure: tuple[str, str, bool]) -> RealSpikeError:
    """The error rank 0 raised, re-created on another rank and marked so the CLI prints it only once."""
    name, message, user_error = failure
    cls = getattr(errors, name, None)
    simple = isinstance(cls, type) and issubclass(cls, RealSpikeError) and cls is not errors.UnknownNameError
    exc = cls(message) if simple else RealSpikeError(message if user_error else f"rank 0 failed: {name}: {message}")
    exc.reported_by_rank0 = True  # type: ignore[attr-defined]
    return exc


# joining and leaving -------------------------------------------------------------------------------------
def launched_by_torchrun() -> bool:
    """torchrun (and torch.distributed.run) set RANK, WORLD_SIZE and LOCAL_RANK for every worker."""
    return all(name in os.environ for name in _TORCHRUN_VARS)


def exit_worker(code: int) -> NoReturn:
    """Leave a torchrun worker with `code` once its output is flushed, skipping the interpreter's finalizers.

    The process group is destroyed by then (`distributed` tears it down however training ends); what is left
    are c10d's C++ threads, and destroying them during interpreter shutdown aborted the rank that took a Ctrl-C
    about 1 run in 10 ("terminate called without an active exception", exit -6) after a clean stop."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said on it
            pass
    os._exit(code)


def env_rank() -> int:
    """This process's global rank as torchrun announced it (0 outside torchrun); no process group needed."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def device_kind(requested: str) -> str:
    """"cpu" or "cuda" for a torchrun worker's --device; the same answer on every rank of a node."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if requested.startswith("cuda:"):
        raise ConfigError(f"under torchrun each process uses cuda:LOCAL_RANK; pass --device cuda (or auto), "
                          f"not {requested!r} (limit the GPUs with CUDA_VISIBLE_DEVICES)")
    if requested not in ("auto", "cuda"):
        raise ConfigError(f"unknown device {requested!r} (choose from: auto, cpu, cuda)")
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    return "cuda"


def pick_device(requested: str, local_rank: int) -> torch.device:
    """Under torchrun each process drives cuda:LOCAL_RANK, or the CPU."""
    if device_kind(requested) == "cpu":
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {local_rank} has no GPU: {torch.cuda.device_count()} CUDA device(s) "
                          "visible on this node; lower --nproc-per-node")
    return torch.device("cuda", local_rank)


def check_sync_bn(sync_bn: bool, multi_process: bool, device_type: str) -> None:
    """SyncBatchNorm needs NCCL: refuse it on the CPU (gloo) and in a single process."""
    if not sync_bn:
        return
    if device_type != "cuda":
        raise ConfigError("--sync-bn needs CUDA GPUs (SyncBatchNorm runs on NCCL) but this run is on the CPU; "
                          "drop --sync-bn")
    if not multi_process:
        raise ConfigError("--sync-bn only applies to multi-process runs: launch with torchrun (docs/distributed.md)")


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be positive, got {raw!r}")
    return value


def init_from_env(device: str = "auto") -> DistContext:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU); a plain DistContext outside torchrun."""
    if not launched_by_torchrun():
        return DistContext()
    rank, world, local = (int(os.environ[name]) for name in _TORCHRUN_VARS)
    try:
        dev = pick_device(device, local)
    except ConfigError as exc:  # may hold on some nodes only: every rank that hits it says so
        raise RealSpikeError(f"rank {rank}: {exc}") from None
    backend = "nccl" if dev.type == "cuda" else "gloo"
    timeout = timeout_seconds()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    try:
        with _signals_for_main_thread_only():
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout),
                                    device_id=dev if dev.type == "cuda" else None)
    except (RuntimeError, ValueError) as exc:  # store / network errors, including the timeout itself
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RealSpikeError(f"rank {rank}: could not join the {backend} process group ({reason})") from None
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend)


@contextmanager
def _signals_for_main_thread_only() -> Iterator[None]:
    """Threads started inside inherit a mask blocking SIGINT/SIGTERM, so Ctrl-C always reaches the main
    thread's handler: delivered to a communication thread it interrupts a blocking call there, which can
    abort the process ("terminate called without an active exception") instead of stopping it cleanly."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def teardown(*, wait_for_peers: bool = False) -> None:
    """Destroy the group; after a normal finish, first wait until every rank got here, so no rank tears its
    communication threads down while a peer may still be talking to it. (Not after an error: the peers may
    be blocked in another collective, and waiting would hang until the timeout.)"""
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            try:
                dist.barrier()
            except RuntimeError:  # a peer already failed: nothing left to wait for
                pass
        dist.destroy_process_group()


@contextmanager
def distributed(device: str = "auto") -> Iterator[DistContext]:
    """The process group for the duration of the block, destroyed however the block ends."""
    ctx = init_from_env(device)
    finished = False
    try:
        yield ctx
        finished = True
    finally:
        teardown(wait_for_peers=finished)
