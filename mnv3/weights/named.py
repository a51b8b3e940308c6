"""Named published weights, in the spirit of torchvision's Weights enums: one typed entry per file.

Each entry says where the file is (public URL), how to check it (the checksum that is really
published: torchvision's and timm's file names carry the first 8 hex digits of the file's sha256,
Keras' ``WEIGHTS_HASHES`` are md5), how to convert it, the preprocessing the weights expect, the
category names (which list: :class:`~mnv3.weights.categories.CategorySet`), the published metrics with their
source (the libraries' published tables), parameters / MAdds (``mnv3 profile`` at 224, 1000 classes, paper
counting; the detector at 320, the segmenter at 520) and the license. Tests compare the URLs, hashes,
preprocessing, categories and metrics with what torchvision, timm and Keras themselves ship.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import Enum

from mnv3.spec.conventions import Preset
from mnv3.utils.preprocessing import INCEPTION, Preprocessing
from mnv3.weights.categories import CategorySet
from mnv3.weights.convert.common import Library


class HashAlgorithm(str, Enum):
    """Digest a checksum is taken with."""

    SHA256 = "sha256"
    MD5 = "md5"


@dataclass(frozen=True)
class Checksum:
    """A published digest of a file, possibly only its first hex digits, and where it was published."""

    algorithm: HashAlgorithm
    value: str  # full hex digest or a prefix of it (torch.hub convention: 8 hex digits in the file name)
    provenance: str

    def __post_init__(self) -> None:
        if not self.value or any(ch not in "0123456789abcdef" for ch in self.value):
            raise ValueError(f"checksum must be lower-case hex, got {self.value!r}")

    def matches(self, hexdigest: str) -> bool:
        """True when the file's full digest starts with (or equals) the published value."""
        return hexdigest.startswith(self.value)


@dataclass(frozen=True)
class Metric:
    """One published number: what, on which data, and where it was published."""

    name: str  # e.g. "top1"
    value: float
    dataset: str
    source: str


@dataclass(frozen=True)
class WeightsEntry:
    """A published checkpoint and everything needed to use it with an mnv3 model."""

    name: str  # "<mnv3 model>.<tag>"
    model: str  # registered mnv3 model name
    preset: Preset  # conventions under which the converted weights compute the source's logits
    library: Library  # the converter that reads the file
    source_name: str  # the weights' name in their library (torchvision enum member, timm tag, Keras call)
    url: str
    checksum: Checksum
    preprocessing: Preprocessing
    metrics: tuple[Metric, ...]
    params: int
    madds: int
    license: str
    recipe: str = ""
    num_classes: int = 1000
    category_set: CategorySet = CategorySet.IMAGENET  # the label list the weights predict, in index order
    notes: str = ""

    @property
    def file_name(self) -> str:
        """The file's name in the cache: the URL's last component (it carries the hash prefix)."""
        return self.url.rsplit("/", 1)[-1]

    def __post_init__(self) -> None:
        n = len(self.categories)
        if n and n != self.num_classes:
            raise ValueError(f"{self.name}: {self.category_set.value} has {n} categories, the entry {self.num_classes} classes")

    @property
    def categories(self) -> list[str]:
        """The class names in index order: ImageNet-1k's (all three libraries use the same order), COCO's or VOC's."""
        return self.category_set.names()

    @property
    def palette(self) -> list[list[int]]:
        """An (R, G, B) colour per class for a segmenter's drawings (VOC's colour map), else empty."""
        return self.category_set.palette()


_IMAGENET = "ImageNet-1k val"
_TV_SRC = "torchvision {enum}.{member}.meta['_metrics'] (torchvision/models/mobilenetv3.py)"
_TV_LICENSE = "BSD-3-Clause (torchvision); ImageNet-1k terms of access apply"
_TV_COCO_LICENSE = "BSD-3-Clause (torchvision); COCO annotations CC BY 4.0, COCO images' own (Flickr) terms apply"
_TIMM_LICENSE = "Apache-2.0 (timm pretrained_cfg 'license')"
_KERAS_LICENSE = "Apache-2.0 (keras-applications, ports of the TF-slim checkpoints)"
_KERAS_SRC = "keras/src/applications/mobilenet_v3.py docstring table; TF-slim's numbers, not re-measured on the Keras port"
_TIMM_HUB_PREFIX = "sha256 prefix in the file name (timm clean_checkpoint.py convention)"
_TV_HUB_PREFIX = "sha256 prefix in the file name (torch.hub check_hash convention)"
_KERAS_MD5 = "md5 from keras WEIGHTS_HASHES (include_top file)"

_TIMM_BASE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"

