"""Where a training step of the default recipe spends its time (not CI); configurations interleaved.

    .venv/bin/python bench/profile_train_step.py --rounds 3 --steps 20 \\
        --config "avx512" --config "avx2:ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2"
    .venv/bin/python bench/profile_train_step.py --rounds 2 --steps 20 \\
        --config "cl:ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2" \\
        --config "nocl:ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2;channels_last=false"
    .venv/bin/python bench/profile_train_step.py --profile --steps 12 \\
        --config "avx2:ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2"
    .venv/bin/python bench/profile_train_step.py --rounds 4 --steps 20 \\
        --config "pad0:ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2,MNV3_EXPLICIT_PAD=0" \\
        --config "auto:ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2"
    .venv/bin/python bench/profile_train_step.py --layers --rounds 1 --steps 5 \\
        --config "avx2:ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2;threads=1" --config "avx512;threads=1"

A configuration is ``NAME[:ENV=VALUE,...][;FIELD=VALUE;...]``: environment variables for the child
process (``ATEN_CPU_CAPABILITY`` picks ATen's CPU kernels, ``ONEDNN_MAX_CPU_ISA`` oneDNN's, so an
AVX-512 machine can run the AVX2 code paths) and recipe overrides (any ``TrainConfig`` field, as
``--set``). Each configuration runs in a fresh process, round by round (A B A B ...), so machine noise
hits all alike. A child builds the recipe's data, network, optimizer and schedule with mnv3's own
functions and measures separately

* ``data``: the training loader of epoch 0 (per-sample torchvision.transforms.v2 pipeline), img/s;
* ``step``: forward + loss + backward + optimizer + scheduler on batches already loaded, img/s;
* ``loop``: both together, as the engine runs them (loader, then step), img/s.

``--profile`` adds a ``torch.profiler`` table of the step (self CPU time per operator, top 25).
``--layers`` adds, per symmetrically padded depthwise conv of the network, its forward + backward
time in training mode (best of 3 x 5 on the layer's input from one training batch) with the padded
conv and with ``F.pad`` + padding 0 (``ConvBnAct.explicit_pad``), and its eval forward time both ways.
``MNV3_EXPLICIT_PAD`` (0 / 1, unset = auto) sets that choice for the whole step; the machine line
gives the setting and how many depthwise convs it covers ("auto": those whose map is smaller
than the kernel, at run time). ``--ab-pad N`` times the step in one process with the depthwise
convs' ``explicit_pad`` switched "off" / "auto" step by step (N passes over the batches, the order
alternating), the comparison least disturbed by other jobs; "auto" there applies the small-map
rule whatever the CPU, so on AVX-512 it shows what the rule would cost.
Prints the machine line, the load average before and after each child, and the median per
configuration with its ratio to the first one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _parse_config(text: str) -> tuple[str, dict[str, str], dict[str, str]]:
    head, *sets = text.split(";")
    name, _, envs = head.partition(":")
    env = dict(e.split("=", 1) for e in envs.split(",") if e)
    overrides = dict(s.split("=", 1) for s in sets if s)
    return name, env, overrides


def machine_line() -> str:
    import torch

    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), [])
    isa = sorted(f for f in flags if f == "avx2" or f.startswith("avx512"))
    return (
        f"{model}, {os.cpu_count()} CPUs, flags {' '.join(isa)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, ATen capability {torch.backends.cpu.get_cpu_capability()}"
    )


def layer_table(model: torch.nn.Module, x: torch.Tensor) -> str:
    """Per symmetrically padded depthwise ConvBnAct: train fwd+bwd and eval fwd, padded conv vs F.pad + padding 0."""
    import torch

    from mnv3.blocks.layers import ConvBnAct

    convs = {n: m for n, m in model.named_modules() if isinstance(m, ConvBnAct) and m.conv.groups > 1 and m.conv.padding[0] > 0}
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: inputs.__setitem__(n, a[0].detach())) for n, m in convs.items()]
    model.train()
    model(x)
    for h in hooks:
        h.remove()

    def best_ms(m: ConvBnAct, x0: torch.Tensor, train: bool) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(5):
                if train:
                    m(x0.clone().requires_grad_()).sum().backward()
                else:
                    with torch.no_grad():
                        m(x0)
            best = min(best, (time.perf_counter() - t0) / 5)
        return 1e3 * best

    rows = [
        "| layer | kernel, stride | channels, map | train padded / F.pad (ms) | ratio | eval padded / F.pad (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for n, m in convs.items():
        x0, saved, ms = inputs[n], m.explicit_pad, {}
        for train in (True, False):
            m.train(train)
            for mode in ("off", "on"):
                m.explicit_pad = mode
                ms[train, mode] = best_ms(m, x0, train)
        m.explicit_pad = saved
        m.train()
        k, s = m.conv.kernel_size[0], m.conv.stride[0]
        rows.append(
            f"| {n} | {k}x{k}, {s} | {x0.shape[1]}, {x0.shape[-2]}x{x0.shape[-1]} | {ms[True, 'off']:.1f} / {ms[True, 'on']:.1f} "
            f"| {ms[True, 'off'] / ms[True, 'on']:.2f}x | {ms[False, 'off']:.2f} / {ms[False, 'on']:.2f} |"
        )
    return "\n".join(rows)


def ab_pad(model: torch.nn.Module, batches: list, step: Callable, rounds: int) -> dict[str, float]:
    """Median step time (ms) with every symmetric depthwise conv's ``explicit_pad`` "off" / "auto", alternating step by step."""
    from mnv3.blocks.layers import ConvBnAct

    convs = [m for m in model.modules() if isinstance(m, ConvBnAct) and m.conv.groups > 1 and m.conv.padding[0] > 0]
    times: dict[str, list[float]] = {"off": [], "auto": []}
    for r in range(rounds):
        for i, (x, y) in enumerate(batches):
            for mode in ("off", "auto") if (r + i) % 2 == 0 else ("auto", "off"):
                for m in convs:
                    m.explicit_pad = mode if m.conv.dilation[0] == 1 else "off"
                t0 = time.perf_counter()
                step(x, y)
                times[mode].append(1e3 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def child(args: argparse.Namespace) -> None:
    import torch
    from torch import nn

    from mnv3.blocks.layers import ConvBnAct, explicit_pad_setting
    from mnv3.train import data as D
    from mnv3.train.config import load_recipe, parse_set
    from mnv3.train.distributed import DistInfo
    from mnv3.train.engine import build_model, seed_everything
    from mnv3.train.evaluate import autocast
    from mnv3.train.optim import build_optimizer, build_scheduler

    cfg = load_recipe(args.recipe, parse_set([f"{k}={v}" for k, v in json.loads(args.overrides).items()]))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info, device = DistInfo(), torch.device("cpu")
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    data = D.build_data(cfg, info)
    t_build = time.perf_counter() - t0
    spe = D.steps_per_epoch(data.train, info, cfg.batch_size)
    model = build_model(cfg, len(data.classes), data.in_chans)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, spe, cfg)
    fwd = torch.compile(model) if cfg.compile else model
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with autocast(device, cfg.precision):
            logits = fwd(x)
        loss = criterion(logits.float(), y)
        loss.backward()
        bool(torch.isfinite(loss.detach()).item())
        opt.step()
        sched.step()

    n, b = args.steps, cfg.batch_size
    loader = D.train_loader(data.train, info, cfg, 0, 0, pin=False)
    it = iter(loader)
    t0 = time.perf_counter()
    batches = [next(it) for _ in range(n)]
    t_data = time.perf_counter() - t0
    t_warm = time.perf_counter()
    for x, y in batches[: args.warmup]:
        step(x, y)
    t_warm = time.perf_counter() - t_warm
    t0 = time.perf_counter()
    for x, y in batches:
        step(x, y)
    t_step = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        x, y = next(it)
        step(x, y)
    t_loop = time.perf_counter() - t0
    out = {
        "data_img_s": n * b / t_data,
        "step_img_s": n * b / t_step,
        "loop_img_s": n * b / t_loop,
        "step_ms": 1e3 * t_step / n,
        "data_ms": 1e3 * t_data / n,
        "warmup_s": t_warm,
        "build_data_s": t_build,
        "machine": machine_line()
        + f"; explicit_pad {explicit_pad_setting()} on {sum(isinstance(m, ConvBnAct) and m.explicit_pad != 'off' for m in model.modules())} convs",
    }
    if args.ab_pad:
        out["ab_pad_ms"] = ab_pad(model, batches, step, args.ab_pad)
    if args.layers:
        x = batches[0][0]
        out["layers"] = layer_table(model, x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for x, y in batches[: args.steps]:
                step(x, y)
        out["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=48)
    print("RESULT " + json.dumps(out), flush=True)


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def driver(args: argparse.Namespace) -> None:
    configs = [_parse_config(c) for c in args.config or ["default"]]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    for r in range(args.rounds):
        for name, env, overrides in configs:
            cmd = (
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--recipe",
                    args.recipe,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--overrides",
                    json.dumps(overrides),
                ]
                + (["--profile"] if args.profile else [])
                + (["--layers"] if args.layers else [])
                + (["--ab-pad", str(args.ab_pad)] if args.ab_pad else [])
            )
            before = load()
            p = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"{name}: failed\n{p.stderr[-3000:]}")
                continue
            res = json.loads(line[7:])
            res["load"] = f"{before} -> {load()}"
            results[name].append(res)
            print(
                f"round {r + 1} {name:>12}: data {res['data_img_s']:7.0f} img/s, step {res['step_img_s']:6.0f} img/s "
                f"({res['step_ms']:.0f} ms), loop {res['loop_img_s']:6.0f} img/s; warm-up {res['warmup_s']:.1f} s; load {res['load']}",
                flush=True,
            )
            if r == 0:
                print(f"  machine: {res['machine']}")
            if args.profile and "profile" in res:
                print(res["profile"])
            if "ab_pad_ms" in res:
                ab = res["ab_pad_ms"]
                print(
                    f"  explicit_pad A/B, alternating steps: off {ab['off']:.0f} ms, auto {ab['auto']:.0f} ms ({ab['off'] / ab['auto']:.2f}x)"
                )
            if "layers" in res:
                print(res["layers"])
    base = configs[0][0]
    med = {
        k: {m: statistics.median(x[m] for x in v) for m in ("data_img_s", "step_img_s", "loop_img_s")}
        for k, v in results.items()
        if v
    }
    print(f"\nmedians over {args.rounds} round(s), {args.steps} steps each; ratio to {base!r}")
    for k, m in med.items():
        rb = med.get(base)
        ratio = " ".join(f"{m[x] / rb[x]:.2f}" for x in ("data_img_s", "step_img_s", "loop_img_s")) if rb else "-"
        print(
            f"  {k:>12}: data {m['data_img_s']:7.0f}  step {m['step_img_s']:6.0f}  loop {m['loop_img_s']:6.0f} img/s  (ratios {ratio})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", help="NAME[:ENV=V,...][;FIELD=V;...] (repeatable; the first is the reference)")
    ap.add_argument("--recipe", default="fashion-mnist")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per phase")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--layers", action="store_true", help="time each padded depthwise conv with and without explicit padding")
    ap.add_argument(
        "--ab-pad", type=int, default=0, metavar="N", help="N passes over the batches alternating explicit_pad off / auto"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    child(args) if args.child else driver(args)


if __name__ == "__main__":
    main()
