"""A learned proxy reward model: an ensemble fitted on limited data.

This is the noise model closest to RLHF: the reward is not a perturbation of
the truth but the prediction of a model fitted on a few transitions collected
by a weak (uniformly random) policy. It is accurate where its data was and
wrong, in a structured way, elsewhere: exactly where a policy that improves
goes. The ensemble's members disagree more off their data, which is what the
``uncertainty`` filter uses.

Fitting takes seconds (K small scikit-learn MLPs on a few thousand samples);
the fitted weights are cached on disk as ``.npz`` (pure arrays, no pickle)
under a name hashed from everything that determines them, and refitted when
the file is missing or was written for other parameters, and with a warning when
it is unreadable or invalid (truncated, damaged, an array missing, non-finite
weights). At run time prediction is a numpy forward pass over all members at
once, so that a step costs microseconds rather than K scikit-learn calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rewardfilter.noise import NoiseModel
from rewardfilter.validation import check_bool, check_scalar, is_number, param_error

#: Bump when the cached arrays change meaning; older files are then refitted.
FORMAT_VERSION = 1
CACHE_ENV_VAR = "REWARDFILTER_CACHE"

# fitted models shared by every env copy of this process (a vec env builds many)
_MEMO: dict[str, dict[str, np.ndarray]] = {}


def default_cache_dir() -> Path:
    """``$REWARDFILTER_CACHE`` if set, else ``~/.cache/rewardfilter``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rewardfilter"