TIMM_BICUBIC = Preprocessing(interpolation="bicubic")  # timm crop_pct 0.875 at 224 -> resize 256
TV_V2 = Preprocessing(resize=232)  # torchvision ImageClassification(crop_size=224, resize_size=232)


def _tv_entry(name: str, model: str, url: str, prep: Preprocessing, source_name: str, metrics: tuple[Metric, ...], params: int, madds: int,
              **extra: object) -> WeightsEntry:
    """A torchvision weights entry: its checksum is the hash prefix in the URL's file name."""
    return WeightsEntry(
        name=name,
        model=model,
        preset=Preset.TORCHVISION,
        library=Library.TORCHVISION,
        source_name=source_name,
        url=url,
        checksum=Checksum(HashAlgorithm.SHA256, url.rsplit("-", 1)[-1].split(".")[0], _TV_HUB_PREFIX),
        preprocessing=prep,
        metrics=metrics,
        params=params,
        madds=madds,
        **extra,  # type: ignore[arg-type]
    )


def _tv(name: str, model: str, url: str, prep: Preprocessing, enum: str, member: str, top1: float, top5: float, params: int, madds: int, recipe: str) -> WeightsEntry:
    src = _TV_SRC.format(enum=enum, member=member)
    metrics = (Metric("top1", top1, _IMAGENET, src), Metric("top5", top5, _IMAGENET, src))
    return _tv_entry(name, model, url, prep, f"{enum}.{member}", metrics, params, madds, license=_TV_LICENSE, recipe=recipe)


