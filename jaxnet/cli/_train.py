"""``jaxnet train mnist``: check the flags, run ``jaxnet.mnist.train_mnist``, report.

Everything the flags alone can tell is checked before training (outputs,
data folder, checkpoint folder, the split, the batch and the model's memory);
``jaxnet.mnist`` is looked up at call time, so tests can replace its functions.
"""

from __future__ import annotations

import os
import time

from ._flags import TRAIN_FIELDS, FlagError, as_flag_error
from ._outputs import output_path, plot, plot_format, results_json, write


def run(args) -> int:
    """Train as the flags say; print the summary; write ``--json``/``--plot``."""
    from .. import devices, mnist, parallel
    from ..mnist._config import layer_sizes

    _check_environment()
    _check_momentum(args)
    _enable_compile_cache(args)
    try:
        config = mnist.RECIPES[args.recipe].with_updates(
            **{name: getattr(args, name) for name in TRAIN_FIELDS})
        mesh = parallel.setup_mesh(args.devices, coordinator_address=args.coordinator_address,
                                   num_processes=args.num_processes, process_id=args.process_id,
                                   timeout_s=args.init_timeout, cluster=args.cluster)
    except (ValueError, TypeError) as e:
        raise as_flag_error(e) from None
    except parallel.DistributedError as e:  # a taken port names its flag
        raise (as_flag_error(e) if str(e).startswith("coordinator_address:") else e) from None
    # Every process runs its checks, then all learn each other's outcome and settings: a
    # failure or a difference stops every process with one line (parallel.check_together).
    try:
        if mesh is not None:
            _check_batch_size(config, mesh)
        outputs = _check_before_training(args) if parallel.is_primary() else {}
        if parallel.is_primary():  # process 0 checks, prints and writes the outputs
            print(f"jaxnet: MNIST MLP {'-'.join(map(str, layer_sizes(config)))}, recipe "
                  f"{args.recipe}: {config.optimizer} lr {config.lr} ({config.schedule}), "
                  f"batch {config.batch_size}, {config.epochs} epochs, validation split "
                  f"{config.val_split}, seed {config.seed}; {devices.describe()}"
                  + ("" if mesh is None else f"; {parallel.describe(mesh)}"), flush=True)
        data = mnist.load_data(args.data_dir, args.source)
        _check_fits(config, len(data[0][0]), len(data[1][0]), 1 if mesh is None else mesh.size)
    except Exception as e:  # noqa: BLE001  # raised again, here and as one line in the others
        parallel.check_together(failure=e)
    if mesh is not None:
        parallel.check_together(_settings(args, config, data))
    args.training_starts()
    if not parallel.is_primary():
        with parallel.peer_failures():
            mnist.train_mnist(config, data=data, mesh=mesh, checkpoint_dir=args.checkpoint_dir,
                              resume=args.resume, check_finite=args.check_finite,
                              progress=False, log=None)
        return 0
    with parallel.peer_failures():
        result = mnist.train_mnist(config, data=data, checkpoint_dir=args.checkpoint_dir,
                                   resume=args.resume, keep=args.keep,
                                   check_finite=args.check_finite, progress=args.progress,
                                   log=lambda line: print(line, flush=True), mesh=mesh)
    elapsed = time.perf_counter() - args.start
    _report(result, elapsed)
    if "json" in outputs:
        data = results_json(result, elapsed)
        write("--json", args.json, outputs["json"], args.overwrite, lambda f: f.write(data))
        print(f"wrote {args.json}")
    if "plot" in outputs:
        write("--plot", args.plot, outputs["plot"], args.overwrite,
              lambda f: plot(result["history"], f, args.plot_format))
        print(f"wrote {args.plot}")
    return 0


def _enable_compile_cache(args) -> None:
    """``--compile-cache`` (else ``$JAXNET_COMPILATION_CACHE``), before anything compiles."""
    from .. import _compile_cache

    try:
        _compile_cache.enable(args.compile_cache, again=True)
    except ValueError as e:
        raise FlagError(str(e)) from None


def _check_batch_size(config, mesh) -> None:
    from .. import parallel

    try:
        parallel.check_batch_size(config.batch_size, mesh)
    except (ValueError, TypeError) as e:
        raise as_flag_error(e) from None


def _settings(args, config, data) -> dict:
    """What every process of a run must agree on, by flag: the configuration, the data
    (its content's digest, not the folder's name), and what decides the steps."""
    import hashlib

    import numpy as np

    from .. import __version__
    from ._flags import flag

    digest = hashlib.blake2b(digest_size=8)
    for array in (a for pair in data for a in pair):
        digest.update(repr((array.shape, array.dtype.str)).encode())
        digest.update(np.ascontiguousarray(array).data)
    (x_train, _), (x_test, _) = data
    return {"--recipe": args.recipe,
            **{flag(k) if k in TRAIN_FIELDS else f"{k} (of --recipe)": v
               for k, v in config.to_json().items()},
            "--data-dir": f"{len(x_train)} training and {len(x_test)} test images, content "
                          f"{digest.hexdigest()}",
            "--devices": args.devices, "--no-check-finite": not args.check_finite,
            "jaxnet version": __version__}


