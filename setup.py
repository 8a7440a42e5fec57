"""Package discovery for the layout of DESIGN.md; the metadata lives in pyproject.toml.

``envs/``, ``adapters/`` and ``experiments/`` are top-level folders installed as
``rewardfilter.envs``, ``rewardfilter.adapters`` and ``rewardfilter.experiments``.
A static package list in pyproject.toml once missed a subpackage
(``rewardfilter.experiments.domains``), which only a non-editable install
showed. Here every folder with an ``__init__.py`` below the four roots is found
by ``find_packages``, so a new subpackage (``adapters/trl``,
``adapters/code/sandbox``, ...) ships without an edit; ``tests/test_packaging.py``
checks the list against the tree and builds and installs the wheel.
"""

from setuptools import find_packages, setup

#: installed name -> source folder
ROOTS = {
    "rewardfilter": "rewardfilter",
    "rewardfilter.envs": "envs",
    "rewardfilter.adapters": "adapters",
    "rewardfilter.experiments": "experiments",
}


def discover() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in ROOTS.items():
        package_dir[name] = folder
        sub = [
            f"{name}.{p}"
            for p in find_packages(folder)
            if f"{name}.{p}" not in ROOTS  # rewardfilter/ does not hold the mapped roots
        ]
        packages += [name, *sub]
    return packages, package_dir


PACKAGES, PACKAGE_DIR = discover()

setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
