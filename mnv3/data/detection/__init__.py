"""Detection data (paper §6.3, SSDLite): fashion scenes, COCO and Pascal VOC readers, box-aware v2 transforms."""

from mnv3.data.detection.coco import CocoDetection
from mnv3.data.detection.common import DetectionDataset, Skipped, detection_collate
from mnv3.data.detection.scenes import ensure_fashion_scenes, generate_fashion_scenes, read_manifest
from mnv3.data.detection.transforms import detection_eval_transform, detection_train_transform, per_box_tensors
from mnv3.data.detection.voc import VOC_CLASSES, VOCDetection

__all__ = [
    "VOC_CLASSES",
    "CocoDetection",
    "DetectionDataset",
    "Skipped",
    "VOCDetection",
    "detection_collate",
    "detection_eval_transform",
    "detection_train_transform",
    "ensure_fashion_scenes",
    "generate_fashion_scenes",
    "per_box_tensors",
    "read_manifest",
]
