"""Detection data: fashion scenes (deterministic, valid COCO, crash-consistent), COCO and VOC readers, v2 box transforms."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

pytest.importorskip("pycocotools")
pytest.importorskip("skimage")

from mnv3.data.detection import scenes  # noqa: E402
from mnv3.data.detection.coco import CocoDetection  # noqa: E402
from mnv3.data.detection.common import detection_collate  # noqa: E402
from mnv3.data.detection.scenes import MANIFEST, ensure_fashion_scenes, generate_fashion_scenes, read_manifest  # noqa: E402
from mnv3.data.detection.transforms import detection_eval_transform, detection_train_transform, per_box_tensors  # noqa: E402
from mnv3.data.detection.voc import VOCDetection  # noqa: E402
from mnv3.data.fashion_mnist import load_split  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _need_fashion_mnist() -> None:
    try:
        load_split("test")
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"Fashion-MNIST is not installed ({e})")


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_fashion_mnist()
    return generate_fashion_scenes(tmp_path_factory.mktemp("fs") / "scenes", train=6, test=4, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- fashion scenes


def test_same_seed_same_bytes(scenes_dir: Path, tmp_path: Path):
    again = generate_fashion_scenes(tmp_path / "again", train=6, test=4, seed=3)
    a, b = _files(scenes_dir), _files(again)
    assert sorted(a) == sorted(b) and len(a) == 1 + (1 + 2 * 6) + (1 + 2 * 4)  # manifest; per split instances.json, images, masks
    assert a == b
    other = generate_fashion_scenes(tmp_path / "other", train=6, test=0, seed=4)
    assert (other / "train/images/000000.jpg").read_bytes() != a["train/images/000000.jpg"]


def test_scenes_are_valid_coco(scenes_dir: Path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    manifest = read_manifest(scenes_dir)
    assert manifest is not None and manifest["counts"] == {"train": 6, "test": 4} and manifest["arguments"]["seed"] == 3
    for split, n in (("train", 6), ("test", 4)):
        coco = COCO(str(scenes_dir / split / "instances.json"))
        assert sorted(coco.getCatIds()) == list(range(1, 11))
        assert len(coco.getImgIds()) == n
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            assert (info["width"], info["height"]) == (320, 320)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 8
            semantic = np.asarray(Image.open(scenes_dir / split / "masks" / info["file_name"].replace(".jpg", ".png")))
            assert semantic.shape == (320, 320) and set(np.unique(semantic)) <= set(range(11)) | {255}
            for a in anns:
                x, y, w, h = a["bbox"]
                assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 320 and w > 0 and h > 0
                m = coco.annToMask(a)
                ys, xs = np.nonzero(m)
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)  # tight box of the mask
                assert a["area"] == m.sum() == mask_utils.area(a["segmentation"]) and a["area"] <= w * h
                inner = m.astype(bool) & (semantic != 255)
                assert inner.any() and (semantic[inner] == a["category_id"]).all()  # semantic mask agrees with the instance


def test_scene_items_vary(scenes_dir: Path):
    data = json.loads((scenes_dir / "train/instances.json").read_text())
    sides = [max(a["bbox"][2], a["bbox"][3]) for a in data["annotations"]]
    assert min(sides) >= 10 and max(sides) <= 160
    assert len({a["category_id"] for a in data["annotations"]}) >= 3


def test_rerun_is_noop_other_arguments_error(scenes_dir: Path):
    before = {p: p.stat().st_mtime_ns for p in scenes_dir.rglob("*")}
    assert generate_fashion_scenes(scenes_dir, train=6, test=4, seed=3) == scenes_dir
    assert {p: p.stat().st_mtime_ns for p in scenes_dir.rglob("*")} == before
    with pytest.raises(ValueError, match=r"other arguments: seed 3 \(asked 4\).*--force"):
        generate_fashion_scenes(scenes_dir, train=6, test=4, seed=4)


def test_force_replaces_and_foreign_folder_refused(tmp_path: Path):
    _need_fashion_mnist()
    out = tmp_path / "fs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a complete fashion-scenes dataset"):
        generate_fashion_scenes(out, train=2, test=0)
    assert (out / "notes.txt").read_text() == "mine"
    generate_fashion_scenes(out, train=2, test=0, force=True)
    assert not (out / "notes.txt").exists() and read_manifest(out)["counts"]["train"] == 2
    generate_fashion_scenes(out, train=3, test=0, force=True)
    assert read_manifest(out)["counts"]["train"] == 3 and len(list((out / "train/images").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["fs"]  # no partial or old folder left
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a complete fashion-scenes dataset"):
        generate_fashion_scenes(tmp_path / "file", train=1, test=0)
    generate_fashion_scenes(tmp_path / "file", train=1, test=0, force=True)
    assert read_manifest(tmp_path / "file") is not None and not list(tmp_path.glob(".file.old-*"))


def test_killed_generation_leaves_nothing_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _need_fashion_mnist()
    out = tmp_path / "fs"
    real = scenes.make_scene
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # a kill in the middle of the train split
        return real(*a, **k)

    monkeypatch.setattr(scenes, "make_scene", dying)
    with pytest.raises(KeyboardInterrupt):
        generate_fashion_scenes(out, train=5, test=2, seed=1)
    assert not out.exists() and read_manifest(out) is None
    assert [p for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    # a SIGKILLed run leaves its partial folder: the next run removes it (its process is gone) and completes
    stale = tmp_path / ".fs.partial-999999999"
    (stale / "train/images").mkdir(parents=True)
    (tmp_path / ".fs.old-999999999").mkdir()  # killed between the two renames of a --force replacement
    monkeypatch.setattr(scenes, "make_scene", real)
    generate_fashion_scenes(out, train=5, test=2, seed=1)
    assert not stale.exists() and not (tmp_path / ".fs.old-999999999").exists()
    assert read_manifest(out)["counts"] == {"train": 5, "test": 2}
    fresh = generate_fashion_scenes(tmp_path / "fresh", train=5, test=2, seed=1)
    assert _files(out) == _files(fresh)


def test_manifest_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _need_fashion_mnist()
    seen: list[str] = []
    real = scenes.atomic_write_text

    def spy(path, text):
        tmp = Path(path).parent
        seen.append(Path(path).name)
        assert (tmp / "train/instances.json").is_file() and (tmp / "test/instances.json").is_file()
        assert not (tmp_path / "fs").exists()  # nothing at the final name until the rename
        real(path, text)

    monkeypatch.setattr(scenes, "atomic_write_text", spy)
    generate_fashion_scenes(tmp_path / "fs", train=1, test=1)
    assert seen == [MANIFEST] and read_manifest(tmp_path / "fs") is not None


def test_ensure_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _need_fashion_mnist()
    monkeypatch.setenv("MNV3_CACHE", str(tmp_path / "cache"))
    out = ensure_fashion_scenes(train=2, test=1, seed=5, progress=False)
    assert out == tmp_path / "cache" / "fashion-scenes-5-2-1" and read_manifest(out) is not None
    mtime = (out / MANIFEST).stat().st_mtime_ns
    assert ensure_fashion_scenes(train=2, test=1, seed=5, progress=False) == out
    assert (out / MANIFEST).stat().st_mtime_ns == mtime
    monkeypatch.delenv("MNV3_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert scenes.fashion_scenes_dir(2, 1, 5) == tmp_path / "xdg" / "mnv3" / "fashion-scenes-5-2-1"


def test_backgrounds_folder(tmp_path: Path):
    _need_fashion_mnist()
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 260, 3), dtype=np.uint8)).save(photos / "a.jpg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    out = generate_fashion_scenes(tmp_path / "fs", train=2, test=0, backgrounds=photos, image_format="png")
    assert read_manifest(out)["arguments"]["backgrounds"] == str(photos.resolve())
    assert sorted(p.name for p in (out / "train/images").iterdir()) == ["000000.png", "000001.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable image under the backgrounds folder"):
        generate_fashion_scenes(tmp_path / "fs2", train=1, test=0, backgrounds=tmp_path / "empty")


def test_cli_fashion_scenes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _need_fashion_mnist()
    from mnv3.cli.main import main

    out = tmp_path / "fs"
    assert main(["data", "fashion-scenes", "-o", str(out), "--train", "2", "--test", "1", "--seed", "7"]) == 0
    assert read_manifest(out)["arguments"]["seed"] == 7
    assert main(["data", "fashion-scenes", "-o", str(out), "--train", "2", "--test", "1", "--seed", "7"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert main(["data", "fashion-scenes", "-o", str(out), "--train", "3", "--test", "1", "--seed", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnv3 data: error:") and "--force" in err and "\n" not in err


# ---------------------------------------------------------------- COCO reader


def test_coco_reader_on_scenes(scenes_dir: Path):
    ds = CocoDetection(scenes_dir / "train/images", scenes_dir / "train/instances.json", masks=True)
    assert len(ds) == 6 and ds.classes[0] == "T-shirt/top" and ds.skipped == []
    data = json.loads((scenes_dir / "train/instances.json").read_text())
    img, t = ds[0]
    assert isinstance(img, tv_tensors.Image) and img.shape == (3, 320, 320) and img.dtype == torch.uint8
    assert isinstance(t["boxes"], tv_tensors.BoundingBoxes) and t["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    anns = [a for a in data["annotations"] if a["image_id"] == t["image_id"]]
    x, y, w, h = anns[0]["bbox"]
    assert t["boxes"][0].tolist() == [x, y, x + w, y + h]
    assert t["labels"].dtype == torch.int64 and t["labels"].tolist() == [a["category_id"] for a in anns]
    assert t["masks"].shape == (len(anns), 320, 320) and t["masks"].sum((1, 2)).tolist() == [a["area"] for a in anns]
    images, targets = detection_collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 320, 320) and len(targets) == 2


def _coco(
    tmp_path: Path, annotations: list, images: list | None = None, categories: list | None = None, name: str = "ann.json"
) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    for i in (1, 2):
        if not (tmp_path / "img" / f"{i}.png").exists():
            Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    images = images if images is not None else [{"id": i, "file_name": f"{i}.png", "width": 50, "height": 40} for i in (1, 2)]
    categories = categories if categories is not None else [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    p = tmp_path / name
    p.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return p


def _ann(i: int, bbox: list, image_id: int = 1, category_id: int = 3, **kw) -> dict:
    return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": 0, **kw}


def test_coco_labels_contiguous(tmp_path: Path):
    p = _coco(
        tmp_path,
        [_ann(1, [1, 2, 10, 10]), _ann(2, [5, 5, 20, 10], category_id=7), _ann(3, [0, 0, 4, 4], image_id=2, category_id=7)],
    )
    ds = CocoDetection(tmp_path / "img", p)
    assert ds.classes == ["cat", "dog"]
    assert ds[0][1]["labels"].tolist() == [1, 2] and ds[1][1]["labels"].tolist() == [2]
    assert ds[0][1]["boxes"].tolist() == [[1, 2, 11, 12], [5, 5, 25, 15]]


@pytest.mark.parametrize(
    "bbox, kind",
    [
        ([10, 10, 0, 5], "zero-area box"),
        ([10, 10, -4, 5], "negative box width/height"),
        ([60, 50, 5, 5], "box outside the image"),
        ([1, 2, 3], "malformed bbox"),
        (["a", 2, 3, 4], "malformed bbox"),
    ],
)
def test_coco_bad_box_is_counted_skip(tmp_path: Path, bbox: list, kind: str):
    p = _coco(tmp_path, [_ann(1, [1, 1, 5, 5]), _ann(2, bbox)])
    with pytest.warns(UserWarning, match=rf"skipped 1 item\(s\) \(1 {kind}.*strict=True fails instead") as rec:
        ds = CocoDetection(tmp_path / "img", p)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert (
        len(ds) == 2
        and ds[0][1]["boxes"].tolist() == [[1, 1, 6, 6]]
        and len(ds.skipped) == 1
        and ds.skipped[0].kind.startswith(kind)
    )
    with pytest.raises(ValueError, match=rf"1 bad annotation\(s\) or image\(s\) \(strict=True\): annotation id 2 .*{kind}"):
        CocoDetection(tmp_path / "img", p, strict=True)


def test_coco_box_partly_outside_is_clipped(tmp_path: Path):
    p = _coco(tmp_path, [_ann(1, [-5, 30, 20, 20])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = CocoDetection(tmp_path / "img", p)
    assert ds[0][1]["boxes"].tolist() == [[0, 30, 15, 40]] and ds.report.clipped == 1


def test_coco_unknown_category_and_image_id(tmp_path: Path):
    p = _coco(tmp_path, [_ann(1, [1, 1, 5, 5], category_id=99), _ann(2, [1, 1, 5, 5], image_id=42), _ann(3, [1, 1, 5, 5])])
    with pytest.warns(UserWarning, match=r"skipped 2 item\(s\) \(1 unknown category id, 1 unknown image id\)"):
        ds = CocoDetection(tmp_path / "img", p)
    assert [len(t["labels"]) for _, t in (ds[0], ds[1])] == [1, 0]


def test_coco_missing_image_is_counted_skip(tmp_path: Path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 50, "height": 40} for i in (1, 2, 3)]
    p = _coco(tmp_path, [_ann(1, [1, 1, 5, 5]), _ann(2, [1, 1, 5, 5], image_id=3)], images=images)
    with pytest.warns(UserWarning, match=r"skipped 1 item\(s\) \(1 missing image file\); e.g. image id 3: missing image file"):
        ds = CocoDetection(tmp_path / "img", p)
    assert [ds[i][1]["image_id"] for i in range(len(ds))] == [1, 2]
    with pytest.raises(ValueError, match=r"1 bad annotation\(s\) or image\(s\) \(strict=True\): image id 3: missing image file"):
        CocoDetection(tmp_path / "img", p, strict=True)


@pytest.mark.parametrize("verify", ["header", "full"])
def test_coco_corrupt_image_is_counted_skip(tmp_path: Path, verify: str):
    _coco(tmp_path, [])
    good = (tmp_path / "img" / "1.png").read_bytes()
    (tmp_path / "img" / "2.png").write_bytes(good[: len(good) // 2] if verify == "full" else b"\x89PNG garbage")
    p = _coco(tmp_path, [_ann(1, [1, 1, 5, 5]), _ann(2, [1, 1, 5, 5], image_id=2)])
    with pytest.warns(
        UserWarning, match=r"skipped 1 item\(s\) \(1 unreadable image file\); e.g. image id 2: unreadable image file"
    ):
        ds = CocoDetection(tmp_path / "img", p, verify=verify)
    assert len(ds) == 1 and ds[0][1]["image_id"] == 1
    with pytest.raises(ValueError, match=r"image id 2: unreadable image file \(.*2.png"):
        CocoDetection(tmp_path / "img", p, verify=verify, strict=True)


def test_coco_wrong_image_size_is_skipped(tmp_path: Path):
    images = [
        {"id": 1, "file_name": "1.png", "width": 50, "height": 40},
        {"id": 2, "file_name": "2.png", "width": 80, "height": 40},
    ]
    p = _coco(tmp_path, [_ann(1, [1, 1, 5, 5])], images=images)
    with pytest.warns(UserWarning, match=r"image size differs from the annotation"):
        assert len(CocoDetection(tmp_path / "img", p)) == 1


def test_coco_strict_lists_ten_and_counts(tmp_path: Path):
    p = _coco(tmp_path, [_ann(i, [1, 1, 0, 5]) for i in range(1, 15)])
    with pytest.raises(ValueError) as e:
        CocoDetection(tmp_path / "img", p, strict=True)
    msg = str(e.value)
    assert "14 bad annotation(s)" in msg and msg.count("zero-area box") == 10 and "... and 4 more" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", r"not valid JSON \(.* at line 1 column 2\)"),
        ("[1, 2]", r"expected a JSON object .* got a list"),
        ('{"annotations": [], "categories": [{"id": 1, "name": "a"}]}', r"no 'images' list"),
        (
            '{"images": [{"id": 1, "file_name": "1.png", "width": 50, "height": 40}], "categories": [{"id": 1, "name": "a"}]}',
            r"no 'annotations' list",
        ),
        ('{"images": {}, "annotations": [], "categories": [{"id": 1, "name": "a"}]}', r"'images' must be a list, got a dict"),
        ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}', r"the 'images' list is empty"),
        (
            '{"images": [{"id": 1, "file_name": "1.png", "width": 50, "height": 40}], "annotations": [], "categories": []}',
            r"the 'categories' list is empty",
        ),
        (
            '{"images": [{"id": "x", "file_name": "1.png", "width": 50, "height": 40}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}',
            r"images\[0\] 'id' must be an integer, got 'x'",
        ),
        (
            '{"images": [{"id": 1, "width": 50, "height": 40}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}',
            r"images\[0\] has no 'file_name'",
        ),
        (
            '{"images": [{"id": 1, "file_name": "1.png", "width": 50, "height": 40}], "annotations": [], "categories": [{"id": "a"}]}',
            r"categories\[0\] must be an object with an integer 'id'",
        ),
    ],
)
def test_coco_schema_errors_are_one_line(tmp_path: Path, content: str, match: str):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        CocoDetection(tmp_path, p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_coco_missing_file_and_no_usable_image(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CocoDetection(tmp_path, tmp_path / "nope.json")
    images = [{"id": 9, "file_name": "absent.png", "width": 50, "height": 40}]
    p = _coco(tmp_path, [], images=images)
    with pytest.raises(ValueError, match=r"none of its 1 image\(s\) is usable \(skipped 1 item\(s\) \(1 missing image file\)"):
        CocoDetection(tmp_path / "img", p)


def test_coco_masks_polygon_and_bad_segmentation(tmp_path: Path):
    poly = [[2, 2, 12, 2, 12, 12, 2, 12]]
    p = _coco(
        tmp_path,
        [_ann(1, [2, 2, 10, 10], segmentation=poly), _ann(2, [2, 2, 10, 10], segmentation={"counts": "x", "size": [5, 5]})],
    )
    with pytest.warns(UserWarning, match="1 missing or malformed segmentation"):
        ds = CocoDetection(tmp_path / "img", p, masks=True)
    m = ds[0][1]["masks"]
    assert isinstance(m, tv_tensors.Mask) and m.shape == (1, 40, 50) and 90 <= int(m.sum()) <= 130


def test_coco_load_time_failure_uses_next_image(tmp_path: Path):
    p = _coco(tmp_path, [_ann(1, [1, 1, 5, 5]), _ann(2, [1, 1, 5, 5], image_id=2)])
    ds = CocoDetection(tmp_path / "img", p, verify="none")
    (tmp_path / "img" / "1.png").write_bytes(b"gone bad")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        _, t = ds[0]
    assert t["image_id"] == 2


# ---------------------------------------------------------------- Pascal VOC reader


def _voc_xml(objects: list[tuple[str, tuple, int]], size: tuple[int, int] = (60, 40)) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return f"<annotation><filename>x.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>"


def _voc(root: Path, xmls: dict[str, str | None], split: str = "train", images: tuple[str, ...] | None = None) -> Path:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for stem, xml in xmls.items():
        if xml is not None:
            (root / "Annotations" / f"{stem}.xml").write_text(xml)
        if images is None or stem in images:
            Image.fromarray(np.full((40, 60, 3), 100, np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg")
    (root / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in xmls))
    return root


def test_voc_reader(tmp_path: Path):
    root = _voc(
        tmp_path / "VOC",
        {
            "000001": _voc_xml([("dog", (1, 1, 10, 20), 0), ("person", (5, 5, 60, 40), 0), ("cat", (3, 3, 9, 9), 1)]),
            "000002": _voc_xml([("car", (20, 10, 30, 30), 0)]),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = VOCDetection(root, "train")
    assert len(ds) == 2 and len(ds.classes) == 20
    img, t = ds[0]
    assert img.shape == (3, 40, 60) and isinstance(t["boxes"], tv_tensors.BoundingBoxes)
    assert t["boxes"].tolist() == [[0, 0, 10, 20], [4, 4, 60, 40]]  # 1-based inclusive -> XYXY pixel edges
    assert t["labels"].tolist() == [12, 15]  # dog, person (1-based); the difficult cat left out
    assert ds.image_name(1) == "000002" and ds[1][1]["labels"].tolist() == [7]
    assert VOCDetection(root, "train", keep_difficult=True)[0][1]["labels"].tolist() == [12, 15, 8]


def test_voc_bad_inputs_are_counted(tmp_path: Path):
    xmls = {
        "a": _voc_xml(
            [
                ("dog", (1, 1, 10, 20), 0),
                ("unicorn", (1, 1, 5, 5), 0),
                ("dog", (10, 10, 5, 20), 0),
                ("dog", (100, 100, 120, 120), 0),
                ("dog", (50, 30, 80, 50), 0),
            ]
        ),
        "b": "<annotation><size>",
        "c": None,  # no XML
        "d": _voc_xml([("dog", (1, 1, 5, 5), 0)]),
    }
    root = _voc(tmp_path / "VOC", xmls, images=("a", "b", "c"))  # d has no image
    with pytest.warns(UserWarning) as rec:
        ds = VOCDetection(root, "train")
    msg = str(rec[0].message)
    assert len(rec) == 1 and "\n" not in msg and "skipped 6 item(s)" in msg and "clipped 1 box(es)" in msg
    for kind in (
        "unknown class",
        "negative box width/height",
        "box outside the image",
        "unreadable annotation file",
        "missing annotation file",
        "missing image file",
    ):
        assert kind in msg
    assert len(ds) == 1 and ds[0][1]["boxes"].tolist() == [[0, 0, 10, 20], [49, 29, 60, 40]]
    with pytest.raises(
        ValueError, match=r"6 bad annotation\(s\) or image\(s\) \(strict=True\): a.xml object 1: unknown class \('unicorn'\)"
    ):
        VOCDetection(root, "train", strict=True)


def test_voc_layout_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/val.txt"):
        VOCDetection(tmp_path, "val")
    root = _voc(tmp_path / "VOC", {})
    with pytest.raises(ValueError, match="the split lists no image"):
        VOCDetection(root, "train")


def test_voc_entities_refused(tmp_path: Path):
    pytest.importorskip("defusedxml")
    bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]><annotation><size><width>60</width><height>40</height></size><n>&y;</n></annotation>'
    root = _voc(tmp_path / "VOC", {"ok": _voc_xml([("dog", (1, 1, 5, 5), 0)]), "bomb": bomb})
    with pytest.warns(UserWarning, match=r"1 unreadable annotation file.*refused XML \(EntitiesForbidden\)"):
        assert len(VOCDetection(root, "train")) == 1


# ---------------------------------------------------------------- v2 transforms


def _sample(boxes: list, size: tuple[int, int] = (100, 200), labels: list | None = None) -> tuple[tv_tensors.Image, dict]:
    img = tv_tensors.Image(torch.randint(0, 255, (3, *size), dtype=torch.uint8))
    b = tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=size)
    return img, {"boxes": b, "labels": torch.tensor(labels or list(range(1, len(boxes) + 1))), "image_id": 1}


def test_flip_moves_boxes():
    img, t = _sample([[10, 20, 50, 60], [150, 0, 200, 100]])
    out_img, out = v2.RandomHorizontalFlip(p=1.0)(img, t)
    assert out["boxes"].tolist() == [[150, 20, 190, 60], [0, 0, 50, 100]]
    assert torch.equal(out_img, img.flip(-1))


def test_sanitize_drops_degenerate_boxes_with_their_labels_and_masks():
    img, t = _sample([[10, 20, 50, 60], [30, 30, 30, 70], [0, 0, 0.5, 0.5]], labels=[4, 5, 6])
    t["masks"] = tv_tensors.Mask(torch.zeros(3, 100, 200, dtype=torch.uint8))
    _, out = v2.SanitizeBoundingBoxes()(img, t)
    assert out["boxes"].tolist() == [[10, 20, 50, 60]] and out["labels"].tolist() == [4] and out["masks"].shape == (1, 100, 200)


def test_eval_transform_resizes_boxes():
    img, t = _sample([[10, 20, 50, 60]])
    x, out = detection_eval_transform(320, MEAN, STD)(img, t)
    assert x.shape == (3, 320, 320) and x.dtype == torch.float32
    assert torch.allclose(out["boxes"], torch.tensor([[16.0, 64.0, 80.0, 192.0]]))  # x * 1.6, y * 3.2
    assert out["boxes"].canvas_size == (320, 320) and out["image_id"] == 1


def test_train_transform_keeps_boxes_consistent():
    tr = detection_train_transform(160, MEAN, STD)
    torch.manual_seed(0)
    for _ in range(30):
        img, t = _sample([[10, 20, 50, 60], [100, 10, 190, 90], [60, 60, 90, 99]])
        t["masks"] = tv_tensors.Mask(torch.zeros(3, 100, 200, dtype=torch.uint8))
        for k, (x1, y1, x2, y2) in enumerate(t["boxes"].int().tolist()):
            t["masks"][k, y1:y2, x1:x2] = 1
        x, out = tr(img, t)
        b = out["boxes"]
        assert x.shape == (3, 160, 160) and x.dtype == torch.float32
        assert isinstance(b, tv_tensors.BoundingBoxes) and b.canvas_size == (160, 160)
        assert len(b) == len(out["labels"]) == len(out["masks"]) >= 1
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all() and (b >= 0).all() and (b <= 160).all()
        for k in range(len(b)):  # each mask still sits inside its box
            ys, xs = torch.nonzero(out["masks"][k], as_tuple=True)
            if len(xs):
                assert (
                    xs.min() >= b[k, 0] - 1.5
                    and xs.max() <= b[k, 2] + 1.5
                    and ys.min() >= b[k, 1] - 1.5
                    and ys.max() <= b[k, 3] + 1.5
                )


def test_train_transform_seeded_through_dataset(scenes_dir: Path):
    ds = CocoDetection(
        scenes_dir / "test/images",
        scenes_dir / "test/instances.json",
        transforms=detection_train_transform(128, MEAN, STD),
        seed=11,
    )
    a, b = ds[2], ds[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    ds.epoch = 1
    images, targets = detection_collate([ds[0], ds[1], ds[2]])
    assert images.shape == (3, 3, 128, 128) and all(t["boxes"].canvas_size == (128, 128) for t in targets)


def test_transforms_need_rgb_statistics():
    with pytest.raises(ValueError, match="3 mean and 3 std"):
        detection_train_transform(320, [0.5], [0.5])


def test_coco_include_crowd_survives_sanitize(tmp_path: Path):
    p = _coco(tmp_path, [_ann(1, [1, 1, 5, 5]), _ann(2, [10, 10, 20, 20], iscrowd=1)])
    assert CocoDetection(tmp_path / "img", p)[0][1]["labels"].tolist() == [1]  # crowd left out by default
    ds = CocoDetection(tmp_path / "img", p, include_crowd=True)
    img, t = ds[0]
    assert t["iscrowd"].tolist() == [0, 1]
    t["boxes"][0] = torch.tensor([3.0, 3.0, 3.0, 9.0])  # degenerate: sanitize must drop its label and crowd flag together
    _, out = v2.SanitizeBoundingBoxes(labels_getter=per_box_tensors)(img, t)
    assert out["labels"].tolist() == [1] and out["iscrowd"].tolist() == [1]
    _, out = detection_eval_transform(64, MEAN, STD)(*ds[0])
    assert out["iscrowd"].tolist() == [0, 1]
