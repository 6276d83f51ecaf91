"""PyTorch: the course's own loop (``TensorDataset`` + ``DataLoader(shuffle=True)``, Adam).

``nn.Linear``'s default initialisation is the reference the other peers copy;
``torch.manual_seed`` seeds it and the DataLoader's shuffle. Threads: one per
core (``torch.set_num_threads``).

``--compile``: the same loop with the model wrapped in ``torch.compile``
(PyTorch 2's documented speed knob; TorchInductor generates C++ for the CPU:
forward and backward are compiled, the optimizer step stays eager). The first
epoch includes the compile; ``TORCHINDUCTOR_CACHE_DIR`` moves its on-disk cache.
``--device cuda``: model and batches on the GPU (``model.to(device)``,
``xb.to(device)``, the course's idiom; ``benchmarks/gpu_check.sh`` uses it).

Run:  python benchmarks/peers/torch_dataloader.py [--quick] [--epochs 5] [--batch-size 64]
      [--compile] [--device cpu|cuda]
"""

from __future__ import annotations

import os
import time

import _common


def build_model(hidden: list[int]):
    from torch import nn

    sizes = [784, *hidden]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 10), nn.LogSoftmax(dim=1))


def _flags(parser) -> None:
    parser.add_argument("--compile", action="store_true",
                        help="wrap the model in torch.compile (the first epoch compiles)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv, extra=_flags)
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    _common.emit(versions={"torch": torch.__version__})
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    (x, y), (x_test, y_test) = _common.load_mnist(args.data_dir)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                        batch_size=args.batch_size, shuffle=True)
    device = torch.device(args.device)
    model = build_model(args.hidden).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if args.compile:
        model = torch.compile(model)
    loss_fn = nn.NLLLoss()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        _common.emit(epoch=epoch + 1, seconds=time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test).to(device)).argmax(1).cpu()
    _common.emit(test_accuracy=float((predicted == torch.from_numpy(y_test)).float().mean()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
