"""int8 accuracy on the Fashion-MNIST test set: fp32 vs post-training int8 (each runtime) vs QAT int8.

Takes a float model trained by ``mnv3 train`` (its .safetensors carries spec and preprocessing):

1. fp32 accuracy in PyTorch on all 10,000 test images;
2. post-training int8 (per-channel weights, ``--calibration-images`` training images) exported
   exactly as ``mnv3 export --int8`` does, run in ExecuTorch-XNNPACK / ONNX Runtime / LiteRT;
3. quantization-aware fine-tuning: ``mnv3.deploy.quantize.prepare_qat`` on the trained weights,
   trained by ``mnv3 train``'s own loop (``mnv3.train.engine.train``, the recipe with ``--qat-*``
   overrides), converted (``convert_qat``) and lowered to ExecuTorch-XNNPACK int8, then run there.

    .venv/bin/python bench/latency_int8_accuracy.py --weights runs/deploy/fmnist-fp32/model.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mnv3.deploy.calibration import calibration_images, labelled_set
from mnv3.deploy.export import build_artifact, load_predictor
from mnv3.deploy.runtimes import FILE_SUFFIX, Format, available
from mnv3.weights import model_from_file


def accuracy(logits: np.ndarray, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels.numpy()).mean())


@torch.no_grad()
def torch_logits(model, images: torch.Tensor) -> np.ndarray:
    return np.concatenate([model(images[i : i + 500]).float().numpy() for i in range(0, len(images), 500)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="float model from `mnv3 train` (model.safetensors)")
    ap.add_argument("--formats", nargs="+", default=["executorch", "onnx", "litert"], choices=["executorch", "onnx", "litert"])
    ap.add_argument("--calibration-images", type=int, default=512)
    ap.add_argument("--qat-epochs", type=float, default=1.0)
    ap.add_argument("--qat-lr", type=float, default=0.01, help="at the recipe's lr_base_batch (256)")
    ap.add_argument("--no-qat", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench/int8_accuracy.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, meta = model_from_file(args.weights)
    model.eval()
    spec, pp = model.spec, meta.preprocessing
    res = pp.crop
    test = labelled_set("fashion-mnist", pp, spec.in_chans)
    calib = calibration_images("fashion-mnist", pp, spec.in_chans, args.calibration_images)
    example = test.images[:1]
    result: dict = {"weights": str(args.weights), "test": test.name, "resolution": res, "calibration_images": len(calib)}
    fp32 = accuracy(torch_logits(model, test.images), test.labels)
    result["fp32_torch"] = fp32
    print(f"fp32 PyTorch: {100 * fp32:.2f} % on {test.name}", flush=True)
    rows = [("fp32", "PyTorch eager", fp32)]
    with tempfile.TemporaryDirectory(prefix="mnv3-int8acc-") as tmp:
        for fmt in args.formats:
            if not available(fmt):
                print(f"skip {fmt}: not installed", file=sys.stderr)
                continue
            path = Path(tmp) / f"ptq{FILE_SUFFIX[Format(fmt)]}"
            t = time.perf_counter()
            build_artifact(model, fmt, path, example, int8=True, calibration=calib, workdir=Path(tmp))
            pred = load_predictor(fmt, path, threads=args.threads)
            acc = accuracy(pred.predict_batches(test.images, 1), test.labels)
            result[f"ptq_{fmt}"] = acc
            rows.append(("int8 PTQ", fmt, acc))
            print(
                f"int8 PTQ {fmt}: {100 * acc:.2f} % (drop {100 * (fp32 - acc):.2f} points; {time.perf_counter() - t:.0f} s)",
                flush=True,
            )
        if not args.no_qat:
            from mnv3.deploy.executorch_backend import ExecuTorchPredictor, lower_to_xnnpack
            from mnv3.deploy.quantize import convert_qat, prepare_qat
            from mnv3.train.config import load_recipe
            from mnv3.train.engine import train

            cfg = load_recipe(
                "fashion-mnist",
                {
                    "epochs": args.qat_epochs,
                    "lr": args.qat_lr,
                    "warmup_epochs": 0.0,
                    "resolution": res,
                    "output": str(Path(tmp) / "qat-runs"),
                    "name": "qat",
                    "progress": False,
                    "tensorboard": False,
                    "threads": args.threads,
                    "channels_last": False,
                },
            )
            qat = prepare_qat(model, (calib[:2],))
            t = time.perf_counter()
            run = train(cfg, model=qat)
            result["qat_train"] = {
                "status": run.status,
                "epochs": args.qat_epochs,
                "lr": args.qat_lr,
                "final": run.final,
                "wall_s": run.wall_s,
            }
            qat.eval()
            fake = accuracy(torch_logits(qat, test.images), test.labels)
            data, _ = lower_to_xnnpack(convert_qat(qat), example, None)
            acc = accuracy(ExecuTorchPredictor(data, args.threads).predict_batches(test.images, 1), test.labels)
            result["qat_fake_quant_torch"] = fake
            result["qat_executorch"] = acc
            rows.append(("int8 QAT (fake-quant, PyTorch)", "PyTorch", fake))
            rows.append(("int8 QAT", "executorch", acc))
            print(
                f"int8 QAT executorch: {100 * acc:.2f} % (drop {100 * (fp32 - acc):.2f} points; fake-quant {100 * fake:.2f} %; {time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    print("\n| model | runtime | top-1 % | drop vs fp32 (points) |\n|---|---|---|---|")
    for what, rt, acc in rows:
        print(f"| {what} | {rt} | {100 * acc:.2f} | {100 * (fp32 - acc):+.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
