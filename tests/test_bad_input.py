"""Every kind of file mnv3 reads, malformed the ways a new user's files are, through the real CLI.

Each case writes a real bad file (empty, truncated, garbage bytes, wrong header, wrong types or
shapes), runs ``mnv3 ...`` and expects exit code 2, exactly one ``mnv3 CMD: error: ...`` line on
stderr that names the file, no traceback, no torch ``weights_only=False`` advice, and no output file.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save as safetensors_bytes  # noqa: E402

from mnv3.cli.main import main  # noqa: E402
from mnv3.data.images import open_image  # noqa: E402
from mnv3.models.registry import build_spec  # noqa: E402
from mnv3.spec.serialize import spec_to_dict  # noqa: E402
from mnv3.train.checkpoint import FORMAT_VERSION, save_checkpoint  # noqa: E402
from mnv3.train.config import TrainConfig  # noqa: E402

Maker = Callable[[Path], Path]


class Gadget:
    """A Python object in a pickle: weights_only=True refuses it (and mnv3 never unpickles it)."""


def _one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str], names: Path | str) -> str:
    """Run the CLI; assert exit 2 and a single clear error line naming ``names``; return that line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(f"mnv3 {argv[0]}: warning: ")]
    assert rc == 2, err
    assert "Traceback" not in err and "weights_only=False" not in err, err
    assert len(lines) == 1, err  # nothing but the error line (and the command's own warnings)
    assert lines[0].startswith(f"mnv3 {argv[0]}: error: "), err
    assert str(names) in lines[0], err
    return lines[0]


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write(name: str, data: bytes | str) -> Maker:
    def make(root: Path) -> Path:
        p = root / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    return make


# ---------------------------------------------------------------- spec files (mnv3 profile)


def _spec_dict() -> dict:
    return json.loads(json.dumps(spec_to_dict(build_spec("mobilenetv3_small_100"))))


def _spec(name: str, edit: Callable[[dict], None]) -> Maker:
    d = _spec_dict()
    edit(d)
    return _write(name, json.dumps(d, indent=2))


SPEC_CASES = {
    "yaml syntax": (_write("s.yaml", "name: x\nstem: {out: 16\nblocks: []\n"), r"line 3, column 7: invalid YAML"),
    "yaml tab": (_write("s.yaml", "name: x\n\tstem: 1\n"), r"line 2, column 1: invalid YAML: found character '\t'"),
    "json syntax": (_write("s.json", '{"name": "x",\n  "stem": }\n'), "line 2, column 11: invalid JSON: Expecting value"),
    "empty json": (_write("s.json", ""), "empty file"),
    "empty yaml": (_write("s.yml", "\n"), "empty file"),
    "garbage bytes": (_write("s.json", bytes(range(256))), "not a text file (byte 128 is not UTF-8)"),
    "yaml list": (_write("s.yaml", "- 1\n- 2\n"), "a spec must be a mapping, got list"),
    "python tag": (_write("s.yaml", "name: !!python/object/apply:os.system ['true']\n"), "could not determine a constructor"),
    "string width": (_spec("s.json", lambda d: d["stem"].update(out="16")), "stem.out: expected an integer, got '16' of type str"),
    "float kernel": (_spec("s.json", lambda d: d["blocks"][2].update(kernel=3.5)), "block 3.kernel: expected an integer, got 3.5"),
    "bool width": (_spec("s.json", lambda d: d["head"].update(hidden=True)), "head.hidden: expected an integer, got True"),
    "string eps": (_spec("s.json", lambda d: d["conventions"].update(bn_eps="1e-3")), "conventions.bn_eps: expected a number, got '1e-3'"),
    "string se": (_spec("s.json", lambda d: d["blocks"][0].update(se="yes")), "block 1.se: expected true or false, got 'yes'"),
    "null classes": (_spec("s.json", lambda d: d.update(num_classes=None)), "spec.num_classes: expected an integer, got null"),
    "unknown field": (_spec("s.json", lambda d: d["head"].update(hiden=1024)), "Did you mean: hidden?"),
    "bad enum": (_spec("s.json", lambda d: d["stem"].update(act="swish")), "stem.act: unknown value 'swish'"),
    "block not mapping": (_spec("s.json", lambda d: d["blocks"].__setitem__(0, 7)), "block 1: expected a mapping, got int"),
}


