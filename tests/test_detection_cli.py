"""`mnv3 eval`, `predict` and `export` on an SSDLite detector (paper §6.3): COCO numbers equal to evaluate() run directly,
boxes drawn and reported in the image's pixels, an ONNX file of the raw outputs that matches PyTorch; bad input is one line
and exit 2."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

import mnv3
from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.models.registry import resolve_spec
from mnv3.tasks.detection import COCO_STATS
from mnv3.utils.preprocessing import Preprocessing
from mnv3.weights.io import WeightsMeta, save_weights
from mnv3.weights.resolve import load_model

pytest.importorskip("pycocotools")
NAME = "ssdlite_mobilenetv3_small_100_reduced"
SIZE = 128
PP = Preprocessing(resize=SIZE, crop=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
TRAIN, TEST = 2, 4  # the Fashion scenes set the weights' recipe names


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _detector(num_classes: int = 11) -> nn.Module:
    """A random SSDLite with spread scores (He init, not the preset's N(0, 0.03)) whose boxes are its anchors (zero box codes),
    so some of them hit the scenes' items and the COCO numbers are not all zero (100 kept per class, not 100 in all)."""
    spec = resolve_spec(NAME, num_classes)
    assert spec.detection is not None
    post = dataclasses.replace(spec.detection.postprocess, max_detections=1000)
    torch.manual_seed(0)
    net = mnv3.create_model(dataclasses.replace(spec, detection=dataclasses.replace(spec.detection, postprocess=post))).eval()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    with torch.no_grad():
        for p in net.box_head:
            p.pred.weight.zero_()
            p.pred.bias.zero_()
    return net


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    from mnv3.data.detection import ensure_fashion_scenes

    root = tmp_path_factory.mktemp("det")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNV3_CACHE", str(root / "cache"))
        scenes = ensure_fashion_scenes(train=TRAIN, test=TEST, seed=0, progress=False)
        recipe = {"task": "detection", "data": "fashion-scenes", "train_subset": TRAIN, "val_subset": TEST}
        weights = save_weights(_detector(), root / "det.safetensors", WeightsMeta(PP, list(fm.CLASSES), recipe=recipe))
        torch.manual_seed(0)
        classifier = save_weights(mnv3.create_model("mobilenetv3_small_050", num_classes=10), root / "cls.safetensors")
        yield {"root": root, "scenes": scenes, "weights": weights, "classifier": classifier}


def _one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"mnv3 {argv[0]}: error: "), err
    return err[0]


def test_eval_prints_and_writes_the_coco_numbers_of_evaluate(setup: dict[str, Path], tmp_path: Path, capsys, monkeypatch):
    from mnv3.data.detection import CocoDetection, detection_collate, detection_eval_transform
    from mnv3.tasks import DetectionTask
    from mnv3.train.evaluate import evaluate

    monkeypatch.setenv("MNV3_CACHE", str(setup["root"] / "cache"))  # the weights' recipe names the cached 2/4 set
    assert main(["eval", str(setup["weights"]), "--batch-size", "3", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = " in out
    assert " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = " in out
    assert "per-class AP" in out and "Ankle boot" in out
    report = json.loads((tmp_path / "eval-test.json").read_text())
    assert (tmp_path / "ap_per_class-test.png").is_file()
    assert set(report["coco"]) == set(COCO_STATS) and set(report["per_class_ap"]) == set(fm.CLASSES)
    assert report["count"] == TEST and report["split"] == "test" and report["detections"] > 0
    assert report["coco"]["AR100"] > 0 and report["coco"]["mAP50"] > 0  # a comparison of real numbers, not of zeros

    net = load_model(str(setup["weights"]))
    test = setup["scenes"] / "test"
    ds = CocoDetection(test / "images", test / "instances.json", include_crowd=True, transforms=detection_eval_transform(SIZE, PP.mean, PP.std))
    loader = DataLoader(ds, batch_size=2, collate_fn=detection_collate)
    assert net.spec.detection is not None
    ev = evaluate(net, loader, DetectionTask.from_head(ds.classes, net.spec.detection), torch.device("cpu"))
    assert report["coco"] == pytest.approx(ev.to_dict()["coco"], abs=1e-9)
    assert report["per_class_ap"] == pytest.approx(ev.to_dict()["per_class_ap"], abs=1e-9)
    for k in ("mAP", "mAP50"):
        assert f"= {ev.stats[k]:0.3f}" in out


def test_eval_on_a_coco_folder_with_subset(setup: dict[str, Path], tmp_path: Path, capsys):
    argv = ["eval", str(setup["weights"]), "--data", str(setup["scenes"]), "--split", "test", "--subset", "2", "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    assert "(2 images," in capsys.readouterr().out
    assert json.loads((tmp_path / "eval-test.json").read_text())["count"] == 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--data", "/nonexistent/coco"], "neither 'fashion-scenes' nor a folder of COCO-format data"),
        (["--split", "val"], "has no val split: expected val/instances.json with val/images/"),
    ],
)
def test_eval_bad_detection_data(setup: dict[str, Path], tmp_path: Path, capsys, extra: list[str], expected: str):
    if extra[0] == "--split":
        extra = ["--data", str(setup["scenes"]), *extra]
    line = _one_error_line(["eval", str(setup["weights"]), *extra, "--out-dir", str(tmp_path / "r")], capsys)
    assert expected in line
    assert not (tmp_path / "r").exists()


def test_classifier_with_detection_only_options(setup: dict[str, Path], tmp_path: Path, capsys):
    line = _one_error_line(["eval", str(setup["classifier"]), "--data", "fashion-scenes", "--out-dir", str(tmp_path)], capsys)
    assert "detection set" in line and "classifier" in line
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 30)).save(img)
    line = _one_error_line(["predict", "--weights", str(setup["classifier"]), str(img), "--threshold", "0.5"], capsys)
    assert "--threshold: only for detectors" in line


