"""Data parallelism with Hugging Face Accelerate: the few collective operations PF-PPO needs.

``rewardfilter code train`` runs the same code on one process and under
``accelerate launch`` (DDP). Each process samples its own prompts, with all N
responses of a prompt on the same process (so filtering stays local); what
must be global is global: advantage whitening and the loss normaliser are
sums over all processes (:meth:`Parallel.sum`), gradients are averaged by DDP,
and the statistics that are logged are gathered (:meth:`Parallel.gather`).
On one process every operation is the identity and no model is wrapped.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import torch

__all__ = ["Parallel"]


class Parallel:
    """An :class:`accelerate.Accelerator` and the collectives of the trainer.

    Parameters
    ----------
    device : str
        The config's device: ``"cpu"`` forces the CPU (also under ``accelerate
        launch --cpu``); ``"cuda:K"`` selects a GPU of a single-process run;
        ``"auto"`` and ``"cuda"`` leave the choice to Accelerate (the
        launcher's local rank under ``accelerate launch``).
    """

    def __init__(self, device: str = "auto") -> None:
        from accelerate import Accelerator

        kwargs: dict[str, Any] = {}
        if device == "cpu":
            kwargs["cpu"] = True
        elif device.startswith("cuda:") and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            torch.cuda.set_device(torch.device(device))
        self.accelerator = Accelerator(**kwargs)
        self.device = self.accelerator.device
        self.world_size = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        #: "no", "bf16" or "fp16": what `accelerate launch --mixed_precision` asked for
        self.mixed_precision = str(self.accelerator.mixed_precision)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to train through: a DDP wrapper on several processes, ``model`` itself on one."""
        if self.world_size == 1:
            return model
        return self.accelerator.prepare_model(model)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of ``value`` over all processes (``value`` itself on one)."""
        if self.world_size == 1:
            return value
        return self.accelerator.reduce(value.clone(), reduction="sum")

    def max_int(self, value: int) -> int:
        """Largest ``value`` over all processes."""
        if self.world_size == 1:
            return int(value)
        t = torch.tensor([int(value)], device=self.device)
        return int(self.accelerator.reduce(t, reduction="max").item())

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every process, in process order (picklable objects)."""
        if self.world_size == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def no_sync(self, *models: torch.nn.Module) -> contextlib.AbstractContextManager:
        """Accumulate gradients locally (no all-reduce) for the given DDP-wrapped models."""
        stack = contextlib.ExitStack()
        if self.world_size > 1:
            for m in models:
                if hasattr(m, "no_sync"):
                    stack.enter_context(m.no_sync())
        return stack

    def wait(self) -> None:
        """Barrier: every process reaches this point before any goes on."""
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

    def leave(self, status: int = 0) -> int:
        """End a process of a multi-process run without the interpreter's teardown.

        Call it after the last collective (after :meth:`wait`). Under
        ``accelerate launch`` PyTorch's gloo process group, still alive when
        Python tears down, can abort the process at exit ("terminate called
        without an active exception", SIGABRT: seen in a fresh-checkout CI run
        of the two-process test), and ``destroy_process_group`` at exit hung once
        in a full test-suite run here; so a process of a multi-process run
        flushes its output and leaves with ``os._exit``. A single process returns
        ``status``.
        """
        if self.world_size == 1:
            return status
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
