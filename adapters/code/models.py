"""Loading and wrapping the models of the code domain: policy, critic, reference.

Every code-domain module (the tiny builder, the reward model, the PPO trainer,
the evaluator) goes through these helpers so that a model directory is
validated once, in one place, *before* any expensive work starts: a path that
does not exist or that holds something other than a causal language model is
reported with a message that names the path and what was expected, instead of
a stack trace from deep inside ``transformers`` minutes into a run.

The same code runs on a CPU laptop (float32) and on a GPU (bfloat16 where the
device supports it): :func:`select_device` and :func:`select_dtype` turn the
user's ``"auto"`` into a concrete choice.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .device import select_device, select_dtype


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last masked-in token of each row (``-1`` for an empty row).

    Where a response's sequence-level reward is credited (its EOS, or its last
    token before truncation) and where a scalar-head model is read; left or
    right padding alike.
    """
    m = mask.to(torch.long)
    positions = torch.arange(m.shape[-1], device=m.device).expand_as(m)
    return torch.where(m.bool(), positions, torch.full_like(positions, -1)).max(dim=-1).values


__all__ = [
    "ScalarHeadModel",
    "ValueModel",
    "apply_lora",
    "last_token_index",
    "check_causal_lm_path",
    "disable_dropout",
    "is_lora",
    "frozen_reference",
    "load_policy",
    "load_tokenizer",
    "select_device",
    "select_dtype",
]

HEAD_WEIGHTS = "scalar_head.pt"
HEAD_CONFIG = "scalar_head.json"


# ----------------------------------------------------------------------------
# validation of model directories
# ----------------------------------------------------------------------------


