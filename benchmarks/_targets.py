"""Issue 20's targets as ratios, per round, with a verdict each (pure functions, no timing).

Every ratio compares numbers measured in the same round (the same minutes of
the same machine), so the machine's load mostly cancels:

* jaxnet's steady epoch <= 1.10x the matmul floor (the course step's eight
  matmuls as one XLA call, x938);
* >= 1.2x faster than the fastest JAX peer, Keras with ``steps_per_execution``
  included;
* epoch <= 0.33x PyTorch eager's and <= 0.5x ``torch.compile``'s;
* time to first result (process start to test accuracy, 5 epochs) <= 0.40x
  PyTorch's cold (its first process) and <= 0.35x its warm (second process),
  jaxnet's cold with an empty compile cache, warm with the same cache again;
* from the precision grid, wherever bf16 pays (is faster at all), its epoch
  <= 0.75x float32's at equal accuracy (within ``ACCURACY_TOLERANCE``).

The share of the matmul ceiling is reported as information (no target).
"""

from __future__ import annotations

import statistics

JAX_PEERS = ("nnx", "keras", "keras_spe", "equinox")
ACCURACY_TOLERANCE = 0.005


def steady(epochs: list[float]) -> float:
    """Median epoch after the first (which compiles)."""
    return statistics.median(epochs[1:] if len(epochs) > 1 else epochs)


def verdict(values: list[float], holds) -> str:
    """'holds in every round', 'fails in every round' or 'within noise (...)'."""
    if not values:
        return "not measured"
    ok = [holds(v) for v in values]
    if len(values) < 2:
        return ("holds" if ok[0] else "fails") + " (1 round: no noise estimate)"
    if all(ok):
        return "holds in every round"
    return "fails in every round" if not any(ok) else "within noise (holds in some rounds)"


def _row(target, values, holds, fmt, key) -> dict:
    return {"key": key, "target": target, "values": values, "fmt": fmt,
            "verdict": verdict(values, holds) if holds else "information (no target)"}


def table_targets(runs: dict, rounds: int, gflop: float, ceiling: float) -> list[dict]:
    """The peer table's targets. ``runs[peer_key]`` is a list of one run per round, each with
    ``epochs`` (seconds) and ``time_to_result_s``; a peer that did not run is left out."""
    def per_round(key, fn):
        return [fn(runs[key][r]) for r in range(rounds)] if runs.get(key) else []

    def ratio(a, b):
        return [x / y for x, y in zip(a, b, strict=True)] if a and b else []

    epoch = {k: per_round(k, lambda r: steady(r["epochs"])) for k in runs}
    first = {k: per_round(k, lambda r: r["time_to_result_s"]) for k in runs}
    jx = epoch["jaxnet"]
    rows = [_row("share of the matmul ceiling", [gflop / e / ceiling for e in jx], None,
                 "{:.0%}", "ceiling_share")]
    rows.append(_row("epoch <= 1.10x the matmul floor", ratio(jx, epoch.get("floor")),
                     lambda v: v <= 1.10, "{:.2f}x", "floor"))
    jax_peers = [k for k in JAX_PEERS if runs.get(k)]
    fastest = [min(epoch[k][r] for k in jax_peers) for r in range(rounds)] if jax_peers else []
    rows.append(_row(">= 1.2x faster than the fastest JAX peer (Keras steps_per_execution "
                     "included)", ratio(fastest, jx), lambda v: v >= 1.2, "{:.2f}x",
                     "fastest_jax_peer"))
    rows.append(_row("epoch <= 0.33x PyTorch eager's", ratio(jx, epoch.get("pytorch")),
                     lambda v: v <= 0.33, "{:.2f}", "pytorch_epoch"))
    rows.append(_row("epoch <= 0.5x torch.compile's", ratio(jx, epoch.get("torch_compile")),
                     lambda v: v <= 0.5, "{:.2f}", "torch_compile_epoch"))
    rows.append(_row("time to first result, cold <= 0.40x PyTorch's cold",
                     ratio(first["jaxnet"], first.get("pytorch")), lambda v: v <= 0.40,
                     "{:.2f}", "first_result_cold"))
    rows.append(_row("time to first result, warm <= 0.35x PyTorch's warm",
                     ratio(first.get("jaxnet_warm"), first.get("pytorch_warm")),
                     lambda v: v <= 0.35, "{:.2f}", "first_result_warm"))
    return rows


def precision_targets(cells: list[dict]) -> list[dict]:
    """bf16 vs float32 per grid cell that has both: the ratio, whether bf16 pays (< 1.0),
    and where it pays whether it is <= 0.75x at equal accuracy."""
    rows = []
    for c in cells:
        if c.get("jaxnet_bf16_s") is None:
            continue
        ratio = c["jaxnet_bf16_s"] / c["jaxnet_s"]
        gap = abs(c["jaxnet_bf16_accuracy"] - c["jaxnet_accuracy"])
        if ratio >= 1.0:
            status = "bf16 does not pay here"
        elif ratio <= 0.75 and gap <= ACCURACY_TOLERANCE:
            status = "holds"
        else:
            status = "fails" + (f" (accuracy differs by {gap:.4f})"
                                if gap > ACCURACY_TOLERANCE else "")
        rows.append({"hidden": c["hidden"], "batch_size": c["batch_size"],
                     "bf16_over_float32": ratio, "accuracy_gap": gap, "verdict": status})
    return rows
