"""The runner never loses or mixes results (issue 12, items 5-8).

* a corrupt or half-written ``records.jsonl`` is detected and its run redone;
* an ``--out`` holding a sweep of a different config is refused, naming what
  differs, unless ``--restart``;
* a second runner on the same ``--out`` is refused while the first holds the lock;
* a read-only ``--out``: a clear message; a finished sweep re-runs as a no-op
  and is reported in place.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
from pathlib import Path

import pytest

from rewardfilter.cli import main
from rewardfilter.experiments import finished_runs, load_config, make_report, run_experiment
from rewardfilter.experiments.runner import RunnerError, folder_lock


def _run(out: Path, **kw):
    return run_experiment("tiny.yaml", out=str(out), workers=1, progress=False, **kw)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "out"
    summary = _run(out)
    assert summary.ok and summary.total == 16
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _first_run(out: Path) -> Path:
    return out / "runs" / json.loads((out / "manifest.json").read_text())[0]


def test_a_corrupt_record_line_is_detected_and_the_run_redone(finished, tmp_path):
    out = _copy(finished, tmp_path / "out")
    run_dir = _first_run(out)
    good = (run_dir / "records.jsonl").read_text()
    lines = good.splitlines(keepends=True)
    (run_dir / "records.jsonl").write_text(lines[0] + '{"step": 2' + "\n" + "".join(lines[2:]))
    assert run_dir.name not in {r["run_id"] for r in finished_runs(out)}  # not counted as done
    summary = _run(out)
    assert summary.completed == [run_dir.name] and summary.skipped == 15
    assert (run_dir / "records.jsonl").read_text() == good  # seeded: the redone run is identical


def test_a_half_written_records_file_is_detected_and_the_run_redone(finished, tmp_path):
    out = _copy(finished, tmp_path / "out")
    run_dir = _first_run(out)
    good = (run_dir / "records.jsonl").read_text()
    (run_dir / "records.jsonl").write_text("".join(good.splitlines(keepends=True)[:-1]))
    summary = _run(out)
    assert summary.completed == [run_dir.name]
    assert (run_dir / "records.jsonl").read_text() == good


def test_a_different_config_in_out_is_refused_naming_what_differs(finished, tmp_path):
    out = _copy(finished, tmp_path / "out")
    other = load_config("tiny.yaml")
    import dataclasses

    other = dataclasses.replace(other, seeds=(0, 1, 2))
    with pytest.raises(RunnerError, match=r"seeds: \[0, 1\] -> \[0, 1, 2\]") as info:
        run_experiment(other, out=str(out), workers=1, progress=False)
    assert "--restart" in str(info.value)
    assert len(finished_runs(out)) == 16  # nothing touched
    summary = run_experiment(other, out=str(out), workers=2, progress=False, restart=True)
    assert summary.ok and summary.skipped == 0 and summary.total == 24


def test_the_cli_refuses_a_different_config_with_a_message(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "out")
    cfg = tmp_path / "t.yaml"
    text = (Path(load_config.__code__.co_filename).parent / "tiny.yaml").read_text()
    cfg.write_text(text.replace("lr: 30.0", "lr: 20.0"))
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "hparams.lr: 30.0 -> 20.0" in err and "Traceback" not in err


def test_a_second_runner_on_the_same_out_is_refused(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "out")
    (_first_run(out) / "final.json").unlink()  # one run left to do
    with folder_lock(out):  # another runner holds the folder
        with pytest.raises(RunnerError, match=rf"Another runner \(pid {os.getpid()}\)"):
            _run(out)
        assert main(["run", "tiny.yaml", "--out", str(out), "--no-progress"]) == 2
        assert "Another runner" in capsys.readouterr().err
    assert _run(out).completed == [_first_run(out).name]  # the lock is released


@pytest.fixture
def read_only(monkeypatch):
    """Make ``path`` read-only: writes under it fail as on a read-only file system.

    chmod does not stop root (CI may run as root), so creating, writing and
    replacing files below the folder is refused the way the kernel refuses it.
    """
    roots: list[Path] = []

    def under(p) -> bool:
        p = Path(os.fsdecode(p)).absolute()
        return any(p == r or r in p.parents for r in roots)

    def refuse(p):
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(p))

    real_open, real_mkdir, real_replace = builtins.open, Path.mkdir, os.replace
    real_unlink = Path.unlink

    def fake_open(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def fake_mkdir(self, *a, **k):
        if under(self) and not self.exists():
            refuse(self)
        return real_mkdir(self, *a, **k)

    def fake_replace(src, dst, *a, **k):
        if under(dst):
            refuse(dst)
        return real_replace(src, dst, *a, **k)

    def fake_unlink(self, *a, **k):
        if under(self):
            refuse(self)
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(Path, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "replace", fake_replace)
    monkeypatch.setattr(Path, "unlink", fake_unlink)
    return lambda path: roots.append(Path(path).absolute())


def test_a_finished_read_only_sweep_reruns_as_a_no_op_and_is_reported(finished, read_only, capsys):
    read_only(finished)
    summary = _run(finished)
    assert summary.ok and summary.skipped == 16 and not summary.completed
    report = make_report(dir=str(finished))
    assert report.files == [] and "# tiny" in report.markdown
    assert main(["report", str(finished)]) == 0
    assert "read-only: nothing written" in capsys.readouterr().out


def test_an_unfinished_sweep_in_a_read_only_out_fails_with_a_message(finished, tmp_path, read_only):
    out = _copy(finished, tmp_path / "out")
    (_first_run(out) / "final.json").unlink()
    read_only(out)
    with pytest.raises(RunnerError, match="Cannot write to the output folder .*Read-only"):
        _run(out)
    assert main(["run", "tiny.yaml", "--out", str(out), "--no-progress"]) == 2