def _is_causal_lm_config(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return False
    archs = getattr(config, "architectures", None) or []
    if not archs:  # a bare config of a causal-LM family: trust the model type
        return True
    causal_names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    return any(
        a in causal_names or a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs
    )


def check_causal_lm_path(path: str | os.PathLike, *, what: str = "model") -> Path:
    """Check that ``path`` is a local directory holding a causal language model.

    Reads only ``config.json`` (milliseconds), so callers can validate every
    input of a run before loading weights or sampling anything.

    Parameters
    ----------
    path : path-like
        Directory written by ``save_pretrained``.
    what : str
        Role of the model in error messages (``"policy"``, ``"reward model"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the path does not exist, or has no ``config.json``.
    ValueError
        If the config is not one of a causal language model (e.g. an encoder
        classifier, a vision model) or cannot be parsed.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"The {what} path {str(p)!r} does not exist; pass a directory written by "
            "save_pretrained (for example one built with `rewardfilter code build-tiny OUT`)."
        )
    base = lora_base_path(p)
    if base is not None:  # a LoRA adapter: its recorded base must be a causal LM
        check_causal_lm_path(base, what=f"base model of the {what} adapter at {str(p)!r}")
        return p
    if not p.is_dir() or not (p / "config.json").is_file():
        raise FileNotFoundError(
            f"The {what} path {str(p)!r} is not a Hugging Face model directory "
            "(no config.json); pass a directory written by save_pretrained."
        )
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(p)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"The {what} path {str(p)!r} has an unreadable config.json: {exc}"
        ) from None
    if not _is_causal_lm_config(config):
        archs = getattr(config, "architectures", None)
        raise ValueError(
            f"The {what} path {str(p)!r} does not hold a causal language model "
            f"(model_type={config.model_type!r}, architectures={archs}); "
            "AutoModelForCausalLM must be able to load it."
        )
    return p


ADAPTER_CONFIG = "adapter_config.json"


def lora_base_path(path: str | os.PathLike) -> Path | None:
    """The base model recorded by a peft adapter directory (None if ``path`` is no adapter).

    A LoRA checkpoint of :class:`~rewardfilter.adapters.code.ppo.PFPPOTrainer`
    is such a directory: the adapter weights and ``base_model_name_or_path``.
    """
    p = Path(path)
    if not (p / ADAPTER_CONFIG).is_file() or (p / "config.json").is_file():
        return None
    meta = json.loads((p / ADAPTER_CONFIG).read_text())
    base = meta.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"The adapter at {str(p)!r} records no base_model_name_or_path; it cannot be loaded."
        )
    return Path(base)


def is_lora(model: nn.Module) -> bool:
    """True for a peft model (LoRA adapters on a frozen base)."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def disable_dropout(model: nn.Module) -> nn.Module:
    """Set every dropout probability of ``model`` to 0, in place (as TRL and OpenRLHF do for PPO).

    PPO's ratio compares the update's forward pass with the one that computed
    the old log-probs; with dropout active the two differ even on-policy.
    Covers ``nn.Dropout`` modules and the float dropout attributes attention
    modules read at run time (``attention_dropout`` in Llama), and the config.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float):
                setattr(module, name, 0.0)
    config = getattr(model, "config", None)
    if config is not None:
        for name in list(vars(config)):
            value = getattr(config, name)
            if ("dropout" in name or "pdrop" in name) and isinstance(value, float):
                setattr(config, name, 0.0)
    return model


def load_tokenizer(path: str | os.PathLike, *, padding_side: str = "left"):
    """Load the tokenizer saved beside a model and make it ready for batching.

    Left padding is what batched generation needs (every prompt ends at the
    same column, where the first new token goes). A tokenizer without a pad
    token gets its EOS token as pad, the usual choice for GPT-style models.
    """
    from transformers import AutoTokenizer

    p = Path(path)
    try:
        tok = AutoTokenizer.from_pretrained(p)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"No tokenizer could be loaded from {str(p)!r} ({exc}); save the tokenizer "
            "beside the model with tokenizer.save_pretrained(path)."
        ) from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"The tokenizer at {str(p)!r} has neither a pad nor an EOS token.")
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


# ----------------------------------------------------------------------------
# policy, reference, LoRA
# ----------------------------------------------------------------------------


def apply_lora(
    model: nn.Module,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Any = "all-linear",
    task_type: str = "CAUSAL_LM",
):
    """Wrap ``model`` with LoRA adapters (peft), so only the adapters train.

    For models too large to fine-tune fully; the tiny CPU model does not
    need it. ``target_modules="all-linear"`` lets peft find the projections
    of any architecture.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LoRA needs peft: pip install 'rewardfilter[code]'") from exc
    scaling = {"lora_alpha": alpha, "lora_dropout": dropout}
    cfg = LoraConfig(r=r, target_modules=target_modules, task_type=task_type, **scaling)
    return get_peft_model(model, cfg)


def load_policy(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    lora: dict | None = None,
    with_tokenizer: bool = True,
):
    """Load a causal LM (and its tokenizer) from a local directory.

    The path is validated first (:func:`check_causal_lm_path`), so a typo
    fails in milliseconds with a clear message.

    Parameters
    ----------
    path : path-like
        Directory written by ``save_pretrained``.
    device, dtype : str or torch types
        ``"auto"`` picks CUDA + bfloat16 when available, else CPU + float32.
    lora : dict, optional
        Keyword arguments of :func:`apply_lora` (``{"r": 8}``); None trains
        the full model.
    with_tokenizer : bool
        Also load the tokenizer (left padding).

    Returns
    -------
    model or (model, tokenizer)
    """
    from transformers import AutoModelForCausalLM

    p = check_causal_lm_path(path, what="policy").resolve()
    dev = select_device(device)
    dt = select_dtype(dtype, dev)
    tok = load_tokenizer(p) if with_tokenizer else None
    base = lora_base_path(p)
    if base is not None:  # a LoRA checkpoint: the base with the adapter
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(base, dtype=dt).to(dev)
        model = PeftModel.from_pretrained(model, p, is_trainable=lora is not None)
        if lora is None:  # for sampling and evaluation, a plain model is simpler and faster
            model = model.merge_and_unload()
    else:
        # the absolute path is what a LoRA adapter records as its base
        model = AutoModelForCausalLM.from_pretrained(p, dtype=dt).to(dev)
        if lora is not None:
            model = apply_lora(model, **lora)
    if tok is not None and getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return (model, tok) if with_tokenizer else model


def frozen_reference(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` for the KL penalty (eval mode, no gradients).

    A deep copy rather than a reload from disk, so that the reference is the
    policy *as it starts*, whatever was done to it after loading (LoRA
    wrapping, a resumed checkpoint).
    """
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


# ----------------------------------------------------------------------------
# scalar-head models: critic and reward model
# ----------------------------------------------------------------------------


class ScalarHeadModel(nn.Module):
    """A transformer backbone with a linear head giving one scalar per token.

    The critic of PPO (a value per response token) and the reward model (the
    value at the last token of the response) are both this module; starting
    the backbone from the policy's own weights, as the PF-PPO authors and
    TRL do, gives it the policy's knowledge of the code for free.

    Parameters
    ----------
    backbone : transformers.PreTrainedModel
        A base model (no LM head) returning ``last_hidden_state``, as loaded
        by ``AutoModel.from_pretrained`` from a causal-LM checkpoint.
    head_init_std : float
        Std of the head's initial weights; small so that the first values
        are near 0 and the first updates are not dominated by the head.
    """

    kind = "scalar"

    def __init__(self, backbone: nn.Module, head_init_std: float = 0.0):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.head = nn.Linear(hidden, 1)
        nn.init.normal_(
            self.head.weight, std=head_init_std
        ) if head_init_std > 0 else nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.head.to(dtype=next(backbone.parameters()).dtype)

    @property
    def config(self):
        return self.backbone.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return one scalar per token, shape ``(B, T)`` (float32).

        ``position_ids`` is passed through so that left-padded rows get the
        same positions as in generation (the trainer derives them from the
        attention mask).
        """
        kwargs = {} if position_ids is None else {"position_ids": position_ids}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return self.head(hidden).squeeze(-1).float()

    def last_token_values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Scalar at the last real (non-padding) token of each row, shape ``(B,)``.

        Works for left and right padding: the last real token is the
        rightmost position where ``attention_mask`` is 1.
        """
        values = self(input_ids, attention_mask)
        last = last_token_index(attention_mask)
        return values.gather(1, last.clamp_min(0).unsqueeze(1)).squeeze(1)

    # from_causal_lm and from_pretrained deliberately share their signature (a path, where
    # and in which dtype to load it): a new head on a causal LM, or a saved scalar-head model.
    @classmethod
    def from_causal_lm(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = "auto",
        dtype: str | torch.dtype | None = "auto",
        **kwargs: Any,
    ) -> ScalarHeadModel:
        """New head on the backbone of the causal LM at ``path`` (LM head dropped)."""
        from transformers import AutoModel

        p = check_causal_lm_path(path, what=f"{cls.__name__} backbone")
        dev = select_device(device)
        backbone = AutoModel.from_pretrained(p, dtype=select_dtype(dtype, dev))
        return cls(backbone, **kwargs).to(dev)

    def save_pretrained(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the backbone (``save_pretrained``) and the head beside it."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(p)
        torch.save(
            {k: v.detach().cpu() for k, v in self.head.state_dict().items()}, p / HEAD_WEIGHTS
        )
        meta = {"class": type(self).__name__, "kind": self.kind, **(extra or {})}
        (p / HEAD_CONFIG).write_text(json.dumps(meta, indent=2))
        return p

    @classmethod
    def from_scalar_head(cls, other: ScalarHeadModel) -> ScalarHeadModel:
        """A copy of another scalar-head model's backbone and head (the critic from the reward model)."""
        model = cls(copy.deepcopy(other.backbone))
        model.head.load_state_dict(other.head.state_dict())
        return model.to(other.device)

    # The same signature as from_causal_lm, deliberately (see there).
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = "auto",
        dtype: str | torch.dtype | None = "auto",
    ) -> ScalarHeadModel:
        """Load a model written by :meth:`save_pretrained`."""
        from transformers import AutoModel

        p = Path(path)
        if not (p / HEAD_WEIGHTS).is_file():
            raise FileNotFoundError(
                f"{str(p)!r} holds no scalar head ({HEAD_WEIGHTS}); it was not written by "
                f"{cls.__name__}.save_pretrained."
            )
        dev = select_device(device)
        backbone = AutoModel.from_pretrained(p, dtype=select_dtype(dtype, dev))
        model = cls(backbone)
        model.head.load_state_dict(torch.load(p / HEAD_WEIGHTS, map_location="cpu"))
        return model.to(dev)


class ValueModel(ScalarHeadModel):
    """The PPO critic: a value per token from a scalar head on an LM backbone.

    Identical to :class:`ScalarHeadModel`; the subclass exists so that a
    saved critic says what it is (``scalar_head.json``) and so that the
    trainer's type hints read naturally.
    """

    kind = "value"
