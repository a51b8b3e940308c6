"""Keras -> mnv3: MobileNetV3Large/Small (alpha 0.75 / 1.0, minimalistic) give Keras' logits.

Keras 3 runs with the torch backend; each source model is built once per module (weights=None),
given random weights and BN statistics, saved in Keras' own formats and converted with h5py.
The Keras models keep their in-model Rescaling and get [0, 255] pixels; the mnv3 models get the
same pixels through the weights' preprocessing (mean = std = 0.5 on [0, 1]).
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torchvision.transforms import v2 as T  # noqa: E402

import mnv3  # noqa: E402
from mnv3.data.transforms import eval_transform  # noqa: E402
from mnv3.weights import convert_checkpoint  # noqa: E402

keras = pytest.importorskip("keras")

# mnv3 name -> (Keras builder, alpha, minimalistic)
VARIANTS = {
    "mobilenetv3_large_075": ("MobileNetV3Large", 0.75, False),
    "mobilenetv3_large_100": ("MobileNetV3Large", 1.0, False),
    "mobilenetv3_large_minimal_100": ("MobileNetV3Large", 1.0, True),
    "mobilenetv3_small_075": ("MobileNetV3Small", 0.75, False),
    "mobilenetv3_small_100": ("MobileNetV3Small", 1.0, False),
    "mobilenetv3_small_minimal_100": ("MobileNetV3Small", 1.0, True),
    # no published weights, but the width rules differ here: Keras' head conv is 6 x the rounded
    # input (6 * 32 = 192), not the rounded 576 * 0.35 (200), and the stem stays at 16
    "mobilenetv3_small_035": ("MobileNetV3Small", 0.35, False),
}


def build_random_keras(name: str, seed: int = 0):
    """A keras.applications MobileNetV3 with random weights, biases and BN statistics (logits out)."""
    builder, alpha, minimal = VARIANTS[name]
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, builder)(
        input_shape=(None, None, 3), alpha=alpha, minimalistic=minimal, weights=None, classifier_activation=None
    )
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n)])
        elif len(layer.weights) == 2:  # conv with bias: SE convs, conv_2, logits
            kernel, bias = layer.get_weights()
            if layer.name in ("conv_2", "logits"):
                kernel = rng.normal(0, 3 / np.sqrt(kernel.shape[2]), kernel.shape)
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    return model


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    """Each variant built once: (model, its Keras 3 .weights.h5, its legacy HDF5 weights file)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    root = tmp_path_factory.mktemp("keras")
    out = {}
    for i, name in enumerate(VARIANTS):
        model = build_random_keras(name, seed=i)
        path, legacy = root / f"{name}.weights.h5", root / f"{name}_legacy.h5"
        model.save_weights(path)
        # the layout of the files keras.applications downloads (Keras 2 save_weights)
        with h5py.File(legacy, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        out[name] = (model, path, legacy)
    return out


def _pixels(size: int) -> np.ndarray:
    return np.random.default_rng(size).uniform(0, 255, (3, size, size, 3)).astype("float32")


def _compare(ref: np.ndarray, pixels: np.ndarray, mnv3_model, meta) -> None:
    # the mnv3 side: the same pixels as [0, 1] images through the weights' own preprocessing
    norm = next(t for t in eval_transform(meta.preprocessing).transforms if isinstance(t, T.Normalize))
    x = norm(torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255.0)
    with torch.no_grad():
        ours = mnv3_model(x).numpy()
    assert np.abs(ref - ours).max() <= 1e-4
    assert (ref.argmax(1) == ours.argmax(1)).all()
    assert ref.std() > 0.1


@pytest.mark.parametrize("name", list(VARIANTS))
def test_converted_logits_match_keras(keras_models, name) -> None:
    keras_model, path, legacy = keras_models[name]
    pixels = _pixels(64)
    ref = keras.ops.convert_to_numpy(keras_model(pixels, training=False))
    for file in (path, legacy):
        model, meta = convert_checkpoint(file, "keras", name)
        assert model.spec.conventions == mnv3.spec.get_preset("keras")
        assert meta.preprocessing == mnv3.weights.INCEPTION
        _compare(ref, pixels, model, meta)


def test_keras_zip_file(keras_models, tmp_path) -> None:
    """A whole-model .keras zip converts too (its model.weights.h5 is read)."""
    keras_model, _, _ = keras_models["mobilenetv3_small_075"]
    keras_model.save(tmp_path / "m.keras")
    model, meta = convert_checkpoint(tmp_path / "m.keras", "keras", "mobilenetv3_small_075")
    pixels = _pixels(96)
    _compare(keras.ops.convert_to_numpy(keras_model(pixels, training=False)), pixels, model, meta)


def test_include_preprocessing_is_inception_scaling() -> None:
    """Keras' in-model Rescaling is x / 127.5 - 1, i.e. mean = std = 0.5 on [0, 1] pixels."""
    model = build_random_keras("mobilenetv3_small_minimal_100")
    rescale = next(layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling))
    x = np.arange(256, dtype="float32").reshape(1, 16, 16, 1)
    keras_side = keras.ops.convert_to_numpy(rescale(x))
    p = mnv3.weights.INCEPTION
    ours = (x / 255.0 - p.mean[0]) / p.std[0]
    np.testing.assert_allclose(keras_side, ours, atol=1e-6)


def test_keras_file_of_another_variant(keras_models) -> None:
    _, path, _ = keras_models["mobilenetv3_small_075"]
    with pytest.raises(ValueError) as err:
        convert_checkpoint(path, "keras", "mobilenetv3_small_100")
    msg = str(err.value)
    # blocks 1-3 of Small 0.75 have Small 1.0's widths; block 4 projects to 32 instead of 40
    assert "conv2d_11/kernel (Keras layer expanded_conv_3_project) has shape [32, 96, 1, 1], but blocks.3.project.conv.weight needs [40, 96, 1, 1]" in msg
    assert "fits mobilenetv3_small_075" in msg


def test_corrupt_keras_file(tmp_path, keras_models) -> None:
    _, path, _ = keras_models["mobilenetv3_small_100"]
    data = path.read_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        convert_checkpoint(tmp_path / "cut.weights.h5", "keras", "mobilenetv3_small_100")
