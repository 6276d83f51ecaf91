"""PyTorch: the course's own loop (``TensorDataset`` + ``DataLoader(shuffle=True)``, Adam).

``nn.Linear``'s default initialisation is the reference the other peers copy;
``torch.manual_seed`` seeds it and the DataLoader's shuffle. Threads: one per
core (``torch.set_num_threads``).

Run:  python benchmarks/peers/torch_dataloader.py [--quick] [--epochs 5] [--batch-size 64]
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


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    _common.emit(versions={"torch": torch.__version__})
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    (x, y), (x_test, y_test) = _common.load_mnist(args.data_dir)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                        batch_size=args.batch_size, shuffle=True)
    model = build_model(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.NLLLoss()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        _common.emit(epoch=epoch + 1, seconds=time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test)).argmax(1)
    _common.emit(test_accuracy=float((predicted == torch.from_numpy(y_test)).float().mean()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