def _report(result: dict, elapsed: float) -> None:
    """The test accuracy and the timings (this run's, and all epochs' after a resume)."""
    print(f"test accuracy: {result['test_accuracy']:.4f}", flush=True)
    train_s = result["train_seconds"]
    total_s = result.get("train_seconds_total", train_s)
    resumed = any(e.get("run", 0) != result["history"][-1].get("run", 0)
                  for e in result["history"])
    over_all = (f" ({total_s:.2f}s over all {len(result['history'])} epochs, before the resume "
                f"included)" if resumed else "")
    print(f"compile {result['compile_seconds']:.2f}s, training {train_s:.2f}s in this run"
          f"{over_all}, time to result {elapsed:.2f}s; "
          f"params fingerprint {result['params_fingerprint'][:16]}", flush=True)


def _check_before_training(args) -> dict:
    """Fail now, not after training, on anything the flags alone can tell."""
    from .. import _fs

    outputs = {}
    for name in ("json", "plot"):
        value = getattr(args, name)
        if value is not None:
            outputs[name] = output_path(f"--{name}", value, args.overwrite)
    if "plot" in outputs:
        args.plot_format = plot_format(args.plot)
    if len(outputs) == 2 and os.path.realpath(outputs["json"]) == \
            os.path.realpath(outputs["plot"]):
        raise FlagError(f"--json and --plot: both name {args.json}; give them different files")
    if args.data_dir is not None:
        try:
            data_dir, _ = _fs.user_path(args.data_dir, name="--data-dir", what="folder")
        except ValueError as e:
            raise FlagError(str(e)) from None
        if not data_dir.exists():
            raise FlagError(f"--data-dir: {args.data_dir} does not exist; expected a folder "
                            f"with the four IDX files (jaxnet creates only its own data folder)")
        if not data_dir.is_dir():
            raise FlagError(f"--data-dir: {args.data_dir} is not a folder")
        if not os.access(data_dir, os.R_OK | os.X_OK):
            raise FlagError(f"--data-dir: {args.data_dir} is not readable (permission denied); "
                            f"give read access to it or choose another --data-dir")
    if args.resume and not args.checkpoint_dir:
        raise FlagError("--resume: needs --checkpoint-dir")
    if args.checkpoint_dir is not None:
        from .. import checkpoint

        _check_checkpoint_paths(args, outputs)

        try:
            checkpoint.check_new_run(args.checkpoint_dir, resume=args.resume,
                                     name="--checkpoint-dir", resume_name="--resume")
        except (checkpoint.CheckpointError, ValueError) as e:  # ValueError: not UTF-8
            raise FlagError(str(e)) from None
    return outputs


def _check_environment() -> None:
    """``XLA_FLAGS`` that leave JAX no CPU device fail here, not in a JAX traceback."""
    import re

    found = re.findall(r"--xla_force_host_platform_device_count=(\S*)",
                       os.environ.get("XLA_FLAGS", ""))
    if found and not (found[-1].isdigit() and int(found[-1]) > 0):
        raise FlagError(f"XLA_FLAGS: --xla_force_host_platform_device_count expected a positive "
                        f"int, got {found[-1]}; remove it from XLA_FLAGS (use --devices N to "
                        f"split the CPU)")


def _check_momentum(args) -> None:
    """``--momentum`` with Adam would be silently ignored: refused, naming the flags."""
    from .. import mnist

    optimizer = args.optimizer or mnist.RECIPES[args.recipe].optimizer
    if args.momentum is not None and 0 < args.momentum < 1 and optimizer != "sgd":
        raise FlagError(f"--momentum: expected 0 with --optimizer {optimizer} (Adam has no "
                        f"momentum term), got {args.momentum}; pass --optimizer sgd to train "
                        f"with momentum")


def _check_checkpoint_paths(args, outputs: dict) -> None:
    """The checkpoint folder is neither ``--json``/``--plot`` nor inside one of them (its
    encoding is ``check_new_run``'s check, the one ``fit`` makes)."""
    from .. import _fs

    try:
        folder, _ = _fs.user_path(args.checkpoint_dir, name="--checkpoint-dir", what="folder")
    except ValueError as e:
        raise FlagError(str(e)) from None
    real = os.path.realpath(folder)
    for name, path in outputs.items():
        out = os.path.realpath(path)
        if real == out or real.startswith(out.rstrip(os.sep) + os.sep):
            raise FlagError(f"--{name}: {getattr(args, name)} is the --checkpoint-dir folder "
                            f"(or holds it); give them different paths")


