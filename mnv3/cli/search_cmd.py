"""``mnv3 search netadapt`` / ``nas``: NetAdapt (paper §4.2) and platform-aware NAS (§4.1) on a latency lookup table."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from mnv3.cli.common import WEIGHTS_HELP


def _blocks(text: str) -> tuple[int, ...]:
    """``9-11`` or ``4,5,6`` (1-based block numbers)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--blocks takes 1-based block numbers such as 9-11 or 4,5,6, got {text!r}") from None
    return tuple(sorted(set(out)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="architecture search (paper §4): platform-aware NAS and NetAdapt on a latency lookup table",
        description=(
            "The search side of the paper (§4). `mnv3 search nas` searches MnasNet's factorized space around a seed for the "
            "best ACC x (LAT/TAR)^w (§4.1); `mnv3 search netadapt` adapts a network's widths to a latency target (§4.2)."
        ),
    )
    ssub = p.add_subparsers(dest="search_command", metavar="METHOD")
    n = ssub.add_parser(
        "netadapt",
        help="shrink expansion and bottleneck widths until the LUT-predicted latency reaches a target (§4.2)",
        description=(
            "NetAdapt as MobileNetV3 runs it (§4.2): every iteration proposes, per expansion layer and per residual group, the "
            "smallest width cut that the latency table predicts saves delta; each proposal starts from the current weights "
            "truncated to the largest-L1 channels, is fine-tuned for T steps and scored on a held-out part of the training set; "
            "the one with the largest dAcc/|dLatency| is kept, until the predicted latency reaches --target. The output folder "
            "holds spec.yaml, model.safetensors, history.jsonl, netadapt.png and the resumable state (docs/search.md)."
        ),
    )
    n.add_argument("--model", default=None, metavar="NAME|SPEC", help="the seed: a registered name or a spec file (default: the --weights' network)")
    n.add_argument("--weights", default=None, metavar="SOURCE", help=f"the seed's weights: {WEIGHTS_HELP} (default: random initialisation)")
    n.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default) or an ImageFolder root; proposals are scored on --val-split of its TRAINING images")
    n.add_argument("--data-dir", default=None, help="where the Fashion-MNIST files are")
    n.add_argument("--lut", required=True, metavar="FILE", help="the latency table (`mnv3 lut build`); missing entries are measured on this machine")
    n.add_argument("--runtime", default=None, choices=["eager", "onnxruntime", "executorch", "litert"], help="runtime the table must be for (default: the table's)")
    n.add_argument("--threads", type=int, default=None, help="runtime threads the table must be for (default: the table's)")
    n.add_argument("--resolution", type=int, default=None, help="input size for latency and fine-tuning (default: the table's, when it holds one)")
    n.add_argument("--target", required=True, help="latency to reach: a fraction of the seed's prediction (0.75x) or milliseconds (12ms)")
    n.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (state, spec, weights, history, figure)")
    n.add_argument("--steps", type=int, default=3, metavar="T", help="fine-tuning steps per proposal (default 3; the paper uses 10000)")
    n.add_argument("--bn-batches", type=int, default=0, help="recompute BN statistics over this many training batches before scoring (default 0: off)")
    n.add_argument("--final-steps", type=int, default=0, help="fine-tune the adapted network this many steps at the end (default 0; the paper retrains from scratch)")
    n.add_argument("--delta", type=float, default=0.01, help="latency each proposal must save, as a fraction of the seed's (default 0.01, §4.2)")
    n.add_argument("--delta-decay", type=float, default=1.0, help="delta is multiplied by this every iteration (NetAdapt's schedule; default 1.0)")
    n.add_argument("--criterion", choices=["ratio", "accuracy"], default="ratio", help="ratio: largest dAcc/|dLatency| (§4.2, default); accuracy: smallest accuracy drop (NetAdapt)")
    n.add_argument("--step", type=int, default=8, help="channels per width step (default 8, make_divisible's divisor)")
    n.add_argument("--min-width", type=int, default=8, help="smallest width a layer may shrink to (default 8)")
    n.add_argument("--max-iterations", type=int, default=None, help="stop after this many iterations even above the target")
    n.add_argument("--blocks", type=_blocks, default=None, help="search only these blocks (1-based, e.g. 9-11); default all")
    n.add_argument("--executor", choices=["local", "ray"], default="local", help="where proposals are fine-tuned: this process (default) or Ray tasks")
    n.add_argument("--ray-address", default=None, metavar="ADDR", help="the Ray cluster for --executor ray (default: start a local one)")
    n.add_argument("--resume", action="store_true", help="continue the search in -o from its last finished iteration")
    n.add_argument("--val-split", type=float, default=0.1, help="fraction of the training images held out for scoring (default 0.1)")
    n.add_argument("--train-subset", type=int, default=None, help="fine-tune on only the first N remaining training images")
    n.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch size (default 64)")
    n.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default 0.01, SGD with momentum, constant)")
    n.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    n.add_argument("--deterministic", action="store_true", help="deterministic kernels: a resumed search ends exactly as an uninterrupted one")
    n.add_argument("--train-threads", type=int, default=None, help="torch threads for fine-tuning")
    n.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any fine-tuning config field (repeatable; see `mnv3 train --print-config`)")
    n.add_argument("--lut-runs", type=int, default=30, help="timed calls per missing table entry and repeat (default 30)")
    n.add_argument("--lut-repeats", type=int, default=3, help="interleaved repeats per missing table entry (default 3)")
    n.add_argument("--quiet", action="store_true", help="no per-iteration log")
    n.set_defaults(func=run_netadapt)
    _register_nas(ssub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _config(args: argparse.Namespace, resolution: int) -> Any:
    from mnv3.search.netadapt import finetune_config
    from mnv3.train.config import parse_set, validate

    kw: dict[str, Any] = {"data": args.data, "data_dir": args.data_dir, "val_split": args.val_split, "seed": args.seed, "resolution": resolution}
    for name in ("train_subset", "batch_size", "lr"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if args.deterministic:
        kw["deterministic"] = True
    if args.train_threads is not None:
        kw["threads"] = args.train_threads
    kw.update(parse_set(args.set))
    cfg = validate(finetune_config(**kw))
    if cfg.val_split <= 0:
        raise ValueError("--val-split must be > 0: the search scores networks on held-out TRAINING images, never on the test split")
    return cfg


def _seed_model(args: argparse.Namespace, cfg: Any):
    from mnv3.models.registry import create_model, is_registered, resolve_spec
    from mnv3.train.distributed import DistInfo
    from mnv3.train.engine import build_task
    from mnv3.train.task_data import build_task_data
    from mnv3.weights.resolve import load_model

    data = build_task_data(cfg, DistInfo())
    classes, in_chans = build_task(cfg, data.classes).num_outputs, data.in_chans
    if args.weights is not None:
        return load_model(args.weights, model=args.model, num_classes=classes, in_chans=in_chans)
    if args.model is None:
        raise ValueError("give the seed network: --model NAME|SPEC and / or --weights SOURCE")
    warnings.warn(f"no --weights given: the seed {args.model} starts from random weights", UserWarning, stacklevel=2)
    import torch

    torch.manual_seed(cfg.seed)  # the same random seed network every time
    if is_registered(args.model):
        return create_model(args.model, num_classes=classes, in_chans=in_chans)
    return create_model(resolve_spec(args.model).replace(num_classes=classes, in_chans=in_chans))  # a spec file


def run_netadapt(args: argparse.Namespace) -> int:
    from mnv3.cli.lut_cmd import _resolution
    from mnv3.search.lut import LatencyTable, Measurer, Target, TimingPlan
    from mnv3.search.netadapt import NetAdapt, NetAdaptSettings, make_executor

    with LatencyTable(args.lut) as stored:
        res = _resolution(stored, args.resolution)
        runtime = args.runtime or stored.target.runtime
        threads = args.threads if args.threads is not None else stored.target.threads
    settings = NetAdaptSettings(
        target=args.target, resolution=res, delta=args.delta, delta_decay=args.delta_decay, steps=args.steps, final_steps=args.final_steps,
        criterion=args.criterion, step=args.step, min_width=args.min_width, max_iterations=args.max_iterations, blocks=args.blocks,
        bn_batches=args.bn_batches,
    )  # fmt: skip
    if args.executor != "ray" and args.ray_address is not None:
        raise ValueError("--ray-address applies to --executor ray")
    cfg = _config(args, res)
    log = (lambda m: None) if args.quiet else (lambda m: print(f"mnv3 search: {m}", file=sys.stderr))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="torch")  # exporter chatter while missing entries are measured
        # the table must be for the runtime, threads and device asked for (LutMismatchError otherwise)
        with LatencyTable(args.lut, Target.here(runtime, threads)) as table:
            measurer = Measurer(runtime, threads, TimingPlan(runs=args.lut_runs, repeats=args.lut_repeats))
            model = _seed_model(args, cfg)
            search = NetAdapt(model, cfg, table, settings, args.output, executor=None, measurer=measurer, log=log)
            if not args.resume or not (search.out / "state.pt").exists():
                search.check()  # bad targets and inconsistent groups fail here, before any work
            search.executor = make_executor(args.executor, args.ray_address)
            result = search.run(resume=args.resume)
    print(
        f"{result.out_dir}: {result.spec.name}: predicted {result.seed_latency_ms:.3f} -> {result.latency_ms:.3f} ms "
        f"(target {result.target_ms:.3f}) in {result.iterations} iteration(s), held-out accuracy {100 * result.accuracy:.2f} %; "
        f"{result.message}; wrote {', '.join(p.name for p in result.files)}"
    )
    return 0 if result.reached or "max-iterations" in result.message else 1


def _register_nas(ssub: argparse._SubParsersAction) -> None:
    n = ssub.add_parser(
        "nas",
        help="platform-aware NAS (§4.1): sample MnasNet's factorized space around a seed, reward ACC x (LAT/TAR)^w",
        description=(
            "Platform-aware NAS as MobileNetV3 runs it (§4.1, MnasNet): every sample is a choice per stage of the seed (blocks "
            "relative to the seed, width multiplier, expansion ratio, kernel, SE, activation); its latency is the table's "
            "prediction, its accuracy a proxy training of --proxy-steps steps scored on held-out TRAINING images, its reward "
            "ACC x (LAT/TAR)^w. Strategies: an LSTM controller trained with REINFORCE, random search, regularized evolution. The "
            "output folder holds samples.jsonl, best_spec.yaml, pareto.png and the resumable state (docs/search.md)."
        ),
    )
    n.add_argument("--space", default="mobilenetv3", choices=["mobilenetv3", "mnasnet"], help="mobilenetv3 (default: MnasNet's space with h-swish) or mnasnet (ReLU only)")
    n.add_argument("--seed-model", default="mobilenetv3_large_100", metavar="NAME|SPEC", help="the network the space is built around (default mobilenetv3_large_100)")
    n.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default) or an ImageFolder root; samples are scored on --val-split of its TRAINING images")
    n.add_argument("--data-dir", default=None, help="where the Fashion-MNIST files are")
    n.add_argument("--lut", required=True, metavar="FILE", help="the latency table (`mnv3 lut build`); missing entries are measured on this machine")
    n.add_argument("--runtime", default=None, choices=["eager", "onnxruntime", "executorch", "litert"], help="runtime the table must be for (default: the table's)")
    n.add_argument("--threads", type=int, default=None, help="runtime threads the table must be for (default: the table's)")
    n.add_argument("--resolution", type=int, default=None, help="input size for latency and proxy training (default: the table's, when it holds one)")
    n.add_argument("--target-latency", required=True, metavar="TAR", help="TAR of the reward: milliseconds (1.5ms) or a fraction of the seed's prediction (0.9x)")
    n.add_argument("--w", type=float, default=None, help="the reward's exponent (<= 0; default -0.07 for Large / MnasNet seeds, -0.15 for Small, §4.1)")
    n.add_argument("--samples", type=int, default=100, metavar="N", help="networks to sample and score (default 100)")
    n.add_argument("--proxy-steps", type=int, default=50, metavar="S", help="proxy training steps per sample, from scratch (default 50)")
    n.add_argument("--bn-batches", type=int, default=20, help="recompute BN statistics over this many training batches before scoring (default 20; 0: off)")
    n.add_argument("--strategy", choices=["controller", "random", "evolution"], default="controller", help="LSTM controller with REINFORCE (default), random search or regularized evolution")
    n.add_argument("--batch", type=int, default=1, help="samples per strategy step, scored together by the executor (default 1)")
    n.add_argument("--population", type=int, default=16, help="evolution: population size P (default 16)")
    n.add_argument("--tournament", type=int, default=4, help="evolution: tournament size S (default 4)")
    n.add_argument("--controller-lr", type=float, default=0.005, help="controller: Adam learning rate (default 0.005)")
    n.add_argument("--baseline-decay", type=float, default=0.9, help="controller: moving-average decay of the reward baseline (default 0.9)")
    for opt, example in (("depths", "-1,0,1"), ("widths", "0.75,1.0,1.25"), ("expansions", "3,6,seed"), ("kernels", "3,5"), ("se", "off,on"), ("acts", "relu,hswish")):
        n.add_argument(f"--{opt}", default=None, metavar="LIST", help=f"space option: comma-separated values (default {example})")
    n.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (state, samples.jsonl, best_spec.yaml, pareto.png)")
    n.add_argument("--executor", choices=["local", "ray"], default="local", help="where samples are trained: this process (default) or Ray tasks")
    n.add_argument("--ray-address", default=None, metavar="ADDR", help="the Ray cluster for --executor ray (default: start a local one)")
    n.add_argument("--resume", action="store_true", help="continue the search in -o from its last finished sample")
    n.add_argument("--val-split", type=float, default=0.1, help="fraction of the training images held out for scoring (default 0.1)")
    n.add_argument("--train-subset", type=int, default=None, help="proxy-train on only the first N remaining training images")
    n.add_argument("--batch-size", type=int, default=None, help="proxy-training batch size (default 64)")
    n.add_argument("--lr", type=float, default=None, help="proxy-training learning rate (default 0.01, SGD with momentum, constant)")
    n.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    n.add_argument("--deterministic", action="store_true", help="deterministic kernels: a resumed search ends exactly as an uninterrupted one")
    n.add_argument("--train-threads", type=int, default=None, help="torch threads for proxy training")
    n.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any proxy-training config field (repeatable)")
    n.add_argument("--lut-runs", type=int, default=30, help="timed calls per missing table entry and repeat (default 30)")
    n.add_argument("--lut-repeats", type=int, default=3, help="interleaved repeats per missing table entry (default 3)")
    n.add_argument("--quiet", action="store_true", help="no progress bar or per-sample log")
    n.set_defaults(func=run_nas)


