import functools
import gzip
import http.server
import shutil
import threading

import numpy as np
import pytest
from conftest import write_idx

from helpers import fashion_mnist as fm


def test_real_files_load_with_expected_shapes_and_counts(data_root):
    (x_train, y_train), (x_test, y_test) = fm.load_fashion_mnist(data_root, download=False)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert round(float(x_train.mean()), 2) == 72.94


def test_lookup_order_explicit_then_environment(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_DATA_ROOT", str(data_root))
    assert fm.find_fashion_mnist(tmp_path) == data_root / "fashion-mnist"  # explicit root is empty
    (tmp_path / "fashion-mnist").mkdir()
    for name in fm.SHA256:
        (tmp_path / "fashion-mnist" / name).write_bytes(b"")
    assert fm.find_fashion_mnist(tmp_path) == tmp_path / "fashion-mnist"  # explicit root wins


def test_missing_data_without_download_names_the_places_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_DATA_ROOT", raising=False)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fm, "data_roots", lambda root=None: [tmp_path])
    with pytest.raises(fm.DataError, match="FASHION_DATA_ROOT"):
        fm.load_fashion_mnist(download=False)


def test_wrong_magic_number_is_reported_with_the_file(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28)), magic=fm.LABEL_MAGIC)
    with pytest.raises(fm.DataError, match=r"x\.gz: magic number 2049, expected 2051"):
        fm.read_idx(path, fm.IMAGE_MAGIC)


def test_truncated_gzip_is_reported(data_root, tmp_path):
    source = data_root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    broken = tmp_path / source.name
    broken.write_bytes(source.read_bytes()[:2000])
    with pytest.raises(fm.DataError, match="not a complete gzip file"):
        fm.read_idx(broken, fm.LABEL_MAGIC)


def test_header_promising_more_data_than_present(tmp_path):
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as fh:
        fh.write((2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (5, 28, 28)) + b"\0" * 100)
    with pytest.raises(fm.DataError, match="header promises 3920 bytes"):
        fm.read_idx(path, fm.IMAGE_MAGIC)


def test_image_and_label_counts_must_agree(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28)), fm.IMAGE_MAGIC)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3), fm.LABEL_MAGIC)
    with pytest.raises(fm.DataError, match="4 images but .* 3 labels"):
        fm.load_split(tmp_path, "t10k", verify=False)


def test_checksum_mismatch_is_reported(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28)), fm.IMAGE_MAGIC)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3), fm.LABEL_MAGIC)
    with pytest.raises(fm.DataError, match="SHA-256 differs"):
        fm.load_split(tmp_path, "t10k", verify=True)


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving a folder; yields (folder, base_url)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_from_a_mirror_verifies_and_loads(data_root, mirror, tmp_path):
    folder, url = mirror
    for name in fm.SHA256:
        shutil.copy(data_root / "fashion-mnist" / name, folder / name)
    dest = fm.download_fashion_mnist(tmp_path / "dest", base_url=url)
    assert sorted(p.name for p in dest.iterdir()) == sorted(fm.SHA256)
    images, labels = fm.load_split(dest, "t10k")
    assert images.shape == (10000, 28, 28) and len(labels) == 10000


def test_corrupted_download_is_rejected_and_nothing_is_written(data_root, mirror, tmp_path):
    folder, url = mirror
    for name in fm.SHA256:
        payload = (data_root / "fashion-mnist" / name).read_bytes()
        if name.startswith("t10k-images"):
            payload = payload[:-10] + b"corrupted!"
        (folder / name).write_bytes(payload)
    dest = tmp_path / "dest"
    with pytest.raises(fm.DataError, match="t10k-images-idx3-ubyte.gz: SHA-256 .* does not match"):
        fm.download_fashion_mnist(dest, base_url=url)
    assert not (dest / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(dest.glob("*.part"))


def test_unreachable_mirror_gives_one_clear_error(tmp_path):
    with pytest.raises(fm.DataError, match="download failed"):
        fm.download_fashion_mnist(tmp_path, base_url="http://127.0.0.1:9/", timeout=5)


def test_a_partial_copy_names_the_missing_file_instead_of_downloading(data_root, tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in list(fm.SHA256)[:3]:
        (folder / name).symlink_to(data_root / "fashion-mnist" / name)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"raw")  # the fourth, but not gzipped
    with pytest.raises(fm.DataError, match="holds 3 of the 4 files, t10k-labels-idx1-ubyte.gz missing; "
                                           "t10k-labels-idx1-ubyte lie there uncompressed"):
        fm.load_fashion_mnist(tmp_path, base_url="http://127.0.0.1:9/")


def test_an_explicit_data_root_that_does_not_exist_is_an_error(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("FASHION_DATA_ROOT", str(data_root))  # no silent fall-back to the environment
    with pytest.raises(FileNotFoundError, match="data_root .*typo is not a folder"):
        fm.load_fashion_mnist(tmp_path / "typo")
