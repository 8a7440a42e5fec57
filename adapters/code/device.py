"""The one device and dtype resolver of the code domain.

Every code-domain module (trainer, reward model, evaluator, tiny builder)
turns the user's ``"auto"`` into a concrete device and dtype here, so that
they agree (``fp16`` is ``float16`` everywhere).

For the PPO trainer the dtype is the *compute* dtype of mixed precision: the
trained models keep float32 master weights and their forward passes run under
``torch.autocast`` (see :mod:`rewardfilter.adapters.code.ppo.trainer`).
"""

from __future__ import annotations

import torch

__all__ = ["DTYPE_NAMES", "select_device", "select_dtype"]


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA when available, else CPU.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` / None, or anything ``torch.device`` accepts (``"cpu"``,
        ``"cuda:1"``, ...). An explicit CUDA request on a machine without one
        raises here rather than at the first tensor move.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"The 'device' parameter must name an available device; got {str(device)!r} "
            "but torch.cuda.is_available() is False."
        )
    return dev


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def select_dtype(
    dtype: str | torch.dtype | None = "auto", device: torch.device | str = "cpu"
) -> torch.dtype:
    """Resolve ``"auto"`` to bfloat16 on a GPU that supports it, else float32.

    bfloat16 halves memory and is what the PF-PPO authors trained in; on a
    CPU it is slower than float32 for small models, so ``"auto"`` keeps
    float32 there.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(
            f"The 'dtype' parameter must be 'auto' or one of {sorted(_DTYPES)}; got {dtype!r}."
        )
    return _DTYPES[dtype]


#: every dtype name the resolver accepts (besides ``"auto"``)
DTYPE_NAMES: tuple[str, ...] = tuple(_DTYPES)
