"""``jaxnet convert SOURCE --to DESTINATION``: runs ``jaxnet.mnist.convert``, says what's next."""

from __future__ import annotations

from ._flags import CONVERT_FIELDS, as_flag_error, flag


def run(args) -> int:
    """Convert as the flags say; print what was converted and how to continue it."""
    from .. import mnist
    from ..mnist._config import layer_sizes

    given = [f for f in ("recipe", *CONVERT_FIELDS) if getattr(args, f) is not None]
    config = None
    if given:
        try:
            config = mnist.RECIPES[args.recipe or "default"].with_updates(
                **{f: getattr(args, f) for f in given if f != "recipe"})
        except (ValueError, TypeError) as e:
            raise as_flag_error(e) from None
    result = mnist.convert(args.source, args.destination, config=config,
                           trained_epochs=args.trained_epochs, step=args.step, key=args.key,
                           overwrite=args.overwrite)
    what = f"{result['arrays']} arrays, {result['params']:,} values"
    if result["config"] is not None:
        what = f"MLP {'-'.join(map(str, layer_sizes(result['config'])))}, {what}"
    print(f"converted {args.source} -> {args.destination} ({what})")
    if result["direction"] == "file->checkpoint":
        c = result["config"]
        flags = [f"--recipe {args.recipe or 'default'}", f"--epochs {c.epochs}"]
        flags += [f"{flag(f)} "
                  + (",".join(map(str, v)) if isinstance(v := getattr(args, f), tuple) else str(v))
                  for f in given if f not in ("recipe", "epochs")]
        evaluate = (f" (or, with --epochs {result['epoch']}, only evaluate)"
                    if result["epoch"] else "")
        print(f"epoch {result['epoch']}, fresh optimizer state; continue{evaluate} with: jaxnet "
              f"train mnist --checkpoint-dir {args.destination} --resume {' '.join(flags)}")
    return 0
