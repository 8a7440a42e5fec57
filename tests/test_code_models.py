"""Model loading, the scalar-head critic, the frozen reference and the shared sampler."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardfilter.adapters.code.models import (  # noqa: E402
    ScalarHeadModel,
    ValueModel,
    check_causal_lm_path,
    frozen_reference,
    load_policy,
    select_device,
    select_dtype,
)
from rewardfilter.adapters.code.sampling import (  # noqa: E402
    _response_mask,
    generate,
    truncate_at_stop,
)

# --------------------------------------------------------------- bad paths


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(tmp_path / "nope")


def test_directory_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(tmp_path)


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "vit", "architectures": ["ViTModel"]},
        {"model_type": "bert", "architectures": ["BertForSequenceClassification"]},
    ],
)
def test_non_causal_lm_is_rejected_before_loading(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    # no weights at all: the check must fail on the config alone, before any loading
    with pytest.raises(ValueError, match="does not hold a causal language model"):
        load_policy(tmp_path)
    with pytest.raises(ValueError, match="causal language model"):
        ValueModel.from_causal_lm(tmp_path)


def test_device_and_dtype_selection():
    assert select_device("cpu").type == "cpu"
    assert select_dtype("auto", "cpu") == torch.float32
    assert select_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="'dtype' parameter"):
        select_dtype("float8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'device' parameter"):
            select_device("cuda")


# --------------------------------------------------------------- policy


def test_load_policy_gives_a_left_padding_tokenizer(micro):
    assert check_causal_lm_path(micro) == micro
    model, tok = load_policy(micro, device="cpu")
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert model.config.vocab_size == len(tok)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # loads like any hub model
    AutoModelForCausalLM.from_pretrained(micro)
    AutoTokenizer.from_pretrained(micro)


def test_frozen_reference_does_not_move_with_the_policy(micro):
    model = load_policy(micro, device="cpu", with_tokenizer=False)
    ref = frozen_reference(model)
    assert not any(p.requires_grad for p in ref.parameters())
    assert not ref.training
    before = [p.detach().clone() for p in ref.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, ref.parameters(), strict=True))


def test_lora_trains_only_the_adapters(micro):
    pytest.importorskip("peft")
    model = load_policy(micro, device="cpu", lora={"r": 2}, with_tokenizer=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)


# --------------------------------------------------------------- critic


def test_value_model_shapes_padding_and_round_trip(micro, tmp_path):
    torch.manual_seed(0)
    v = ValueModel.from_causal_lm(micro, device="cpu")
    torch.nn.init.normal_(v.head.weight)  # a non-trivial head (init is zero)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    values = v(ids, mask)
    assert values.shape == (2, 4) and values.dtype == torch.float32
    last = v.last_token_values(ids, mask)
    assert torch.allclose(last, torch.stack([values[0, 3], values[1, 1]]))
    # left padding: the same row shifted right gives the same last value
    left = v.last_token_values(torch.tensor([[0, 0, 9, 10]]), torch.tensor([[0, 0, 1, 1]]))
    pos = torch.tensor([[0, 0, 0, 1]])
    direct = v(torch.tensor([[0, 0, 9, 10]]), torch.tensor([[0, 0, 1, 1]]), position_ids=pos)
    assert torch.allclose(
        left, v(torch.tensor([[0, 0, 9, 10]]), torch.tensor([[0, 0, 1, 1]]))[:, -1]
    )
    assert torch.allclose(direct[0, -1], last[1], atol=1e-5)
    v.save_pretrained(tmp_path / "critic")
    v2 = ValueModel.from_pretrained(tmp_path / "critic", device="cpu")
    assert torch.allclose(v2(ids, mask), values)
    assert json.loads((tmp_path / "critic" / "scalar_head.json").read_text())["kind"] == "value"


def test_scalar_head_from_pretrained_needs_a_head(micro):
    with pytest.raises(FileNotFoundError, match="no scalar head"):
        ScalarHeadModel.from_pretrained(micro)


# --------------------------------------------------------------- sampler


def test_response_mask_ends_at_the_first_eos():
    eos = 2
    resp = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0]])
    mask, truncated = _response_mask(resp, eos)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


def test_truncate_at_stop():
    assert truncate_at_stop("    return 1\ndef g():\n    pass") == "    return 1"
    assert truncate_at_stop("    return 1\n") == "    return 1\n"


def test_generate_is_prompt_major_and_masks_padding(micro):
    model, tok = load_policy(micro, device="cpu")
    prompts = ["def f(x):\n", 'def add_3(x):\n    """Return x plus 3."""\n']
    s = generate(model, tok, prompts, n=3, max_new_tokens=6, seed=0, temperature=1.0, top_p=0.9)
    assert len(s) == 6 and s.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.row_prompts[3] == prompts[1]
    assert s.prompt_ids.shape[0] == s.response_ids.shape[0] == 6
    assert s.response_ids.shape[1] <= 6
    # left-padded prompts: the shorter prompt has its padding on the left
    assert s.prompt_mask[0, 0] == 0 and s.prompt_mask[0, -1] == 1
    # every position after the mask ends holds the pad token
    assert torch.all(s.response_ids[s.response_mask == 0] == tok.pad_token_id)
    again = generate(model, tok, prompts, n=3, max_new_tokens=6, seed=0, temperature=1.0, top_p=0.9)
    assert torch.equal(again.response_ids, s.response_ids)  # seeded


def test_generate_rejects_bad_input_before_work(micro):
    model, tok = load_policy(micro, device="cpu")
    with pytest.raises(ValueError, match="'prompts'"):
        generate(model, tok, [])
    with pytest.raises(ValueError, match="'n' parameter"):
        generate(model, tok, ["x"], n=0)
    with pytest.raises(ValueError, match="greedy"):
        generate(model, tok, ["x"], n=2, temperature=0.0)
    with pytest.raises(ValueError, match="'top_p'"):
        generate(model, tok, ["x"], top_p=0.0)