def test_eval_matches_categories_by_name(tmp_path: Path, setup: dict[str, Path], capsys):
    """Weights whose categories hold the dataset's and more, background first, in another order (torchvision's 91 on
    COCO 2017's 80): scored by name; categories that share no names are one error line."""
    names = ["__background__", "Hat", *reversed(fm.CLASSES)]
    w = save_weights(_detector(12), tmp_path / "coco-like.safetensors", WeightsMeta(PP, names))
    assert main(["eval", str(w), "--data", str(setup["scenes"]), "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval-test.json").read_text())
    assert list(report["per_class_ap"]) == list(fm.CLASSES) and report["count"] == TEST and report["detections"] > 0
    capsys.readouterr()
    other = save_weights(_detector(), tmp_path / "other.safetensors", WeightsMeta(PP, [f"thing {i}" for i in range(10)]))
    line = _one_error_line(["eval", str(other), "--data", str(setup["scenes"]), "--out-dir", str(tmp_path / "r")], capsys)
    assert "the model detects 10 categories (thing 0" in line and "not among them" in line


def _image(setup: dict[str, Path], tmp_path: Path) -> Path:
    """A non-square crop of a test scene (boxes must come back in its own pixels, not the network's 128x128)."""
    scene = sorted((setup["scenes"] / "test" / "images").iterdir())[0]
    path = tmp_path / "scene.png"
    Image.open(scene).convert("RGB").crop((0, 0, 300, 200)).save(path)
    return path


