"""Deprecated: use :mod:`rewardfilter.validation` (public).

A thin re-export kept only so that modules not yet migrated keep importing;
it will be removed. Nothing is defined here.
"""

import warnings

from rewardfilter.validation import (  # noqa: F401
    as_generator,
    check_1d_finite,
    check_ensemble,
    check_groups,
    check_same_length,
    check_weights,
    param_error,
)

warnings.warn(
    "rewardfilter._validation is deprecated; import from rewardfilter.validation instead.",
    DeprecationWarning,
    stacklevel=2,
)
