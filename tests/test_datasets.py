import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest

from jaxnet import datasets


@pytest.fixture(scope="module")
def mnist_test(mnist_path):
    return datasets.load_mnist("test", mnist_path)


def test_mnist_shapes_dtypes_and_file_order(mnist_path, mnist_test):
    images, labels = mnist_test
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int32
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the file's first labels
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                            1009]
    train_images, train_labels = datasets.load_mnist("train", mnist_path)
    assert train_images.shape == (60000, 28, 28)
    assert train_labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_env_variable_is_used(mnist_path, monkeypatch):
    monkeypatch.setenv("JAXNET_DATA_DIR", str(mnist_path))
    assert datasets.default_data_dir() == mnist_path
    assert datasets.load_mnist("test")[1].shape == (10000,)


def test_load_idx_reads_uncompressed_copies(tmp_path, mnist_path, mnist_test):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_path / f"{name}.gz") as f:
            (tmp_path / name).write_bytes(f.read())
    images, labels = datasets.load_idx(tmp_path, "test")
    np.testing.assert_array_equal(images, mnist_test[0])
    np.testing.assert_array_equal(labels, mnist_test[1])


def test_load_idx_reads_other_sizes(tmp_path):
    """A Fashion-MNIST-like folder with 3 images of 4x5: any IDX dataset, no checksum."""
    imgs = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    header = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (3, 4, 5))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + imgs.tobytes())
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        (0x0801).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    images, labels = datasets.load_idx(tmp_path, "train")
    np.testing.assert_array_equal(images, imgs)
    assert labels.tolist() == [1, 2, 3]


def _copy_test_split(src, dst):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(src / name, dst / name)


def test_truncated_file_names_file_and_problem(tmp_path, mnist_path):
    _copy_test_split(mnist_path, tmp_path)
    data = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(data[:5000])
    for load in (datasets.load_mnist, datasets.load_idx):
        with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: 4992 data bytes .*"
                                             r"expected 10000"):
            load(tmp_path, "test") if load is datasets.load_idx else load("test", tmp_path)


def test_jaxnet_data_folder_must_hold_the_official_files(tmp_path, mnist_path, monkeypatch):
    """Without data_dir, jaxnet's own folder is verified by sha256 (a damaged download)."""
    monkeypatch.setenv("JAXNET_DATA_DIR", str(tmp_path))
    _copy_test_split(mnist_path, tmp_path)
    data = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    data[100] = (data[100] + 1) % 10  # a valid IDX file, one label changed
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: not the official MNIST "
                                         r"file .* sha256 .* move it away"):
        datasets.load_mnist("test")
    notes = []  # the same folder named as data_dir: read as given, with a one-line note
    images, labels = datasets.load_mnist("test", tmp_path, log=notes.append)
    assert labels[100] == data[108] and images.shape == (10000, 28, 28)
    assert len(notes) == 1 and notes[0].startswith("note: ")
    assert "t10k-labels-idx1-ubyte.gz" in notes[0]


def test_corrupt_gzip_and_bad_magic(tmp_path, mnist_path):
    _copy_test_split(mnist_path, tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: cannot be read"):
        datasets.load_mnist("test", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes((2049).to_bytes(4, "big") + bytes(12))
    with pytest.raises(ValueError, match="bad magic number 2049, expected 2051"):
        datasets.load_idx(tmp_path, "test")


def test_missing_files_offline_error_says_what_where_and_how(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_mnist("train", tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path) in msg and "JAXNET_DATA_DIR" in msg and "--data-dir" in msg
    assert list(tmp_path.iterdir()) == []  # no partial files left behind


def test_download_verifies_and_installs_atomically(tmp_path, mnist_path, monkeypatch):
    served = []

    class Response:
        def __init__(self, path):
            self.data = path.read_bytes()

        def read(self, n=-1):
            out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
            return out

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(url, timeout):
        served.append(url.rsplit("/", 1)[1])
        return Response(mnist_path / served[-1])

    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setenv("JAXNET_DATA_DIR", str(tmp_path / "cache"))  # jaxnet's own folder
    images, labels = datasets.load_mnist("test")
    assert served == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert images.shape == (10000, 28, 28)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == served


def test_to_float_course_normalisation():
    x = datasets.to_float(np.array([[[0, 255], [51, 102]]], np.uint8), flatten=True)
    np.testing.assert_allclose(x, [[-1.0, 1.0, -0.6, -0.2]], rtol=1e-6)
    assert x.dtype == np.float32
    with pytest.raises(ValueError, match="std: expected a positive number, got 0"):
        datasets.to_float(np.zeros((1, 2), np.uint8), std=0)


def test_bad_split_and_source():
    with pytest.raises(ValueError, match="split: expected 'train' or 'test', got 'val'"):
        datasets.load_mnist("val")
    with pytest.raises(ValueError, match="source: expected 'idx' or 'tfds', got 'hf'"):
        datasets.load_mnist("test", source="hf")


def _tfds_available():
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _tfds_available() and not os.environ.get("JAXNET_REQUIRE_TFDS"),
                    reason="tensorflow-datasets not installed (pip install 'jaxnet-course[tfds]'); "
                           ".ci/run installs it and sets JAXNET_REQUIRE_TFDS=1")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tfds_gives_the_same_examples_as_idx_offline(mnist_path, tmp_path, monkeypatch,
                                                     mnist_test):
    monkeypatch.setenv("JAXNET_TFDS_DIR", str(tmp_path / "tfds"))
    images, labels = datasets.load_mnist("test", mnist_path, source="tfds")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int32

    def pairs(imgs, labs):
        return sorted(hashlib.sha256(i.tobytes() + bytes([int(lab)])).hexdigest()
                      for i, lab in zip(imgs, labs, strict=True))

    assert pairs(images, labels) == pairs(*mnist_test)
    assert not np.array_equal(labels, mnist_test[1])  # TFDS's order differs from the files'
