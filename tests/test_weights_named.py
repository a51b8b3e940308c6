"""Named weights: every entry agrees with what torchvision, timm and Keras themselves publish."""

from __future__ import annotations

import math
import os

import pytest
import torchvision

import mnv3
from mnv3.analysis import profile_model
from mnv3.models import MobileNetV3, build_network, build_spec, get_variant, list_models
from mnv3.weights import WEIGHTS, Checksum, HashAlgorithm, Library, get_weights, list_weights
from mnv3.weights.convert import expected_shapes

BY_LIBRARY = {lib: [e for e in WEIGHTS.values() if e.library is lib] for lib in Library}
CLASSIFIERS = [e for e in BY_LIBRARY[Library.TORCHVISION] if e.num_classes == 1000]  # the detector / segmenter: tests/test_weights_named_dense.py


def test_every_entry_is_complete() -> None:
    assert len(WEIGHTS) == 21
    for e in WEIGHTS.values():
        assert e.name.startswith(e.model + ".")
        assert e.url.startswith("https://") and e.file_name in e.url
        assert e.metrics and all(m.source for m in e.metrics)
        assert e.license and e.params > 0 and e.madds > 0
        assert len(e.categories) == e.num_classes and e.num_classes in (1000, 91, 21)
        assert e.preset in mnv3.weights.convert.LIBRARY_PRESETS[e.library]


@pytest.mark.parametrize("entry", CLASSIFIERS, ids=lambda e: e.name)
def test_torchvision_entries_match_torchvision(entry) -> None:
    enum_name, member = entry.source_name.split(".")
    ref = getattr(torchvision.models, enum_name)[member]
    assert entry.url == ref.url
    assert entry.checksum.algorithm is HashAlgorithm.SHA256
    assert entry.url.endswith(f"-{entry.checksum.value}.pth")  # what torch.hub's check_hash compares
    acc = ref.meta["_metrics"]["ImageNet-1K"]
    assert {m.name: m.value for m in entry.metrics} == {"top1": acc["acc@1"], "top5": acc["acc@5"]}
    assert entry.params == ref.meta["num_params"]
    assert entry.categories == list(ref.meta["categories"])
    t = ref.transforms()
    p = entry.preprocessing
    assert (p.resize, p.crop, p.interpolation) == (t.resize_size[0], t.crop_size[0], t.interpolation.value)
    assert (list(p.mean), list(p.std)) == (list(t.mean), list(t.std))


@pytest.mark.parametrize("entry", BY_LIBRARY[Library.TIMM], ids=lambda e: e.name)
def test_timm_entries_match_timm(entry) -> None:
    timm = pytest.importorskip("timm")
    cfg = timm.models.get_pretrained_cfg(entry.source_name)
    assert entry.url == cfg.url
    assert entry.checksum.algorithm is HashAlgorithm.SHA256 and entry.url.endswith(f"-{entry.checksum.value}.pth")
    assert cfg.license == "apache-2.0" and "Apache-2.0" in entry.license
    p = entry.preprocessing
    assert p.interpolation == cfg.interpolation
    assert (p.mean, p.std) == (tuple(cfg.mean), tuple(cfg.std))
    assert p.crop == cfg.input_size[-1] and p.resize == math.floor(p.crop / cfg.crop_pct)
    arch = cfg.architecture
    assert mnv3.weights.load.SOURCE_NAMES[Library.TIMM][arch] == (entry.model, entry.preset)
    assert entry.params == sum(q.numel() for q in timm.create_model(arch).parameters())


@pytest.mark.parametrize("entry", BY_LIBRARY[Library.KERAS], ids=lambda e: e.name)
def test_keras_entries_match_keras(entry) -> None:
    os.environ["KERAS_BACKEND"] = "torch"
    pytest.importorskip("keras")
    from keras.src.applications import mobilenet_v3 as kmv3

    key = entry.file_name.removeprefix("weights_mobilenet_v3_").removesuffix(".h5")
    assert entry.url == kmv3.BASE_WEIGHT_PATH + entry.file_name
    assert entry.checksum.algorithm is HashAlgorithm.MD5  # keras get_file: a 32-hex hash is md5
    assert entry.checksum.value == kmv3.WEIGHTS_HASHES[key][0]
    assert entry.preprocessing == mnv3.weights.INCEPTION


@pytest.mark.parametrize("key", sorted({(e.model, e.preset) for e in WEIGHTS.values()}), ids=lambda k: f"{k[0]}-{k[1].value}")
def test_params_and_madds_are_the_profilers(key) -> None:
    model, preset = key
    profiles = {}  # classifiers at 224, the detector at 320, the segmenter at 520 (their preprocessing's size)
    for e in WEIGHTS.values():
        if (e.model, e.preset) == key:
            at = (e.num_classes, e.preprocessing.crop)
            if at not in profiles:
                profiles[at] = profile_model(mnv3.create_model(model, preset=preset, num_classes=at[0]), at[1])
            prof = profiles[at]
            assert (e.params, e.madds) == (prof.params, prof.madds), e.name


def test_expected_shapes_mirror_the_model() -> None:
    """The converters' shape check (no model built) agrees with the network (classifier, SSDLite or LR-ASPP) of every registered name."""
    presets = ("paper", "torchvision", "timm", "keras")
    for i, name in enumerate(list_models()):
        variant = get_variant(name)
        usable = presets[:2] if variant.detection or variant.segmentation else presets  # SSDLite, LR-ASPP: paper and torchvision presets only
        spec = build_spec(name, preset=usable[i % len(usable)])  # every preset, over the names
        actual = {k: tuple(v.shape) for k, v in build_network(spec).state_dict().items()}
        assert list(expected_shapes(spec).items()) == list(actual.items()), name
    no_head = build_spec("mobilenetv3_small_100", num_classes=0, in_chans=1)
    assert expected_shapes(no_head) == {k: tuple(v.shape) for k, v in MobileNetV3(no_head).state_dict().items()}


def test_lookup_and_errors() -> None:
    assert list_weights("mobilenetv3_small_075") == ["mobilenetv3_small_075.keras", "mobilenetv3_small_075.tf", "mobilenetv3_small_075.timm_lamb"]
    assert get_weights("mobilenetv3_large_100.torchvision_v2").preprocessing.resize == 232
    with pytest.raises(ValueError, match="Did you mean: mobilenetv3_large_100.torchvision_v2"):
        get_weights("mobilenetv3_large_100.torchvision_v3")
    with pytest.raises(ValueError, match="lower-case hex"):
        Checksum(HashAlgorithm.SHA256, "not-hex", "test")
    assert Checksum(HashAlgorithm.SHA256, "ab12", "t").matches("ab12ff") and not Checksum(HashAlgorithm.SHA256, "ab12", "t").matches("ab13ff")


def test_entry_needs_its_preset() -> None:
    model = mnv3.create_model("mobilenetv3_large_100")  # paper preset
    with pytest.raises(ValueError, match=r"create_pretrained\('mobilenetv3_large_100.torchvision_v2'\)"):
        mnv3.weights.load_weights_into(model, "mobilenetv3_large_100.torchvision_v2")