def _memory_bytes() -> int | None:
    """Memory free for the run: the device's limit on a GPU, the host's available RAM on CPU."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # not every backend reports it
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_needed(config, n_images: int, n_test: int, n_devices: int = 1) -> dict[str, int]:
    """What one device holds while training, in bytes, by the flag that sets it (arithmetic).

    Args:
      config: the run's ``MnistConfig``.
      n_images, n_test: training (before the split) and test images.
      n_devices: devices training together; each holds the parameters and the
        optimizer state, one global batch, and its share of the data set (the
        rows are split over the devices); on CPU they share the host's memory.

    Returns:
      ``{"--hidden": …, "--batch-size": …, "--devices": …}``: the parameters,
      gradients and optimizer state; the largest batch's activations; the data.

    >>> from jaxnet.mnist import MnistConfig
    >>> need = memory_needed(MnistConfig(), 60_000, 10_000)
    >>> need["--hidden"], need["--devices"]
    (8573088, 219800000)
    >>> memory_needed(MnistConfig(), 60_000, 10_000, n_devices=8)["--devices"]
    27475000
    """
    from ..mnist._config import layer_sizes, param_count

    moments = 2 if config.optimizer == "adam" else (1 if config.momentum else 0)
    weights = 4 * (2 + moments) * param_count(config)  # float32 params, grads, moments
    # float32 inputs, activations and their gradients, for the padded last batch too
    batch = 4 * 3 * config.batch_size * sum(layer_sizes(config))
    # float32 pixels and int32 labels on the device(s), each device its share of the rows
    data = -(-(n_images + n_test) // n_devices) * (4 * 784 + 4)
    return {"--hidden": weights, "--batch-size": batch, "--devices": data}


def _check_fits(config, n_images: int, n_test: int = 0, n_devices: int = 1) -> None:
    """The split, the batch, the schedule and the memory fit the data (before training)."""
    import jax

    from ..mnist._config import INT32_MAX, layer_sizes

    if config.val_split >= n_images:
        raise FlagError(f"--val-split: expected fewer than the {n_images} training images, "
                        f"got {config.val_split}")
    n_train = n_images - config.val_split
    if config.batch_size > n_train:
        held = f" ({n_images} minus --val-split {config.val_split})" if config.val_split else ""
        raise FlagError(f"--batch-size: expected at most the {n_train} training images{held}, "
                        f"got {config.batch_size}")
    steps = -(-n_train // config.batch_size)
    total = steps * config.epochs
    if total > INT32_MAX:
        raise FlagError(f"--epochs: expected at most {INT32_MAX} optimizer steps in all (the "
                        f"step counter is int32), got {total} ({config.epochs} x {steps}); "
                        f"pass fewer --epochs or a larger --batch-size")
    if config.schedule == "warmup_cosine" and total < 2:
        raise FlagError(f"--schedule warmup_cosine: expected at least 2 optimizer steps (a "
                        f"warm-up, then a decay), got {total} (--epochs {config.epochs} x "
                        f"{steps} batch of --batch-size {config.batch_size} over {n_train} "
                        f"training images); pass --schedule constant, more --epochs or a "
                        f"smaller --batch-size")
    need = memory_needed(config, n_images, n_test, n_devices)
    have = _memory_bytes()
    # CPU devices share the host's memory: every device's parameters, optimizer state and
    # batch count against it (the data is split, so its shares add up to one copy)
    shared = jax.devices()[0].platform == "cpu"
    total_need = (need["--hidden"] + need["--batch-size"] + need["--devices"]) * \
        (n_devices if shared else 1)
    if have is None or total_need <= have:
        return
    one_device = need["--hidden"] + need["--batch-size"] + need["--devices"] * n_devices
    if shared and n_devices > 1 and one_device <= have:  # the copies per device are the cost
        flag = "--devices"
    else:
        flag = max(("--hidden", "--batch-size"), key=need.get)
    fix = {"--hidden": "choose smaller layers", "--batch-size": "choose a smaller --batch-size",
           "--devices": "choose fewer --devices"}[flag]
    devices = f"each of the {n_devices} devices" if n_devices > 1 else "the device"
    raise FlagError(
        f"{flag}: training needs about {total_need / 1e9:.1f} GB, more than the "
        f"{have / 1e9:.1f} GB of memory free here (a {'-'.join(map(str, layer_sizes(config)))} "
        f"MLP's parameters, gradients and {config.optimizer} state "
        f"{need['--hidden'] / 1e9:.2f} GB, a batch of {config.batch_size} "
        f"{need['--batch-size'] / 1e9:.2f} GB, the data on {devices} "
        f"{need['--devices'] / 1e9:.2f} GB); {fix}")