@dataclass(frozen=True)
class LearnedRewardConfig:
    """How the proxy reward model is fitted (every field enters the cache key but ``cache_dir``)."""

    n_members: int = field(
        default=5, metadata={"help": "Ensemble size K (>= 2, so that disagreement is defined)."}
    )
    n_transitions: int = field(
        default=2000, metadata={"help": "Transitions collected by the random policy to fit on."}
    )
    hidden_sizes: tuple[int, ...] = field(
        default=(32,), metadata={"help": "Hidden layer sizes of each member MLP."}
    )
    max_iter: int = field(
        default=100, metadata={"help": "Adam epochs per member (scikit-learn MLPRegressor)."}
    )
    use_next_obs: bool = field(
        default=True,
        metadata={"help": "Feed the next observation too (needed for shaping rewards)."},
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seed of data collection, bootstrap resampling and initialisation."},
    )
    env_id: str | None = field(
        default=None,
        metadata={
            "help": "Gymnasium id of the noise-free task to collect data on; set by the task."
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": f"Cache folder; default ${CACHE_ENV_VAR} or ~/.cache/rewardfilter."},
    )

    def __post_init__(self):
        owner = "learned noise"
        for name, minimum in (
            ("n_members", 2),
            ("n_transitions", 50),
            ("max_iter", 1),
            ("seed", 0),
        ):
            check_scalar(getattr(self, name), name, owner, "int", min_val=minimum)
        sizes = self.hidden_sizes
        if isinstance(sizes, list):
            sizes = tuple(sizes)
            object.__setattr__(self, "hidden_sizes", sizes)
        if (
            not isinstance(sizes, tuple)
            or not sizes
            or not all(is_number(h, "int") and h >= 1 for h in sizes)
        ):
            raise param_error(
                "hidden_sizes", owner, "a non-empty tuple of ints >= 1", self.hidden_sizes
            )
        check_bool(self.use_next_obs, "use_next_obs", owner)
        if self.env_id is not None and not isinstance(self.env_id, str):
            raise param_error("env_id", owner, "a Gymnasium id string or None", self.env_id)

    def key_fields(self) -> dict[str, Any]:
        """The fields the fitted weights depend on (all but ``cache_dir``)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "cache_dir"
        }

    def cache_key(self, observation_space: gym.Space, action_space: gym.Space) -> str:
        """A hash of everything the fitted weights depend on (not where they are stored)."""
        fields = self.key_fields()
        payload = {
            "format": FORMAT_VERSION,
            "config": fields,
            "observation_space": repr(observation_space),
            "action_space": repr(action_space),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def transition_features(
    obs: np.ndarray, action: Any, next_obs: np.ndarray, action_space: gym.Space, use_next_obs: bool
) -> np.ndarray:
    """Flatten one transition into the model's input vector (discrete actions one-hot)."""
    parts = [np.asarray(obs, dtype=np.float64).ravel()]
    if isinstance(action_space, gym.spaces.Discrete):
        onehot = np.zeros(int(action_space.n))
        onehot[int(action) - int(action_space.start)] = 1.0
        parts.append(onehot)
    else:
        parts.append(np.asarray(action, dtype=np.float64).ravel())
    if use_next_obs:
        parts.append(np.asarray(next_obs, dtype=np.float64).ravel())
    return np.concatenate(parts)


class LearnedRewardModel(NoiseModel):
    """An ensemble of K small MLPs predicting the reward from ``(obs, action[, next_obs])``.

    Parameters
    ----------
    config : LearnedRewardConfig
        Fitting parameters; ``config.env_id`` names the noise-free task the
        random-policy data is collected on (the registered tasks set it).
    observation_space, action_space : gymnasium spaces
        The task's spaces, which fix the input layout.

    The weights are loaded from the cache or fitted on construction.
    """

    name = "learned"
    uses_transitions = True

    def __init__(
        self, config: LearnedRewardConfig, observation_space: gym.Space, action_space: gym.Space
    ):
        if config.env_id is None:
            raise ValueError(
                "The learned noise model needs 'env_id' (the noise-free Gymnasium task to collect data on); "
                "use a registered rewardfilter task or pass noise_kwargs={'env_id': ...}."
            )
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.key = config.cache_key(observation_space, action_space)
        self.cache_dir = (
            Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
        )
        self.path = (
            self.cache_dir / f"learned-{config.env_id.replace('/', '_')}-{self.key[:16]}.npz"
        )
        self.loaded_from_cache = False
        self._arrays = self._load_or_fit()
        self._layers = [
            (self._arrays[f"W{i}"], self._arrays[f"b{i}"])
            for i in range(int(self._arrays["n_layers"]))
        ]

    @property
    def n_members(self) -> int:
        return self.config.n_members

    def aggregate(self, values: np.ndarray, rng: np.random.Generator) -> float:
        """The reward from the members' values (of a step, or an episode's sums): their mean."""
        return float(values.mean())

    def corrupt(self, value, rng, low, high):  # pragma: no cover - transitions path is used instead
        raise TypeError(
            "The learned model predicts rewards from transitions; call predict(obs, action, next_obs)."
        )

    def predict(self, obs: np.ndarray, action: Any, next_obs: np.ndarray) -> np.ndarray:
        """The K member predictions (shape ``(K,)``) of the reward of one transition."""
        x = transition_features(obs, action, next_obs, self.action_space, self.config.use_next_obs)
        return self.predict_features(x[None, :])[:, 0]

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Member predictions for a batch of feature rows: shape ``(K, n)``."""
        a = self._arrays
        h = (x - a["x_mean"]) / a["x_std"]  # (n, d)
        h = np.broadcast_to(h, (self.n_members, *h.shape))  # (K, n, d)
        last = len(self._layers) - 1
        for i, (w, b) in enumerate(self._layers):
            h = np.matmul(h, w) + b[:, None, :]
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h[..., 0] * a["y_std"] + a["y_mean"]

    # -- cache -----------------------------------------------------------------

    def _load_or_fit(self) -> dict[str, np.ndarray]:
        if self.key in _MEMO:
            self.loaded_from_cache = True
            return _MEMO[self.key]
        arrays = self._load()
        if arrays is None:
            arrays = self._fit()
            self._save(arrays)
        else:
            self.loaded_from_cache = True
        _MEMO[self.key] = arrays
        return arrays

    def _load(self) -> dict[str, np.ndarray] | None:
        """The cached arrays, or None (refit) when missing, stale, unreadable or invalid.

        A file written for another key is stale and refitted silently; a file
        that cannot be read (truncated, a flipped byte), lacks an array, has
        arrays of the wrong shape or non-finite weights is refitted with a
        warning that names the file and the reason.
        """
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # BadZipFile, zlib/CRC errors, OSError, ValueError, EOFError...
            return self._invalid(f"unreadable ({type(exc).__name__}: {exc})")
        if "key" not in arrays:
            return self._invalid("no 'key' array")
        if str(arrays["key"]) != self.key:
            return None  # written for other parameters: refit silently
        problem = _check_arrays(arrays, self.n_members)
        return self._invalid(problem) if problem else arrays

    def _invalid(self, reason: str) -> None:
        warnings.warn(
            f"The learned reward model cache {self.path} is {reason}; refitting it.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None

    def _save(self, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically, so that env copies fitting in parallel never read a half-written file."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only cache must not stop training
            warnings.warn(
                f"Could not cache the learned reward model at {self.path}: {exc}", stacklevel=3
            )

    # -- fitting ---------------------------------------------------------------

    def collect(
        self, policy: Any = None, n: int | None = None, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features and true rewards of ``n`` steps (default ``n_transitions``) of ``policy``.

        ``policy(obs) -> action``; by default a uniformly random one. ``seed``
        (default the config's) seeds the resets and the random actions.
        """
        c = self.config
        n = c.n_transitions if n is None else n
        seed = c.seed if seed is None else seed
        env = gym.make(c.env_id)
        env.action_space.seed(seed)
        xs, ys = [], []
        episode = 0
        obs, _ = env.reset(seed=seed)
        try:
            while len(ys) < n:
                action = env.action_space.sample() if policy is None else policy(obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                xs.append(
                    transition_features(obs, action, next_obs, self.action_space, c.use_next_obs)
                )
                ys.append(float(reward))
                obs = next_obs
                if terminated or truncated:
                    episode += 1
                    obs, _ = env.reset(seed=seed + episode)
        finally:
            env.close()
        return np.asarray(xs), np.asarray(ys)

    def _fit(self) -> dict[str, np.ndarray]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        c = self.config
        x, y = self.collect()
        x_mean, x_std = x.mean(axis=0), x.std(axis=0)
        x_std[x_std < 1e-8] = 1.0
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        xn, yn = (x - x_mean) / x_std, (y - y_mean) / y_std
        rng = np.random.default_rng(c.seed)
        members = []
        for k in range(c.n_members):
            # bootstrap resampling: members see different data, so they disagree off it
            idx = rng.integers(0, x.shape[0], size=x.shape[0])
            mlp = MLPRegressor(
                hidden_layer_sizes=c.hidden_sizes,
                max_iter=c.max_iter,
                random_state=c.seed * 1000 + k,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                mlp.fit(xn[idx], yn[idx])
            members.append(mlp)
        arrays: dict[str, np.ndarray] = {
            "key": np.asarray(self.key),
            "n_layers": np.asarray(len(members[0].coefs_)),
            "x_mean": x_mean,
            "x_std": x_std,
            "y_mean": np.asarray(y_mean),
            "y_std": np.asarray(y_std),
        }
        for i in range(len(members[0].coefs_)):
            arrays[f"W{i}"] = np.stack([m.coefs_[i] for m in members])
            arrays[f"b{i}"] = np.stack([m.intercepts_[i] for m in members])
        return arrays


def _check_arrays(arrays: dict[str, np.ndarray], n_members: int) -> str | None:
    """Why the cached arrays cannot be a ``n_members``-member MLP ensemble, or None if they can."""
    needed = ["n_layers", "x_mean", "x_std", "y_mean", "y_std"]
    missing = [name for name in needed if name not in arrays]
    if missing:
        return f"missing the array(s) {missing}"
    try:
        n_layers = int(arrays["n_layers"])
    except (TypeError, ValueError):
        return "holding a bad 'n_layers'"
    layers = [name for i in range(max(n_layers, 0)) for name in (f"W{i}", f"b{i}")]
    missing = [name for name in layers if name not in arrays]
    if n_layers < 1 or missing:
        return f"missing the array(s) {missing or ['W0', 'b0']}"
    for name in needed[1:] + layers:
        a = arrays[name]
        if a.dtype.kind != "f" or not np.isfinite(a).all():
            return f"holding non-finite or non-float values in {name!r}"
    width = arrays["x_mean"].shape[0] if arrays["x_mean"].ndim == 1 else -1
    if arrays["x_std"].shape != (width,) or (arrays["x_std"] <= 0).any():
        return "holding a bad input scale 'x_std'"
    if float(arrays["y_std"]) <= 0:
        return "holding a bad output scale 'y_std'"
    for i in range(n_layers):
        w, b = arrays[f"W{i}"], arrays[f"b{i}"]
        out = 1 if i == n_layers - 1 else (w.shape[2] if w.ndim == 3 else -1)
        if w.ndim != 3 or w.shape[0] != n_members or w.shape[1] != width or w.shape[2] != out:
            return f"holding a layer {f'W{i}'!r} of shape {w.shape}"
        if b.shape != (n_members, out):
            return f"holding a bias {f'b{i}'!r} of shape {b.shape}"
        width = out
    return None
