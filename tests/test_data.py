import numpy as np
import pytest

from jaxnet.data import ArrayDataset, DataLoader, Dataset, default_collate, random_split

# The documented guarantee, pinned: order = f(seed, epoch), reshuffled every epoch.
GOLDEN_SEED_42 = [
    [[5, 6, 0, 7], [3, 2, 4, 9], [1, 8]],
    [[0, 8, 7, 4], [3, 1, 2, 9], [6, 5]],
    [[0, 8, 5, 9], [7, 4, 2, 6], [3, 1]],
]


def _xs(loader, epoch=None):
    batches = loader if epoch is None else loader.iter_epoch(epoch)
    return [b[0].tolist() for b in batches]


def test_dataset_len_and_indexing():
    ds = ArrayDataset(np.arange(12).reshape(6, 2), np.arange(6))
    assert len(ds) == 6
    x, y = ds[2]
    assert x.tolist() == [4, 5] and y == 2
    xs, ys = ds[np.array([0, 5])]
    assert ys.tolist() == [0, 5]


def test_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"equal first dimensions, got lengths \[5, 4\]"):
        ArrayDataset(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one array"):
        ArrayDataset()


@pytest.mark.parametrize("n,bs,drop_last,expected_sizes", [
    (10, 4, False, [4, 4, 2]),
    (10, 4, True, [4, 4]),
    (8, 4, False, [4, 4]),
    (8, 4, True, [4, 4]),
    (3, 5, False, [3]),
    (1, 1, False, [1]),
])
def test_batch_count_and_sizes_like_pytorch(n, bs, drop_last, expected_sizes):
    loader = DataLoader(ArrayDataset(np.arange(n)), batch_size=bs, drop_last=drop_last)
    sizes = [len(b[0]) for b in loader]
    assert sizes == expected_sizes
    assert len(loader) == len(expected_sizes)


def test_no_shuffle_keeps_order():
    loader = DataLoader(ArrayDataset(np.arange(5), np.arange(5) * 10), batch_size=2)
    assert [(x.tolist(), y.tolist()) for x, y in loader] == [
        ([0, 1], [0, 10]), ([2, 3], [20, 30]), ([4], [40])]


def test_shuffle_golden_order_and_fresh_permutation_each_epoch():
    loader = DataLoader(ArrayDataset(np.arange(10)), batch_size=4, shuffle=True, seed=42)
    assert [_xs(loader, e) for e in range(3)] == GOLDEN_SEED_42
    # iterating uses epochs 0, 1, 2 in turn, like PyTorch reshuffling each epoch
    assert [_xs(loader) for _ in range(3)] == GOLDEN_SEED_42
    loader.set_epoch(1)
    assert _xs(loader) == GOLDEN_SEED_42[1]
    # every epoch is a permutation: each example exactly once
    for epoch in GOLDEN_SEED_42:
        assert sorted(sum(epoch, [])) == list(range(10))


def test_same_seed_same_order_other_seed_differs():
    a = DataLoader(ArrayDataset(np.arange(100)), batch_size=10, shuffle=True, seed=1)
    b = DataLoader(ArrayDataset(np.arange(100)), batch_size=10, shuffle=True, seed=1)
    c = DataLoader(ArrayDataset(np.arange(100)), batch_size=10, shuffle=True, seed=2)
    assert _xs(a, 3) == _xs(b, 3)
    assert _xs(a, 3) != _xs(c, 3)


def test_pad_last_gives_static_shapes_and_mask():
    loader = DataLoader(ArrayDataset(np.arange(10), np.arange(10)), batch_size=4,
                        pad_last=True)
    batches = list(loader)
    assert {b[0].shape for b in batches} == {(4,)}
    assert [b[2].tolist() for b in batches][-1] == [True, True, False, False]
    assert batches[-1][0][:2].tolist() == [8, 9]
    indices, mask = loader.index_batches(0)
    assert indices.shape == mask.shape == (3, 4)
    assert indices[mask].tolist() == list(range(10))


def test_random_split_sizes_disjoint_and_seeded():
    ds = ArrayDataset(np.arange(100))
    a, b = random_split(ds, [80, 20], seed=0)
    assert (len(a), len(b)) == (80, 20)
    assert sorted(np.concatenate([a.arrays[0], b.arrays[0]]).tolist()) == list(range(100))
    a2, _ = random_split(ds, [80, 20], seed=0)
    a3, _ = random_split(ds, [80, 20], seed=1)
    assert a.arrays[0].tolist() == a2.arrays[0].tolist() != a3.arrays[0].tolist()
    parts = random_split(ArrayDataset(np.arange(10)), [0.5, 0.3, 0.2], seed=0)
    assert [len(p) for p in parts] == [5, 3, 2]


@pytest.mark.parametrize("make,match", [
    (lambda: DataLoader(ArrayDataset(np.arange(4)), batch_size=0), "batch_size: .* got 0"),
    (lambda: DataLoader(ArrayDataset(np.arange(4)), batch_size=-2), "batch_size: .* got -2"),
    (lambda: DataLoader(ArrayDataset(np.arange(4)), batch_size=2.5), "batch_size: .* got 2.5"),
    (lambda: DataLoader(ArrayDataset(np.zeros((0, 3))), batch_size=2), "empty dataset"),
    (lambda: DataLoader(ArrayDataset(np.arange(4)), batch_size=2, seed=-1), "seed: .* got -1"),
    (lambda: random_split(ArrayDataset(np.arange(10)), [2.5, 7.5]), r"lengths: .*\[2.5, 7.5\]"),
    (lambda: random_split(ArrayDataset(np.arange(10)), [5, 4]), r"summing to .* 10.*sum 9"),
    (lambda: random_split(ArrayDataset(np.arange(10)), []), "lengths: expected at least one"),
])
def test_bad_arguments_name_argument_and_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("items,expected,dtype", [
    # promoted over the whole batch like torch.tensor, not from the first item
    ([0, 1.62, 1.75, 0.93], [0, 1.62, 1.75, 0.93], np.float32),
    ([True, 1.5], [1.0, 1.5], np.float32),
    ([1, 2, 3], [1, 2, 3], np.int32),
    ([True, 2], [1, 2], np.int32),
    ([True, False], [True, False], np.bool_),
    ([1, 2**40], [1, 2**40], np.int64),  # no OverflowError; kept int64 (JAX's int32 would wrap)
    ([-(2**31), 2**31 - 1], [-(2**31), 2**31 - 1], np.int32),
    ([0.5, 1e300], [0.5, 1e300], np.float64),  # float32 would make it inf
    ([0.5, float("inf")], [0.5, float("inf")], np.float32),
])
def test_collate_promotes_python_numbers_over_the_whole_batch(items, expected, dtype):
    out = default_collate(items)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.astype(np.float64), np.asarray(expected, np.float64),
                               rtol=1e-6)


