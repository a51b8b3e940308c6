"""Spec invariants: the tables, transforms, validation and lossless serialisation."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import mnv3
from mnv3.spec import (
    LARGE,
    SMALL,
    Activation,
    BlockSpec,
    get_preset,
    make_divisible,
    reduce_tail,
    scale_width,
    spec_from_dict,
    spec_from_json,
    spec_from_yaml,
    spec_to_dict,
    spec_to_json,
    spec_to_yaml,
    with_output_stride,
)


def test_make_divisible_matches_tf_slim_rule() -> None:
    assert make_divisible(16 * 0.35) == 8
    assert make_divisible(40 * 0.35) == 16  # 14 -> 16 (nearest multiple of 8)
    assert make_divisible(24 * 0.35) == 8
    assert make_divisible(112 * 0.75) == 88  # 84 rounds up to 88
    assert make_divisible(10) == 16  # 8 < 0.9 * 10, so add a step


def test_tables_match_paper_row_counts_and_strides() -> None:
    assert len(LARGE.blocks) == 15 and len(SMALL.blocks) == 11
    assert LARGE.total_stride == 32 and SMALL.total_stride == 32
    # h-swish from the 80-channel stage in Large, from block 4 in Small (paper §5.2)
    assert [b.act for b in LARGE.blocks].index(Activation.HSWISH) == 6
    assert [b.act for b in SMALL.blocks].index(Activation.HSWISH) == 3


def test_official_expansion_rule_uses_rounded_input() -> None:
    """Large 0.75 block 9: input 80*0.75=60 -> 64, 64 * 184/80 = 147.2 -> 144 (TF-slim), torchvision: 184*0.75=138 -> 136."""
    paper = scale_width(LARGE, 0.75)
    tv = scale_width(LARGE.replace(conventions=get_preset("torchvision")), 0.75)
    assert paper.blocks[8].exp == 144
    assert tv.blocks[8].exp == 136


def test_head_scaling_conventions() -> None:
    assert scale_width(LARGE, 0.75).head.hidden == 1280  # paper / Keras: unscaled below 1
    assert scale_width(LARGE.replace(conventions=get_preset("torchvision")), 0.75).head.hidden == 960
    assert scale_width(SMALL, 1.25).head.hidden == 1280  # scaled above 1
    assert scale_width(LARGE.replace(conventions=get_preset("timm")), 1.25).head.hidden == 1280
    assert scale_width(LARGE.replace(conventions=get_preset("keras")), 0.35).stem.out == 16
    assert scale_width(LARGE.replace(conventions=get_preset("timm")), 0.5).stem.out == 16
    assert scale_width(LARGE.replace(conventions=get_preset("timm")), 0.75).stem.out == 16
    assert scale_width(LARGE, 0.35).stem.out == 8
    # Table 9's Large 1.25 row fits a 1280 head under the paper preset; other presets keep their own rule
    assert mnv3.build_spec("mobilenetv3_large_125").head.hidden == 1280
    assert mnv3.build_spec("mobilenetv3_large_125", preset="keras").head.hidden == 1600
    assert mnv3.build_spec("mobilenetv3_large_125", preset="torchvision").head.hidden == 1600
    assert mnv3.build_spec("mobilenetv3_large_125", preset="timm").head.hidden == 1280


def test_reduced_tail_halves_c4_to_c5_but_keeps_c4_expansion() -> None:
    det = reduce_tail(LARGE)
    assert [(b.exp, b.out) for b in det.blocks[12:]] == [(672, 80), (480, 80), (480, 80)]
    assert det.head.conv_out == 480
    seg = reduce_tail(LARGE, halve_first_expansion=True)
    assert seg.blocks[12].exp == 336  # TF DeepLab RF2 (paper §6.4; tensorflow/models research/deeplab)
    small = reduce_tail(SMALL)
    assert [(b.exp, b.out) for b in small.blocks[8:]] == [(288, 48), (288, 48), (288, 48)] and small.head.conv_out == 288


def test_output_stride_trades_stride_for_dilation() -> None:
    os16 = with_output_stride(LARGE, 16)
    assert [(b.stride, b.dilation) for b in os16.blocks[12:]] == [(1, 1), (1, 2), (1, 2)]  # TF-slim rate rule
    os8 = with_output_stride(LARGE, 8)
    assert [(b.stride, b.dilation) for b in os8.blocks[6:]] == [(1, 1)] + [(1, 2)] * 5 + [(1, 2), (1, 4), (1, 4)]
    model = mnv3.MobileNetV3(os8).eval()
    assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[-1] == 8
    with pytest.raises(ValueError, match="output_stride must be one of"):
        with_output_stride(LARGE, 12)
    with pytest.raises(ValueError, match="undilated"):
        with_output_stride(os16, 8)


@pytest.mark.parametrize("name", mnv3.list_models(detection=False))  # detectors: tests/test_detection_models.py
def test_round_trip_every_variant(name: str, tmp_path) -> None:
    spec = mnv3.build_spec(name)
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec
    assert spec_from_json(spec_to_json(spec)) == spec
    assert spec_from_yaml(spec_to_yaml(spec)) == spec
    path = mnv3.save_spec(spec, tmp_path / "spec.yaml")
    torch.manual_seed(0)
    a = mnv3.create_model(spec).eval()
    b = mnv3.create_model(path).eval()
    b.load_state_dict(a.state_dict())
    assert [tuple(t.shape) for t in a.state_dict().values()] == [tuple(t.shape) for t in b.state_dict().values()]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert str(a) == str(b)


def test_hand_edited_spec_round_trip(tmp_path) -> None:
    d = spec_to_dict(mnv3.build_spec("mobilenetv3_small_100"))
    d["name"] = "my_small"
    d["blocks"][3]["kernel"] = 7
    d["blocks"][4]["se"] = False
    d["blocks"].append({"kernel": 3, "exp": 192, "out": 64, "se": True, "act": "relu", "stride": 1})
    d["head"]["hidden"] = 512
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(d))
    model = mnv3.create_model(path, num_classes=7)
    spec = model.spec
    assert spec.blocks[3].kernel == 7 and not spec.blocks[4].se and spec.blocks[-1] == BlockSpec(3, 192, 64, True, Activation.RELU, 1)
    assert model.blocks[3].dw.conv.kernel_size == (7, 7)
    assert spec_from_json(spec_to_json(spec)) == spec
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["blocks"][0].update(out=-16), "block 1: out"),
        (lambda d: d["blocks"][1].update(stride=3), "block 2: stride must be 1 or 2, got 3"),
        (lambda d: d["blocks"][2].update(act="swish"), "unknown value 'swish'"),
        (lambda d: d["blocks"][2].update(kernel=4), "kernel must be odd"),
        (lambda d: d["head"].update(dropout=1.5), "head.dropout"),
        (lambda d: d["conventions"].update(padding="valid"), "conventions.padding"),
        (lambda d: d["blocks"][0].update(expansion=3), "unknown field"),
        (lambda d: d.update(format_version=99), "format_version"),
    ],
)
def test_invalid_spec_errors_name_the_problem(edit, message) -> None:
    d = spec_to_dict(mnv3.build_spec("mobilenetv3_large_100"))
    edit(d)
    with pytest.raises(ValueError, match=message):
        spec_from_dict(d)


def test_invalid_width_and_spec_objects() -> None:
    with pytest.raises(ValueError, match="width multiplier must be a positive number"):
        mnv3.create_model("mobilenetv3_large_100", width=-0.5)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        LARGE.replace(blocks=(dataclasses.replace(LARGE.blocks[0], stride=3),) + LARGE.blocks[1:])
    with pytest.raises(ValueError, match="unknown preset"):
        mnv3.create_model("mobilenetv3_large_100", preset="caffe")
    with pytest.raises(ValueError, match="unknown option"):
        mnv3.create_model("mobilenetv3_large_100", widht=0.5)