_TV_DENSE_SRC = "torchvision {enum}.{member}.meta['_metrics'] (torchvision/models/{file})"
# torchvision/models/detection/ssdlite.py: SSD(size=(320, 320), image_mean=[0.5] * 3, image_std=[0.5] * 3): a fixed 320x320
# resize (GeneralizedRCNNTransform with fixed_size), [0, 1] -> [-1, 1]
SSDLITE_320 = Preprocessing(resize=320, crop=320, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# torchvision LRASPP_MobileNet_V3_Large_Weights transforms: SemanticSegmentation(resize_size=520): the shorter side to 520
# (bilinear, antialias), no crop, ImageNet mean / std
TV_SEGMENTATION_520 = Preprocessing(resize=520, crop=520, keep_aspect=True)


def _tv_dense(
    name: str, model: str, url: str, prep: Preprocessing, enum: str, member: str, file: str, metrics: dict[str, float], dataset: str,
    categories: CategorySet, params: int, madds: int, recipe: str, notes: str,
) -> WeightsEntry:
    """A torchvision detection / segmentation weights entry: its metrics from the enum's meta, on ``dataset``."""
    src = _TV_DENSE_SRC.format(enum=enum, member=member, file=file)
    return _tv_entry(
        name, model, url, prep, f"{enum}.{member}", tuple(Metric(k, v, dataset, src) for k, v in metrics.items()), params, madds,
        license=_TV_COCO_LICENSE, recipe=recipe, num_classes=len(categories.names()), category_set=categories, notes=notes,
    )


def _timm(
    name: str, model: str, preset: Preset, tag: str, file: str, prep: Preprocessing, top1: float, src: str, params: int, madds: int, top5: float | None = None
) -> WeightsEntry:
    metrics = (Metric("top1", top1, _IMAGENET, src),) + ((Metric("top5", top5, _IMAGENET, src),) if top5 is not None else ())
    return WeightsEntry(
        name=name,
        model=model,
        preset=preset,
        library=Library.TIMM,
        source_name=tag,
        url=_TIMM_BASE + file,
        checksum=Checksum(HashAlgorithm.SHA256, file.rsplit("-", 1)[-1].split(".")[0], _TIMM_HUB_PREFIX),
        preprocessing=prep,
        metrics=metrics,
        params=params,
        madds=madds,
        license=_TIMM_LICENSE,
    )


def _keras(name: str, model: str, call: str, key: str, md5: str, top1: float, params: int, madds: int) -> WeightsEntry:
    return WeightsEntry(
        name=name,
        model=model,
        preset=Preset.KERAS,
        library=Library.KERAS,
        source_name=f"keras.applications.{call}",
        url=f"{_KERAS_BASE}weights_mobilenet_v3_{key}.h5",
        checksum=Checksum(HashAlgorithm.MD5, md5, _KERAS_MD5),
        # keras.applications rescales [0, 255] inside the model: x / 127.5 - 1 == (x/255 - 0.5) / 0.5
        preprocessing=INCEPTION,
        metrics=(Metric("top1", top1, _IMAGENET, _KERAS_SRC),),
        params=params,
        madds=madds,
        license=_KERAS_LICENSE,
        notes="Keras gives no eval resize/crop; 256 -> 224 bilinear follows TF-slim's central crop 0.875.",
    )


_TV_RECIPE_V1 = "https://github.com/pytorch/vision/tree/main/references/classification#mobilenetv3-large--small"
_TV_RECIPE_V2 = "https://github.com/pytorch/vision/issues/3995#new-recipe-with-reg-tuning"
_TV_RECIPE_SSDLITE = "https://github.com/pytorch/vision/tree/main/references/detection#ssdlite320-mobilenetv3-large"
_TV_RECIPE_LRASPP = "https://github.com/pytorch/vision/tree/main/references/segmentation#lraspp_mobilenet_v3_large"
_TIMM_MI = "timm model index (huggingface.co/docs/timm/models/mobilenet-v3; top-1 with timm's bilinear 0.875 eval)"
_TIMM_CSV = "timm results/results-imagenet.csv (github.com/huggingface/pytorch-image-models)"

# fmt: off
_ENTRIES: tuple[WeightsEntry, ...] = (
    _tv("mobilenetv3_large_100.torchvision_v1", "mobilenetv3_large_100", "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
        Preprocessing(), "MobileNet_V3_Large_Weights", "IMAGENET1K_V1", 74.042, 91.340, 5_483_032, 216_589_760, _TV_RECIPE_V1),
    _tv("mobilenetv3_large_100.torchvision_v2", "mobilenetv3_large_100", "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth",
        TV_V2, "MobileNet_V3_Large_Weights", "IMAGENET1K_V2", 75.274, 92.566, 5_483_032, 216_589_760, _TV_RECIPE_V2),
    _tv("mobilenetv3_small_100.torchvision_v1", "mobilenetv3_small_100", "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
        Preprocessing(), "MobileNet_V3_Small_Weights", "IMAGENET1K_V1", 67.668, 87.402, 2_542_856, 56_510_400, _TV_RECIPE_V1),
    # ssdlite320_mobilenet_v3_large(weights=COCO_V1) builds its backbone with reduced_tail=True (weights_backbone is None)
    _tv_dense("ssdlite_mobilenetv3_large_100_reduced.torchvision_coco", "ssdlite_mobilenetv3_large_100_reduced",
              "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth", SSDLITE_320,
              "SSDLite320_MobileNet_V3_Large_Weights", "COCO_V1", "detection/ssdlite.py", {"box_map": 21.3}, "COCO val2017",
              CategorySet.COCO, 3_440_060, 583_171_904, _TV_RECIPE_SSDLITE,
              "SSDLite320 with MobileNetV3-Large, reduced tail; 91 COCO ids (background and unused ids included); profiled at 320."),
    _tv_dense("lraspp_mobilenetv3_large_100_full.torchvision_coco_voc", "lraspp_mobilenetv3_large_100_full",
              "https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth", TV_SEGMENTATION_520,
              "LRASPP_MobileNet_V3_Large_Weights", "COCO_WITH_VOC_LABELS_V1", "segmentation/lraspp.py",
              {"miou": 57.9, "pixel_acc": 91.2}, "COCO val2017, VOC labels", CategorySet.VOC, 3_221_538, 2_086_219_688, _TV_RECIPE_LRASPP,
              "Trained on the COCO images of VOC's 20 categories (torchvision's _docs); full tail, dilated, OS 16; profiled at 520x520."),
    _timm("mobilenetv3_large_100.timm_ra", "mobilenetv3_large_100", Preset.TIMM, "mobilenetv3_large_100.ra_in1k", "mobilenetv3_large_100_ra-f55367f5.pth",
          TIMM_BICUBIC, 75.77, "timm docs (huggingface.co/docs/timm/models/mobilenet-v3)", 5_483_032, 216_589_760, top5=92.54),
    _timm("mobilenetv3_small_050.timm_lamb", "mobilenetv3_small_050", Preset.TIMM, "mobilenetv3_small_050.lamb_in1k", "mobilenetv3_small_050_lambc-4b7bbe87.pth",
          TIMM_BICUBIC, 57.918, _TIMM_CSV, 1_593_224, 24_188_688),
    _timm("mobilenetv3_small_075.timm_lamb", "mobilenetv3_small_075", Preset.TIMM, "mobilenetv3_small_075.lamb_in1k", "mobilenetv3_small_075_lambc-384766db.pth",
          TIMM_BICUBIC, 65.284, _TIMM_CSV, 2_041_872, 43_399_344),
    _timm("mobilenetv3_small_100.timm_lamb", "mobilenetv3_small_100", Preset.TIMM, "mobilenetv3_small_100.lamb_in1k", "mobilenetv3_small_100_lamb-266a294c.pth",
          TIMM_BICUBIC, 67.636, _TIMM_CSV, 2_542_856, 56_510_400),
    _timm("mobilenetv3_large_075.tf", "mobilenetv3_large_075", Preset.PAPER, "tf_mobilenetv3_large_075.in1k", "tf_mobilenetv3_large_075-150ee8b0.pth",
          INCEPTION, 73.442, _TIMM_MI, 3_993_528, 154_560_624),
    _timm("mobilenetv3_large_100.tf", "mobilenetv3_large_100", Preset.PAPER, "tf_mobilenetv3_large_100.in1k", "tf_mobilenetv3_large_100-427764d5.pth",
          INCEPTION, 75.516, _TIMM_MI, 5_483_032, 216_589_760),
    _timm("mobilenetv3_large_minimal_100.tf", "mobilenetv3_large_minimal_100", Preset.PAPER, "tf_mobilenetv3_large_minimal_100.in1k", "tf_mobilenetv3_large_minimal_100-8596ae28.pth",
          INCEPTION, 72.244, _TIMM_MI, 3_924_288, 209_136_704),
    _timm("mobilenetv3_small_075.tf", "mobilenetv3_small_075", Preset.PAPER, "tf_mobilenetv3_small_075.in1k", "tf_mobilenetv3_small_075-da427f52.pth",
          INCEPTION, 65.718, _TIMM_MI, 2_041_872, 43_399_344),
    _timm("mobilenetv3_small_100.tf", "mobilenetv3_small_100", Preset.PAPER, "tf_mobilenetv3_small_100.in1k", "tf_mobilenetv3_small_100-37f49e2b.pth",
          INCEPTION, 67.918, _TIMM_MI, 2_542_856, 56_510_400),
    _timm("mobilenetv3_small_minimal_100.tf", "mobilenetv3_small_minimal_100", Preset.PAPER, "tf_mobilenetv3_small_minimal_100.in1k", "tf_mobilenetv3_small_minimal_100-922a7843.pth",
          INCEPTION, 62.898, _TIMM_MI, 2_044_736, 52_288_448),
    _keras("mobilenetv3_large_075.keras", "mobilenetv3_large_075", "MobileNetV3Large(alpha=0.75)", "large_224_0.75_float", "765b44a33ad4005b3ac83185abf1d0eb", 73.3, 3_993_528, 154_560_624),
    _keras("mobilenetv3_large_100.keras", "mobilenetv3_large_100", "MobileNetV3Large(alpha=1.0)", "large_224_1.0_float", "59e551e166be033d707958cf9e29a6a7", 75.6, 5_483_032, 216_589_760),
    _keras("mobilenetv3_large_minimal_100.keras", "mobilenetv3_large_minimal_100", "MobileNetV3Large(minimalistic=True)", "large_minimalistic_224_1.0_float",
           "675e7b876c45c57e9e63e6d90a36599c", 72.3, 3_924_288, 209_136_704),
    _keras("mobilenetv3_small_075.keras", "mobilenetv3_small_075", "MobileNetV3Small(alpha=0.75)", "small_224_0.75_float", "cb65d4e5be93758266aa0a7f2c6708b7", 65.4, 2_041_872, 43_399_344),
    _keras("mobilenetv3_small_100.keras", "mobilenetv3_small_100", "MobileNetV3Small(alpha=1.0)", "small_224_1.0_float", "8768d4c2e7dee89b9d02b2d03d65d862", 68.1, 2_542_856, 56_510_400),
    _keras("mobilenetv3_small_minimal_100.keras", "mobilenetv3_small_minimal_100", "MobileNetV3Small(minimalistic=True)", "small_minimalistic_224_1.0_float",
           "99cd97fb2fcdad2bf028eb838de69e37", 61.9, 2_044_736, 52_288_448),
)
# fmt: on

WEIGHTS: dict[str, WeightsEntry] = {e.name: e for e in _ENTRIES}


def list_weights(model: str | None = None) -> list[str]:
    """Names of all named weights, or of those for one registered model."""
    return sorted(n for n, e in WEIGHTS.items() if model is None or e.model == model)


def get_weights(name: str) -> WeightsEntry:
    """The entry of a named weights; an unknown name lists the closest names."""
    if name not in WEIGHTS:
        close = difflib.get_close_matches(name, list(WEIGHTS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown weights {name!r}.{hint} See mnv3.weights.list_weights() for all {len(WEIGHTS)} names.")
    return WEIGHTS[name]