@pytest.mark.parametrize("case", SPEC_CASES)
def test_bad_spec_file(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = SPEC_CASES[case]
    path = make(tmp_path)
    line = _one_error_line(["profile", path], capsys, path)
    assert expected in line


def test_spec_field_types_are_checked_in_the_python_api() -> None:
    from mnv3.spec.serialize import spec_from_dict, spec_from_yaml

    d = _spec_dict()
    d["blocks"][0]["out"] = "16"
    with pytest.raises(ValueError, match=r"block 1\.out: expected an integer, got '16' of type str"):
        spec_from_dict(d)
    with pytest.raises(ValueError, match=r"spec YAML: line 2, column 1: invalid YAML: .* started at line 1, column 7"):
        spec_from_yaml("name: [x\n")
    good = _spec_dict()
    good["head"]["dropout"] = 0  # an int where a float is declared is the same number
    assert spec_from_dict(good).head.dropout == 0.0


# ---------------------------------------------------------------- recipes and --set (mnv3 train)

RECIPE_CASES = {
    "yaml syntax": ("lr: 0.1\nepochs: [1, 2\n", "line 3, column 1: invalid YAML: expected ',' or ']'"),
    "tab indent": ("lr: 0.1\n\tepochs: 1\n", "line 2, column 1: invalid YAML"),
    "garbage bytes": (bytes(range(256)), "not a text file"),
    "a list": ("- lr: 0.1\n", "must be a mapping of config fields"),
    "unknown key": ("lerning_rate: 0.1\n", "unknown config field(s): 'lerning_rate'. Did you mean: lr?"),
    "typo key": ("batchsize: 8\n", "Did you mean: batch_size"),
    "wrong type": ("lr: fast\n", "config field 'lr' expects float, got 'fast'"),
    "python tag": ("model: !!python/object/apply:os.system ['true']\n", "line 1, column 8: invalid YAML: could not determine a constructor"),
}


@pytest.mark.parametrize("case", RECIPE_CASES)
def test_bad_recipe_file(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = RECIPE_CASES[case]
    path = _write("recipe.yaml", text)(tmp_path)
    line = _one_error_line(["train", "--recipe", path, "--print-config", "--out-dir", tmp_path / "runs"], capsys, path)
    assert expected in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--set", "lerning_rate=0.1"], "'lerning_rate'. Did you mean: lr?"),
        (["--set", "learning_rate=0.1"], "Did you mean: lr?"),
        (["--set", "batchsize=8"], "Did you mean: batch_size"),
        (["--set", "crop_scale=[0.08, 1"], "--set crop_scale=[0.08, 1: line 1, column 9: invalid YAML"),
        (["--recipe", "fashion-mnst"], "unknown recipe 'fashion-mnst'. Did you mean: fashion-mnist, fashion-scenes?"),
    ],
)
def test_bad_config_names_get_suggestions(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error_line(["train", *argv, "--print-config"], capsys, expected)
    assert expected in line


# ---------------------------------------------------------------- training checkpoints (mnv3 train --resume, mnv3 eval)


def _ckpt(name: str, state: object, raw: bool = False) -> Maker:
    def make(root: Path) -> Path:
        p = root / name
        if raw:
            p.write_bytes(_torch_bytes(state))
        else:
            save_checkpoint(p, state)  # type: ignore[arg-type]
        return p

    return make


def _truncated_ckpt(root: Path) -> Path:
    p = save_checkpoint(root / "last.pt", {"config": TrainConfig().to_dict(), "w": torch.zeros(5000)})
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p


CKPT_CASES = {
    "empty": (_write("last.pt", b""), "is empty (0 bytes)"),
    "garbage": (_write("last.pt", bytes(range(256)) * 8), "is not a PyTorch file"),
    "truncated": (_truncated_ckpt, "is truncated or corrupt"),
    "pickled object": (_ckpt("last.pt", {"format_version": FORMAT_VERSION, "gadget": Gadget()}, raw=True), "holds pickled Python objects (test_bad_input.Gadget)"),
    "numpy arrays": (_ckpt("last.pt", {"format_version": FORMAT_VERSION, "w": np.zeros(3)}, raw=True), "holds pickled Python objects (numpy"),
    "a list": (_ckpt("last.pt", [1, 2, 3], raw=True), "is not an mnv3 training checkpoint (format 1): it holds a list"),
    "foreign dict": (_ckpt("last.pt", {"epoch": 3, "state_dict": {}}, raw=True), "is not an mnv3 training checkpoint"),
    "no config": (_ckpt("last.pt", {"step": 3}), "has no 'config' entry"),
    "config wrong type": (_ckpt("last.pt", {"config": "lr=0.1", "step": 3}), "entry 'config' is of type str"),
    "config unknown key": (_ckpt("last.pt", {"config": {"lerning_rate": 0.1}}), "saved config is not valid for this mnv3"),
    "safetensors bytes": (_write("last.pt", safetensors_bytes({"w": torch.zeros(2)})), "looks like a safetensors file"),
}


@pytest.mark.parametrize("case", CKPT_CASES)
def test_bad_training_checkpoint_resume(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = CKPT_CASES[case]
    path = make(tmp_path)
    line = _one_error_line(["train", "--resume", path, "--print-config"], capsys, path)
    assert expected in line


@pytest.mark.parametrize("case", ["empty", "truncated", "pickled object", "no config"])
def test_bad_training_checkpoint_eval(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = CKPT_CASES[case]
    path = make(tmp_path)
    line = _one_error_line(["eval", path], capsys, path)  # reports would go next to the checkpoint
    assert expected in line
    assert list(tmp_path.iterdir()) == [path]


def test_checkpoint_missing_entry_for_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint with a config but no classes or model: eval names the missing entry."""
    cfg = TrainConfig(model="mobilenetv3_small_050").to_dict()
    path = save_checkpoint(tmp_path / "last.pt", {"config": cfg, "step": 1})
    line = _one_error_line(["eval", path], capsys, path)
    assert "has no 'classes' entry" in line
    assert list(tmp_path.iterdir()) == [path]


# ---------------------------------------------------------------- weights files (mnv3 convert)


def _tv_state() -> dict[str, torch.Tensor]:
    return torchvision.models.mobilenet_v3_small().state_dict()


def _wrong_shapes(root: Path) -> Path:
    state = _tv_state()
    state["classifier.3.weight"] = torch.zeros(7, 3)
    p = root / "w.pth"
    p.write_bytes(_torch_bytes(state))
    return p


def _truncated_pth(root: Path) -> Path:
    p = root / "w.pth"
    p.write_bytes(_torch_bytes(_tv_state())[:200_000])
    return p


def _truncated_safetensors(root: Path) -> Path:
    p = root / "w.safetensors"
    p.write_bytes(safetensors_bytes(_tv_state())[:100_000])
    return p


WEIGHT_CASES = {
    "pth empty": (_write("w.pth", b""), "is empty (0 bytes)"),
    "pth garbage": (_write("w.pth", os.urandom(3000)), "is not a PyTorch file"),
    "pth truncated": (_truncated_pth, "is truncated or corrupt"),
    "pth pickled object": (_write("w.pth", _torch_bytes({"model": Gadget()})), "holds pickled Python objects (test_bad_input.Gadget)"),
    "pth numpy": (_write("w.pth", _torch_bytes({"w": np.zeros((3, 3))})), "unpickling can run code"),
    "pth a list": (_write("w.pth", _torch_bytes([torch.zeros(1)])), "holds a list, not a state dict"),
    "pth no tensors": (_write("w.pth", _torch_bytes({"epoch": 3, "lr": 0.1})), "holds no state dict"),
    "pth int keys": (_write("w.pth", _torch_bytes({1: torch.zeros(1)})), "its keys must be tensor names"),
    "pth wrong shapes": (_wrong_shapes, "classifier"),
    "pth is hdf5": (_write("w.pth", b"\x89HDF\r\n\x1a\n" + bytes(100)), "it is an HDF5 (Keras .h5) file"),
    "safetensors empty": (_write("w.safetensors", b""), "w.safetensors"),
    "safetensors garbage": (_write("w.safetensors", os.urandom(3000)), "w.safetensors"),
    "safetensors truncated": (_truncated_safetensors, "w.safetensors"),
}
# Errors raised after the file was read (shape checks, the Keras layer walk) come from the dispatch in
# mnv3/weights/load.py, which does not add the file's name yet; the weights resolver replaces it.
@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_bad_weights_file_convert(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = WEIGHT_CASES[case]
    path = make(tmp_path)
    out = tmp_path / "out.safetensors"
    line = _one_error_line(["convert", "--from", "torchvision", path, "--model", "mobilenetv3_small_100", "-o", out], capsys, path)
    assert expected in line
    assert list(tmp_path.iterdir()) == [path]  # no output, no temporary file


# ---------------------------------------------------------------- Keras files (mnv3 convert --from keras)


def _h5(name: str, build: Callable[[h5py.File], None]) -> Maker:
    def make(root: Path) -> Path:
        p = root / name
        with h5py.File(p, "w") as f:
            build(f)
        return p

    return make


def _keras3_conv(f: h5py.File) -> None:
    f.create_group("layers/conv2d/vars")["0"] = np.zeros((3, 3, 3, 16), np.float32)


def _bn_vars(f: h5py.File, n: int) -> None:
    group = f.create_group("layers/batch_normalization/vars")
    for i in range(n):
        group[str(i)] = np.ones(4, np.float32)


def _truncated_h5(root: Path) -> Path:
    p = _h5("w.weights.h5", _keras3_conv)(root)
    p.write_bytes(p.read_bytes()[:1000])
    return p


def _keras_zip(members: dict[str, bytes], cut: int = 0) -> Maker:
    def make(root: Path) -> Path:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
        p = root / "m.keras"
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) - cut])
        return p

    return make


KERAS_CASES = {
    "h5 empty": (_write("w.h5", b""), "is empty (0 bytes)"),
    "h5 garbage": (_write("w.weights.h5", os.urandom(2000)), "not HDF5, or truncated or corrupt"),
    "h5 truncated": (_truncated_h5, "truncated"),
    "h5 not keras": (_h5("w.h5", lambda f: f.create_dataset("x", data=np.zeros(3))), "no 'layers' group"),
    "h5 vars not arrays": (_h5("w.h5", lambda f: f.create_group("layers/conv2d/vars/0")), "not an array of weights"),
    "h5 layers a dataset": (_h5("w.h5", lambda f: f.create_dataset("layers", data=np.zeros(3))), "not a keras.applications MobileNetV3 weights file"),
    "h5 legacy missing layer": (_h5("w.h5", lambda f: f.attrs.create("layer_names", [b"conv1"])), "not a keras.applications MobileNetV3 weights file"),
    "h5 bn with 2 vars": (_h5("w.h5", lambda f: _bn_vars(f, 2)), "a BatchNormalization has 4"),
    "h5 too few layers": (_h5("w.weights.h5", _keras3_conv), "w.weights.h5"),
    "keras not a zip": (_write("m.keras", b"PK\x03\x04 not really"), "is not a readable .keras file"),
    "keras zip without weights": (_keras_zip({"config.json": b"{}"}), "a zip without model.weights.h5"),
    "keras zip truncated": (_keras_zip({"model.weights.h5": os.urandom(5000)}, cut=40), "is not a readable .keras file"),
    "keras garbage weights": (_keras_zip({"model.weights.h5": b"garbage"}), "not HDF5, or truncated or corrupt"),
}


@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_bad_keras_file_convert(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = KERAS_CASES[case]
    path = make(tmp_path)
    out = tmp_path / "out.safetensors"
    line = _one_error_line(["convert", "--from", "keras", path, "--model", "mobilenetv3_small_100", "-o", out], capsys, path)
    assert expected in line
    assert list(tmp_path.iterdir()) == [path]


# ---------------------------------------------------------------- Fashion-MNIST IDX files (mnv3 train --data-dir)

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def _idx(ndim_shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    return bytes([0, 0, 8, len(ndim_shape)]) + b"".join(struct.pack(">I", n) for n in ndim_shape) + payload


def _fashion(images: bytes, gz: bool = True) -> Maker:
    """A data dir with the two training files; the labels are a well-formed (wrong) IDX file."""

    def make(root: Path) -> Path:
        d = root / "fm"
        d.mkdir()
        name = IMAGES + (".gz" if gz else "")
        (d / name).write_bytes(images)
        (d / (LABELS + ".gz")).write_bytes(gzip.compress(_idx((3,), b"\x01\x02\x03")))
        return d / name

    return make


def _corrupt_deflate() -> bytes:
    data = bytearray(gzip.compress(bytes(5000)))
    data[12:40] = os.urandom(28)  # keep the gzip header, break the deflate stream
    return bytes(data)


FASHION_CASES = {
    "empty gz": (_fashion(b""), "is empty (0 bytes)"),
    "garbage gz": (_fashion(os.urandom(500)), "is not a readable gzip file"),
    "truncated gz": (_fashion(gzip.compress(_idx((10, 28, 28), os.urandom(7840)))[:2000]), "is not a readable gzip file"),
    "corrupt deflate": (_fashion(_corrupt_deflate()), "is not a readable gzip file"),
    "wrong magic": (_fashion(gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(100))), "is not an IDX file (bad magic number)"),
    "zero dimensions": (_fashion(bytes([0, 0, 8, 0, 7]), gz=False), "0 dimensions"),
    "truncated idx": (_fashion(_idx((10, 28, 28), bytes(100)), gz=False), "is truncated or padded"),
    "wrong count": (_fashion(gzip.compress(_idx((2, 28, 28), bytes(2 * 784)))), "holds 2 items, expected 60000"),
    "huge header": (_fashion(_idx((0xFFFFFFFF,) * 3), gz=False), "is truncated or padded"),
}


@pytest.mark.parametrize("case", FASHION_CASES)
def test_bad_fashion_mnist_file(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = FASHION_CASES[case]
    path = make(tmp_path)
    argv = ["train", "--data", "fashion-mnist", "--data-dir", path.parent, "--out-dir", tmp_path / "runs", "--max-steps", "1"]
    line = _one_error_line(argv, capsys, path)
    assert expected in line
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- images: open_image, image folders, calibration


def _png_header_only(width: int, height: int) -> bytes:
    """A real PNG of the given size (1-bit, all black), compressed: tiny on disk, huge when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _good_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)).save(buf, "PNG")
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[:600]


IMAGE_CASES = {
    "decompression bomb": ("big.png", _png_header_only(15000, 15000), "225,000,000 pixels"),
    "empty": ("empty.png", b"", "empty file"),
    "garbage": ("noise.jpg", bytes(range(256)) * 4, "not an image"),
    "truncated png": ("cut.png", _good_png()[:-30], "truncated"),
    "truncated jpeg": ("cut.jpg", _truncated_jpeg(), "truncated"),
}


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_open_image_raises_one_clear_value_error(case: str, tmp_path: Path) -> None:
    name, data, expected = IMAGE_CASES[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        open_image(path, "RGB")
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a readable image: ") and expected in msg and "\n" not in msg


def test_decompression_bomb_message_says_how_to_raise_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(15000, 15000))
    with pytest.raises(ValueError, match=r"limit of 178,956,970 pixels \(2 x PIL\.Image\.MAX_IMAGE_PIXELS = 89,478,485\).*PIL\.Image\.MAX_IMAGE_PIXELS = 225000000"):
        open_image(path)
    good = tmp_path / "good.png"
    good.write_bytes(_good_png())
    assert open_image(good, "L").mode == "L" and open_image(good).size == (32, 32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_image(tmp_path / "missing.png")


def _folder_data(bad_name: str, bad: bytes) -> Maker:
    """An ImageFolder dataset whose only training image is bad (and a readable val image)."""

    def make(root: Path) -> Path:
        for split in ("train", "val"):
            (root / "data" / split / "cat").mkdir(parents=True)
        (root / "data" / "val" / "cat" / "ok.png").write_bytes(_good_png())
        p = root / "data" / "train" / "cat" / bad_name
        p.write_bytes(bad)
        return p

    return make


@pytest.mark.parametrize("case", IMAGE_CASES)
@pytest.mark.parametrize("strict", [False, True])
def test_bad_image_in_training_folder(case: str, strict: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name, data, expected = IMAGE_CASES[case]
    path = _folder_data(name, data)(tmp_path)
    argv = ["train", "--data", tmp_path / "data", "--out-dir", tmp_path / "runs", "--max-steps", "1", "--model", "mobilenetv3_small_050"]
    line = _one_error_line([*argv, *(["--strict"] if strict else [])], capsys, path)
    assert expected in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_bad_calibration_image(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    name, data, expected = IMAGE_CASES[case]
    calib = tmp_path / "calib"
    calib.mkdir()
    path = calib / name
    path.write_bytes(data)
    out = tmp_path / "m.onnx"
    argv = ["export", "mobilenetv3_small_050", "--format", "onnx", "-o", out, "--int8", "--calibration", calib, "--num-classes", "10"]
    line = _one_error_line(argv, capsys, path)
    assert line.startswith(f"mnv3 export: error: calibration image {path}: not a readable image") and expected in line
    assert not out.exists()
