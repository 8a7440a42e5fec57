"""Task records and loaders: HumanEval from the installed package, JSONL round trips, bad input."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pytest

from rewardfilter.adapters.code.tasks import CodeTask, load_humaneval, load_jsonl, save_jsonl

FIELDS = ("task_id", "prompt", "entry_point", "test", "canonical_solution")


def _record(i: int = 0) -> dict:
    return {
        "task_id": f"T/{i}",
        "prompt": f'def f{i}(x):\n    """Return x."""\n',
        "entry_point": f"f{i}",
        "test": "def check(candidate):\n    assert candidate(1) == 1\n",
        "canonical_solution": "    return x\n",
    }


def test_humaneval_has_164_well_formed_tasks():
    tasks = load_humaneval()
    assert len(tasks) == 164
    assert len({t.task_id for t in tasks}) == 164
    assert tasks[0].task_id == "HumanEval/0"
    assert tasks[0].entry_point == "has_close_elements"
    for t in tasks:
        assert "def check(candidate)" in t.test
        assert f"def {t.entry_point}" in t.prompt


def test_codetask_is_frozen_and_has_humaneval_fields():
    task = CodeTask(**_record())
    assert tuple(f.name for f in dataclasses.fields(CodeTask)) == FIELDS
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.prompt = "x"  # type: ignore[misc]
    assert CodeTask.from_dict(task.to_dict()) == task


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_save_and_load_round_trip(tmp_path, suffix):
    tasks = [CodeTask(**_record(i)) for i in range(3)]
    path = save_jsonl(tmp_path / f"tasks{suffix}", tasks)
    assert load_jsonl(path) == tasks
    # the other argument order is accepted too
    save_jsonl(tasks, tmp_path / f"again{suffix}")
    assert load_jsonl(tmp_path / f"again{suffix}") == tasks


def test_humaneval_round_trips_through_jsonl(tmp_path):
    tasks = load_humaneval()
    assert load_jsonl(save_jsonl(tmp_path / "he.jsonl.gz", tasks)) == tasks


def test_blank_lines_and_extra_keys_are_tolerated(tmp_path):
    rec = dict(_record(), extra="ignored")
    path = tmp_path / "t.jsonl"
    path.write_text("\n" + json.dumps(rec) + "\n\n")
    assert load_jsonl(path) == [CodeTask(**_record())]


@pytest.mark.parametrize("field", FIELDS)
def test_missing_field_names_line_and_field(tmp_path, field):
    bad = _record(1)
    del bad[field]
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=rf"line 2: missing field '{field}'"):
        load_jsonl(path)


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n\n" + '{"task_id": "x", \n')
    with pytest.raises(ValueError, match=r"line 3: invalid JSON"):
        load_jsonl(path)


def test_invalid_json_in_gzip_names_line(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("not json\n")
    with pytest.raises(ValueError, match=r"line 1: invalid JSON"):
        load_jsonl(path)


def test_wrong_types_and_duplicates_are_rejected(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(dict(_record(), prompt=3)) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'prompt' must be a string"):
        load_jsonl(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=r"line 1: expected a JSON object"):
        load_jsonl(path)
    path.write_text(json.dumps(dict(_record(), entry_point="not valid")) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'entry_point'"):
        load_jsonl(path)
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record()) + "\n")
    with pytest.raises(ValueError, match=r"line 2: duplicate task_id 'T/0' \(first on line 1\)"):
        load_jsonl(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_jsonl(tmp_path / "nope.jsonl")


def test_byte_order_mark_is_tolerated(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_record()).encode() + b"\n")
    assert load_jsonl(path) == [CodeTask(**_record())]


# ---- hostile task files (issue 12.13): every error names the file and the line


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(_record(0)).encode() + b"\n" + b'{"task_id": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match=rf"{path} line 2: not valid UTF-8 \(byte 0xff"):
        load_jsonl(path)


def test_truncated_gzip_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    save_jsonl(path, [CodeTask(**_record(i)) for i in range(200)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{path} line \d+: the compressed file is truncated"):
        load_jsonl(path)


def test_deeply_nested_json_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=rf"{path} line 2: JSON nested too deeply"):
        load_jsonl(path)


def test_entry_point_must_be_a_function_the_prompt_defines(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(dict(_record(0), entry_point="g")) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'entry_point' names 'g', but the prompt"):
        load_jsonl(path)
    # a name that only appears in a call or a comment is not a definition
    prompt = "# calls f0(x)\nresult = f0(1)\n"
    path.write_text(json.dumps(dict(_record(0), prompt=prompt)) + "\n")
    with pytest.raises(ValueError, match=r"field 'entry_point' names 'f0'"):
        load_jsonl(path)


def test_test_must_define_check(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(dict(_record(0), test="assert f0(1) == 1\n")) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'test' must define 'def check"):
        load_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=rf"{path}: no tasks"):
        load_jsonl(path)