def test_predict_draws_and_reports_boxes_in_image_pixels(setup: dict[str, Path], tmp_path: Path, capsys):
    from mnv3.data.detection import detection_eval_transform

    img = _image(setup, tmp_path)
    out = tmp_path / "drawn.png"
    argv = ["predict", "--weights", str(setup["weights"]), str(img), "-o", str(out), "--threshold", "0", "--json"]
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out)
    with Image.open(out) as drawn:
        assert drawn.size == (300, 200)
    assert rec["size"] == [300, 200] and rec["detections"]
    for d in rec["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 300 and 0 <= y1 <= y2 <= 200
        assert d["category"] in fm.CLASSES and d["score"] >= 0 and d["category"] == fm.CLASSES[d["label"] - 1]
    # the same detections as the network's own postprocess, scaled from 128x128 to 300x200
    net = load_model(str(setup["weights"])).eval()
    from torchvision import tv_tensors
    from torchvision.transforms.functional import pil_to_tensor

    x = detection_eval_transform(SIZE, PP.mean, PP.std)(tv_tensors.Image(pil_to_tensor(Image.open(img).convert("RGB"))))
    with torch.no_grad():
        (det,) = net.postprocess(net(x[None]), [(SIZE, SIZE)])
    keep = det["scores"] >= 0
    want = det["boxes"][keep] * torch.tensor([300 / SIZE, 200 / SIZE] * 2)
    assert len(want) == len(rec["detections"])
    assert torch.tensor([d["box"] for d in rec["detections"]]) == pytest.approx(want.clamp(min=0), abs=0.01)


def test_predict_detector_text_and_bad_output(setup: dict[str, Path], tmp_path: Path, capsys):
    img = _image(setup, tmp_path)
    assert main(["predict", "--weights", str(setup["weights"]), str(img)]) == 0  # default threshold 0.3: maybe no box
    assert "detection(s)" in capsys.readouterr().out
    line = _one_error_line(["predict", "--weights", str(setup["weights"]), str(img), str(img), "-o", str(tmp_path / "o.png")], capsys)
    assert "use --out-dir" in line


def test_export_onnx_raw_outputs_match_pytorch_and_eval_scores_the_file_alike(setup: dict[str, Path], tmp_path: Path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "det.onnx"
    assert main(["export", "--weights", str(setup["weights"]), "--format", "onnx", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resolution"] == SIZE and report["parity"]["max_abs"] <= 1e-4 and report["graph"]["problems"] == []
    anchors = np.load(tmp_path / "det.anchors.npy")
    net = load_model(str(setup["weights"])).eval()
    assert np.array_equal(anchors, net.anchors((SIZE, SIZE)).numpy())
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["bbox_regression", "cls_logits"]
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["mnv3.categories"]) == list(fm.CLASSES) and "det.anchors.npy" in meta["mnv3.anchors"]
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    reg, logits = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        raw = net(x)
    assert np.abs(reg - raw["bbox_regression"].numpy()).max() < 1e-4
    assert np.abs(logits - raw["cls_logits"].numpy()).max() < 1e-4
    assert raw["cls_logits"].abs().max() > 1  # not a trivially near-zero network (its box codes are zero by design)

    # `mnv3 eval --artifact`: the file scored in ONNX Runtime with the weights' data, metric and NMS, as PyTorch scores them
    capsys.readouterr()
    assert main(["eval", str(setup["weights"]), "--out-dir", str(tmp_path / "torch")]) == 0
    assert main(["eval", str(setup["weights"]), "--artifact", str(out), "--out-dir", str(tmp_path / "ort")]) == 0
    assert "eval-test-det.onnx.json" in capsys.readouterr().out
    ref = json.loads((tmp_path / "torch" / "eval-test.json").read_text())
    got = json.loads((tmp_path / "ort" / "eval-test-det.onnx.json").read_text())
    assert got["artifact"] == str(out) and got["count"] == ref["count"] == TEST and got["detections"] == ref["detections"]
    assert ref["coco"]["AR100"] > 0  # some boxes hit items, so equal numbers mean equal detections
    for k, v in ref["coco"].items():
        assert got["coco"][k] == pytest.approx(v, abs=1e-4), k


def test_export_detector_refuses_fashion_mnist_calibration_in_one_line(setup: dict[str, Path], tmp_path: Path, capsys):
    argv = ["export", "--weights", str(setup["weights"]), "--format", "onnx", "-o", str(tmp_path / "d.onnx"), "--int8", "--calibration", "fashion-mnist"]
    line = _one_error_line(argv, capsys)
    assert "fashion-mnist" in line and "--calibration fashion-scenes" in line
    assert list(tmp_path.iterdir()) == []


def test_export_onnx_with_nms_gives_postprocess_detections_and_eval_scores_it_alike(
    setup: dict[str, Path], tmp_path: Path, capsys, monkeypatch
):
    """`mnv3 export --nms`: the graph ends at boxes, scores, labels for one image, the detections PyTorch's postprocess gives."""
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setenv("MNV3_CACHE", str(setup["root"] / "cache"))  # the weights' recipe names the cached 2/4 set
    from mnv3.deploy.detection_nms import match

    out = tmp_path / "det.onnx"
    assert main(["export", "--weights", str(setup["weights"]), "--format", "onnx", "-o", str(out), "--nms"]) == 0
    printed = capsys.readouterr().out
    assert "random raw outputs: 100.0 % of detections the same" in printed and "joined file vs its two parts" in printed
    assert not (tmp_path / "det.anchors.npy").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["det.onnx"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores", "labels"]
    assert sess.get_inputs()[0].shape == [1, 3, SIZE, SIZE]
    assert sess.get_modelmeta().custom_metadata_map["mnv3.decoding"].startswith("in the graph")
    net = load_model(str(setup["weights"])).eval()
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    same = total = 0
    for i in range(3):
        boxes, scores, labels = (torch.from_numpy(o) for o in sess.run(None, {sess.get_inputs()[0].name: x[i : i + 1].numpy()}))
        with torch.no_grad():
            (ref,) = net.postprocess(net(x[i : i + 1]), [(SIZE, SIZE)])
        assert len(labels) == len(ref["labels"]) > 100  # max_detections 1000 here: many classes' boxes
        ok, _ = match({"boxes": boxes, "scores": scores, "labels": labels}, ref, score_tol=1e-4)
        same, total = same + int(ok.sum()), total + len(ok)
    assert same >= 0.99 * total  # the network's float noise (1e-5) may flip a near tie, nothing more

    # `mnv3 eval --artifact` takes the graph's detections as they are and scores them like PyTorch's
    assert main(["eval", str(setup["weights"]), "--out-dir", str(tmp_path / "torch")]) == 0
    assert main(["eval", str(setup["weights"]), "--artifact", str(out), "--out-dir", str(tmp_path / "ort")]) == 0
    ref_report = json.loads((tmp_path / "torch" / "eval-test.json").read_text())
    got = json.loads((tmp_path / "ort" / "eval-test-det.onnx.json").read_text())
    assert got["count"] == ref_report["count"] == TEST and ref_report["coco"]["AR100"] > 0
    for k, v in ref_report["coco"].items():
        assert got["coco"][k] == pytest.approx(v, abs=2e-3), k


def test_nms_outside_onnx_or_on_a_classifier_is_one_line(setup: dict[str, Path], tmp_path: Path, capsys):
    line = _one_error_line(["export", "--weights", str(setup["weights"]), "--format", "litert", "-o", str(tmp_path / "d.tflite"), "--nms"], capsys)
    assert "--nms" in line and "--format onnx" in line
    line = _one_error_line(["export", "--weights", str(setup["classifier"]), "--format", "onnx", "-o", str(tmp_path / "c.onnx"), "--nms"], capsys)
    assert "--nms is for detectors" in line
    assert list(tmp_path.iterdir()) == []