def test_collate_promotes_within_nested_fields_and_dicts():
    x, y = default_collate([(np.zeros(2), 0), (np.ones(2), 1.62)])
    assert y.dtype == np.float32 and y.tolist() == pytest.approx([0, 1.62])
    d = default_collate([{"t": 1, "w": 1}, {"t": 2**40, "w": 0.5}])
    assert (d["t"].dtype, d["w"].dtype) == (np.int64, np.float32)


def test_collate_refuses_ints_beyond_int64():
    with pytest.raises(ValueError, match=rf"collate: expected ints within int64.* got {2**64};"):
        default_collate([1, 2**64])


def test_collate_shuffled_batches_have_one_dtype():
    # which item comes first must not change the batch's dtype (it did with shuffling)
    class Targets(Dataset):
        def __getitem__(self, i):
            return [0, 1.62, 1.75, 0.93][i]

        def __len__(self):
            return 4

    loader = DataLoader(Targets(), batch_size=2, shuffle=True, seed=3)
    for epoch in range(4):
        for batch in loader.iter_epoch(epoch):
            assert batch.dtype == np.float32


def test_huge_batch_size_allocates_by_the_dataset_not_the_batch_size():
    # PyTorch yields the 3 rows; a padded batch of 3e8 rows took 5 GB and 7 s
    ds = ArrayDataset(np.arange(3), np.arange(3))
    loader = DataLoader(ds, batch_size=300_000_000)
    assert [b[0].tolist() for b in loader] == [[0, 1, 2]]
    indices, mask = loader.index_batches(0)
    assert indices.shape == mask.shape == (1, 3)
    x, y, m = next(loader.iter_epoch(0, pad_last=True))
    assert x.shape == m.shape == (3,) and m.all()
    shuffled = DataLoader(ds, batch_size=300_000_000, shuffle=True, pad_last=True)
    assert sorted(next(iter(shuffled))[0].tolist()) == [0, 1, 2]


def test_float_batch_size_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"batch_size: expected a positive int, got 300000000.0"):
        DataLoader(ArrayDataset(np.arange(3)), batch_size=3e8)
