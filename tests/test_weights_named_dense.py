"""Named torchvision SSDLite / LR-ASPP weights: the entries agree with torchvision, and converted / cached files carry their metadata."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights, ssdlite320_mobilenet_v3_large
from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

import mnv3
from mnv3.cli.main import main
from mnv3.cli.predict_cmd import default_palette
from mnv3.models.testing import randomize_
from mnv3.weights import Checksum, HashAlgorithm, WeightsMeta, get_weights, read_weights, resolve
from mnv3.weights.categories import COCO_CATEGORIES, VOC_CATEGORIES, CategorySet
from mnv3.weights.io import META_KEY

DET, SEG = "ssdlite_mobilenetv3_large_100_reduced.torchvision_coco", "lraspp_mobilenetv3_large_100_full.torchvision_coco_voc"
REFS = {DET: SSDLite320_MobileNet_V3_Large_Weights.COCO_V1, SEG: LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1}


@pytest.mark.parametrize("name", [DET, SEG])
def test_entries_match_torchvision(name) -> None:
    e, ref = get_weights(name), REFS[name]
    assert e.source_name == f"{type(ref).__name__}.{ref.name}" and e.url == ref.url
    assert e.checksum.algorithm is HashAlgorithm.SHA256 and e.url.endswith(f"-{e.checksum.value}.pth")
    assert e.params == ref.meta["num_params"] and e.recipe == ref.meta["recipe"]
    assert e.categories == list(ref.meta["categories"]) and len(e.categories) == e.num_classes
    (dataset, published), = ref.meta["_metrics"].items()
    assert {m.name: m.value for m in e.metrics} == published and all(m.source and m.dataset for m in e.metrics)
    assert round(e.madds / 1e9, 3) == ref.meta["_ops"]  # torchvision's GFLOPS are multiply-adds, at 320 / 520
    assert e.preset.value == "torchvision" and e.model == mnv3.create_model(e.model, preset="torchvision").spec.origin.model


def test_preprocessing_is_torchvisions() -> None:
    ssd = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91).transform
    p = get_weights(DET).preprocessing
    assert ssd.fixed_size == (p.crop, p.resize) == (320, 320) and not p.keep_aspect
    assert (list(p.mean), list(p.std)) == (ssd.image_mean, ssd.image_std)
    t = REFS[SEG].transforms()  # SemanticSegmentation(resize_size=520): shorter side 520, no crop
    p = get_weights(SEG).preprocessing
    assert (t.resize_size, p.keep_aspect, p.interpolation) == ([p.resize], True, t.interpolation.value)
    assert (list(p.mean), list(p.std)) == (t.mean, t.std)


def test_copied_lists_and_palette() -> None:
    assert list(COCO_CATEGORIES) == list(REFS[DET].meta["categories"]) and len(COCO_CATEGORIES) == 91
    assert list(VOC_CATEGORIES) == list(REFS[SEG].meta["categories"]) and len(VOC_CATEGORIES) == 21
    assert get_weights(SEG).palette == [list(c) for c in default_palette(21)]  # VOC's colour map
    assert get_weights(DET).palette == [] and CategorySet.NONE.names() == []
    with pytest.raises(ValueError, match="21 categories"):
        dataclasses.replace(get_weights(SEG), num_classes=19)


@pytest.fixture(scope="module")
def tv_files(tmp_path_factory):
    """Randomised torchvision SSDLite (91 classes) and LR-ASPP (21 classes) state dicts, fixed seeds."""
    root = tmp_path_factory.mktemp("tv")
    torch.manual_seed(0)
    det = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    seg = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    files = {}
    for name, net, seed in ((DET, det, 3), (SEG, seg, 1)):
        with torch.no_grad():
            randomize_(net, seed=seed)
        files[name] = root / get_weights(name).file_name  # the published file's name, as the cache holds it
        torch.save(net.state_dict(), files[name])
    return files


def _meta(path) -> WeightsMeta:
    return WeightsMeta.from_json(read_weights(path)[1][META_KEY])


@pytest.mark.parametrize("name", [DET, SEG])
def test_convert_meta_from_and_the_cached_entry(name, tv_files, tmp_path, monkeypatch, capsys) -> None:
    entry, pth = get_weights(name), tv_files[name]
    out = tmp_path / "x.safetensors"
    assert main(["convert", "--from", "torchvision", str(pth), "--meta-from", name, "-o", str(out)]) == 0
    assert entry.model in capsys.readouterr().out
    meta = _meta(out)
    assert meta.categories == entry.categories and meta.preprocessing == entry.preprocessing
    assert meta.metrics == {m.name: {"value": m.value, "dataset": m.dataset, "source": m.source} for m in entry.metrics}
    assert meta.recipe == {"url": entry.recipe} and meta.palette == entry.palette and entry.url in meta.source
    model, again = mnv3.weights.model_from_file(out)
    assert again == meta and model.spec.num_classes == entry.num_classes

    # the named entry's cached file (a file this test made: its checksum is its own digest's prefix) resolves to the same
    cache = tmp_path / "cache"
    (cache / "torchvision").mkdir(parents=True)
    (cache / "torchvision" / entry.file_name).write_bytes(pth.read_bytes())
    monkeypatch.setenv("MNV3_CACHE_DIR", str(cache))
    digest = hashlib.sha256(pth.read_bytes()).hexdigest()[:8]
    res = resolve(dataclasses.replace(entry, checksum=Checksum(HashAlgorithm.SHA256, digest, "test")), progress=False)
    assert res.meta == meta and res.spec == model.spec
    state = model.state_dict()
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in res.tensors.items())

    other = SEG if name == DET else DET
    capsys.readouterr()
    assert main(["convert", "--from", "torchvision", str(pth), "--meta-from", other, "-o", str(tmp_path / "y.safetensors")]) != 0
    assert f"--meta-from {other} describes" in capsys.readouterr().err and not (tmp_path / "y.safetensors").exists()


def test_default_conversion_names_the_classes(tv_files, tmp_path, capsys) -> None:
    """Without --meta-from a 91-class detector gets COCO's names, a 21-class segmenter VOC's (with its colours and transform)."""
    for name in (DET, SEG):
        out = tmp_path / "plain.safetensors"
        assert main(["convert", "--from", "torchvision", str(tv_files[name]), "-o", str(out)]) == 0
        meta, entry = _meta(out), get_weights(name)
        assert (meta.categories, meta.preprocessing, meta.palette) == (entry.categories, entry.preprocessing, entry.palette)
    capsys.readouterr()


def _image(path, h, w, seed) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_predict_and_eval_use_the_categories(tv_files, tmp_path, capsys) -> None:
    files = {}
    for name in (DET, SEG):
        files[name] = tmp_path / f"{name.split('.')[0]}.safetensors"
        assert main(["convert", "--from", "torchvision", str(tv_files[name]), "--meta-from", name, "-o", str(files[name])]) == 0
    _image(tmp_path / "a.png", 30, 40, 0)
    capsys.readouterr()

    assert main(["predict", "--weights", str(files[DET]), str(tmp_path / "a.png"), "--threshold", "0", "--json"]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["detections"]
    assert found and all(d["category"] == COCO_CATEGORIES[d["label"]] for d in found)

    assert main(["predict", "--weights", str(files[SEG]), str(tmp_path / "a.png"), "--json"]) == 0
    fractions = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fractions"]
    assert [f["label"] for f in fractions] == list(VOC_CATEGORIES) and abs(sum(f["fraction"] for f in fractions) - 1) < 1e-6

    # eval: the detector's 91 names match a dataset's subset by name (COCO's 80 of 91)
    from mnv3.train.eval_job import EvalData, _detection_task, _RelabelledDetection

    net = mnv3.weights.load_model(files[DET])
    names = [c for c in COCO_CATEGORIES[1:] if c != "N/A"]
    task = _detection_task(net.spec, net.weights_meta, EvalData(None, names, "coco", "val"))  # type: ignore[arg-type]
    assert isinstance(task, _RelabelledDetection) and task.model_to_data[1].item() == 1 and task.model_to_data[12].item() == 0

    # eval: the segmenter on images of two shapes, each resized to a shorter side of 520 (no crop), one at a time
    data = tmp_path / "voc"
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (data / split / sub).mkdir(parents=True)
        for i, (h, w) in enumerate([(24, 32), (32, 20)]):
            _image(data / split / "images" / f"{i}.png", h, w, i)
            Image.fromarray((np.arange(h * w).reshape(h, w) % 21).astype(np.uint8)).save(data / split / "masks" / f"{i}.png")
    (data / "classes.txt").write_text("\n".join(VOC_CATEGORIES) + "\n")
    assert main(["eval", str(files[SEG]), "--data", str(data), "--split", "val", "--out-dir", str(tmp_path / "ev")]) == 0
    assert "mIoU" in capsys.readouterr().out and (tmp_path / "ev" / "eval-val.json").is_file()