def _nas_seed(args: argparse.Namespace, cfg: Any) -> Any:
    """The seed spec with the data's classes and input channels (a registered name or a spec file)."""
    from mnv3.models.registry import build_spec, is_registered, resolve_spec
    from mnv3.train.distributed import DistInfo
    from mnv3.train.engine import build_task
    from mnv3.train.task_data import build_task_data

    data = build_task_data(cfg, DistInfo())
    classes, in_chans = build_task(cfg, data.classes).num_outputs, data.in_chans
    if is_registered(args.seed_model):
        return build_spec(args.seed_model, num_classes=classes, in_chans=in_chans)
    return resolve_spec(args.seed_model).replace(num_classes=classes, in_chans=in_chans)


def run_nas(args: argparse.Namespace) -> int:
    from mnv3.cli.lut_cmd import _resolution
    from mnv3.search.lut import LatencyTable, Measurer, Target, TimingPlan
    from mnv3.search.nas import NAS, ControllerSettings, NASSettings, default_w, space_options
    from mnv3.search.netadapt import LatencyTarget, make_executor

    # every bad option is a one-line error here, before any training
    options = space_options(args.space, **{k: getattr(args, k) for k in ("depths", "widths", "expansions", "kernels", "se", "acts")})
    LatencyTarget.parse(args.target_latency)
    if args.executor != "ray" and args.ray_address is not None:
        raise ValueError("--ray-address applies to --executor ray")
    with LatencyTable(args.lut) as stored:
        res = _resolution(stored, args.resolution)
        runtime = args.runtime or stored.target.runtime
        threads = args.threads if args.threads is not None else stored.target.threads
    controller = ControllerSettings(lr=args.controller_lr, baseline_decay=args.baseline_decay)
    log = (lambda m: None) if args.quiet else (lambda m: print(f"mnv3 search: {m}", file=sys.stderr))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="torch")  # exporter chatter while missing entries are measured
        with LatencyTable(args.lut, Target.here(runtime, threads)) as table:  # LutMismatchError for another device / runtime
            cfg = _config(args, res)
            seed = _nas_seed(args, cfg)
            settings = NASSettings(
                target=args.target_latency, w=default_w(seed) if args.w is None else args.w, samples=args.samples, proxy_steps=args.proxy_steps,
                strategy=args.strategy, resolution=res, space=args.space, batch=args.batch, population=args.population,
                tournament=args.tournament, seed=args.seed, bn_batches=args.bn_batches, controller=controller,
            )  # fmt: skip
            measurer = Measurer(runtime, threads, TimingPlan(runs=args.lut_runs, repeats=args.lut_repeats))
            search = NAS(seed, cfg, table, settings, args.output, options=options, measurer=measurer, log=log, progress=not args.quiet)
            if not args.resume or not (search.out / "state.pt").exists():
                search.check()  # an unreachable target fails here, before any training
            search.executor = make_executor(args.executor, args.ray_address)
            result = search.run(resume=args.resume)
    b = result.best
    print(
        f"{result.out_dir}: {len(result.samples)} sample(s) ({settings.strategy}); best reward {b['reward']:.4f}: {b['name']} predicted "
        f"{b['latency_ms']:.3f} ms (target {result.target_ms:.3f}), held-out accuracy {100 * b['accuracy']:.2f} %; "
        f"wrote {', '.join(p.name for p in result.files)}"
    )
    return 0
