"""Saved FAISS indexes (chapter 09): checked before they are trusted, never half-written, clear errors."""

import hashlib
import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import indexfiles, vectors
from helpers.paths import REPO_ROOT

faiss = vectors.load_faiss()


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """These indexes are small: one thread builds them faster than several competing for busy cores."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def _vectors(n=2000, dim=64, seed=0):
    return vectors.normalise(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))


def _ivf_flat(x, nlist=16):
    index = vectors.ivf_indexes(vectors.train_quantizer(x, nlist), nlist)["IVF-Flat"]
    index.train(x)
    index.add(x)
    index.nprobe = 4
    return index


def _hnsw(x):
    index = faiss.index_factory(x.shape[1], "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    return index


def _forge_record(path, fmt="IxFI", d=16, ntotal=0):
    """A record that matches the file's bytes, as someone who rewrote the file could also write."""
    record = {"file": path.name, "format": fmt, "d": d, "ntotal": ntotal, "bytes": path.stat().st_size,
              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    indexfiles.record_path(path).write_text(json.dumps(record))


def test_every_index_type_the_series_saves_reloads_with_identical_answers(tmp_path):
    x = _vectors()
    quantizer = vectors.train_quantizer(x, 16)
    indexes = {"flat-ip": faiss.IndexFlatIP(64), "flat-l2": faiss.IndexFlatL2(64),
               **vectors.ivf_indexes(quantizer, 16), "hnsw": faiss.index_factory(64, "HNSW16,Flat"),
               "refine": faiss.index_factory(64, "IVF16,SQ8,RFlat"), "sparse": faiss.index_factory(64, "IVF64,Flat")}
    for name, index in indexes.items():
        index.train(x)
        index.add(x[:5] if name == "sparse" else x)  # 5 vectors in 64 lists: FAISS stores only the used ones
        path = vectors.save_index(index, tmp_path / f"{name}.faiss")
        record = json.loads(indexfiles.record_path(path).read_text())
        assert (record["d"], record["ntotal"], record["bytes"]) == (64, index.ntotal, path.stat().st_size), name
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        reloaded = vectors.load_index(path)
        assert type(reloaded) is type(faiss.downcast_index(index)) or name == "refine"
        np.testing.assert_array_equal(vectors.search(reloaded, x[:20], 5)[1], vectors.search(index, x[:20], 5)[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.faiss{e}" for n in indexes for e in ("", ".json"))


def test_a_small_file_claiming_gigabytes_is_refused_before_any_memory_is_taken(tmp_path):
    # a valid 200 x 16 flat index whose header and vector length are patched to claim 1.5 or 20 GiB of
    # vectors while holding 64 bytes; and an IVF index whose first list claims 20 GiB of codes. Each has a
    # record that matches its bytes. Loaded in a child process whose address space is capped 512 MiB above
    # what it already uses, so a claim FAISS honoured would fail there instead of filling this machine.
    script = textwrap.dedent("""
        import json, resource, struct, sys
        from pathlib import Path
        import numpy as np
        from helpers import vectors
        from tests.test_indexfiles import _forge_record, _ivf_flat, _vectors
        faiss, root = vectors.load_faiss(), Path(sys.argv[1])
        flat = faiss.IndexFlatIP(16)
        flat.add(_vectors(200, 16))
        raw = vectors.save_index(flat, root / "flat.faiss").read_bytes()
        assert raw[:4] == b"IxFI" and struct.unpack("<Q", raw[37:45])[0] == 200 * 16
        files = []
        for gib in (1.5, 20):
            n = int(gib * 2**30)
            claim = raw[:8] + struct.pack("<q", n // 64) + raw[16:37] + struct.pack("<Q", n // 4) + bytes(64)
            files.append(root / f"claim_{gib}GiB.faiss")
            files[-1].write_bytes(claim)
            _forge_record(files[-1], "IxFI", 16, n // 64)
        ivf = vectors.save_index(_ivf_flat(_vectors(2000, 16)), root / "ivf.faiss").read_bytes()
        sizes = ivf.index(b"full") + 12  # list type, then the number of lists, then their sizes
        huge = 20 * 2**30 // (16 * 4 + 8)
        others = sum(struct.unpack("<15Q", ivf[sizes + 8:sizes + 128]))
        files.append(root / "claim_ivf.faiss")
        files[-1].write_bytes(ivf[:8] + struct.pack("<q", huge + others) + ivf[16:sizes] + struct.pack("<Q", huge)
                              + ivf[sizes + 8:sizes + 128] + bytes(64))
        _forge_record(files[-1], "IwFl", 16, huge + others)
        vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        cap = vm + 2**29 if hard == resource.RLIM_INFINITY else min(vm + 2**29, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for path in files:
            try:
                vectors.load_index(path)
                print(json.dumps([path.name, "LOADED", ""]))
            except BaseException as err:
                print(json.dumps([path.name, type(err).__name__, str(err)]))
        print(json.dumps(["grew KiB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, ""]))
    """)
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r[0] for r in results] == ["claim_1.5GiB.faiss", "claim_20GiB.faiss", "claim_ivf.faiss", "grew KiB"]
    for name, kind, message in results[:3]:
        assert kind == "ValueError", (name, kind, message)
        assert f"{name} is not a readable FAISS index (it claims " in message, message
        assert "bytes for the stored vectors" in message or "bytes for the inverted lists' codes" in message
        assert "but only 64 bytes follow" in message
        assert "delete it and build the index again" in message
    assert results[3][1] < 64 * 1024  # the check reads headers only: no memory for the claimed vectors


def test_a_damaged_copy_of_an_index_never_loads(tmp_path):
    # 100 seeded copies of an IVF-Flat and an HNSW index over 2,000 x 64 vectors, each with 1 to 3 bytes
    # changed (half of them within the first 400 bytes, where the headers are), each beside its record
    x = _vectors()
    rng = np.random.default_rng(29)
    refused = 0
    for name, index in (("ivf", _ivf_flat(x)), ("hnsw", _hnsw(x))):
        path = vectors.save_index(index, tmp_path / f"{name}.faiss")
        raw, record = path.read_bytes(), indexfiles.record_path(path).read_text()
        for number in range(50):
            damaged = bytearray(raw)
            for _ in range(int(rng.integers(1, 4))):
                position = int(rng.integers(0, 400 if number % 2 else len(damaged)))
                damaged[position] = (damaged[position] + int(rng.integers(1, 256))) % 256
            copy = tmp_path / f"{name}_{number:02d}.faiss"
            copy.write_bytes(damaged)
            indexfiles.record_path(copy).write_text(record)
            with pytest.raises(ValueError, match=copy.name):
                vectors.load_index(copy)
            refused += 1
    assert refused == 100


def test_the_structure_check_answers_every_damaged_file_with_a_value_error(tmp_path):
    # without a record to compare with, the structure check alone meets every damaged file with either its
    # description or a ValueError: no other exception, and no count that does not fit in the file
    x = _vectors(500, 32)
    rng = np.random.default_rng(7)
    kinds = {"ivf": _ivf_flat(x, 8), "hnsw": _hnsw(x), **vectors.ivf_indexes(vectors.train_quantizer(x, 8), 8)}
    for name, index in kinds.items():
        index.train(x)
        if not index.ntotal:
            index.add(x)
        raw = vectors.save_index(index, tmp_path / f"{name}.faiss").read_bytes()
        for _ in range(150):
            damaged = bytearray(raw)
            position = int(rng.integers(0, min(len(damaged), 600)))
            damaged[position] = (damaged[position] + int(rng.integers(1, 256))) % 256
            copy = tmp_path / "copy.faiss"
            copy.write_bytes(damaged[:len(damaged) - int(rng.integers(0, 2)) * int(rng.integers(1, 64))])
            try:
                found = indexfiles.read_structure(copy)
            except ValueError as err:
                assert "copy.faiss is not a readable FAISS index" in str(err)
            else:
                assert found["d"] == 32 and found["ntotal"] * 4 <= len(damaged)


def test_an_index_changed_after_saving_or_without_its_record_is_refused(tmp_path):
    x = _vectors(300, 16)
    index = faiss.IndexFlatIP(16)
    index.add(x)
    path = vectors.save_index(index, tmp_path / "index.faiss")
    record = indexfiles.record_path(path)
    assert vectors.check_index_file(path)["ntotal"] == 300
    raw = path.read_bytes()
    path.write_bytes(raw[:-4] + bytes(4))  # one stored number zeroed: the structure still fits
    with pytest.raises(ValueError, match=r"index.faiss changed after save_index wrote it: its sha256"):
        vectors.load_index(path)
    path.write_bytes(raw)
    record.write_text("{not json")
    with pytest.raises(ValueError, match="index.faiss.json is not a record written by save_index"):
        vectors.load_index(path)
    record.unlink()
    with pytest.raises(ValueError, match="index.faiss has no record index.faiss.json beside it"):
        vectors.load_index(path)


def test_a_folder_given_as_an_index_is_named_as_a_folder(tmp_path):
    folder = tmp_path / "catalogue.faiss"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="catalogue.faiss is a folder, not an index file"):
        vectors.load_index(folder)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        vectors.save_index(faiss.IndexFlatIP(4), folder)


def test_queries_of_the_wrong_width_or_kind_are_named(tmp_path):
    x = _vectors(200, 16)
    index = faiss.IndexFlatIP(16)
    index.add(x)
    np.testing.assert_array_equal(vectors.search(index, x[:3].astype(np.float64), 4)[1], index.search(x[:3], 4)[1])
    with pytest.raises(ValueError, match="queries have d=32 columns; the index holds d=16"):
        vectors.search(index, np.zeros((3, 32), np.float32), 5)
    with pytest.raises(ValueError, match="queries have d=8 columns"):
        vectors.search(index, np.zeros((3, 8), np.float32), 5)
    with pytest.raises(ValueError, match=r"shape \(16,\); pass a 2-D array \(n_queries, 16\)"):
        vectors.search(index, x[0], 5)
    with pytest.raises(ValueError, match="of type <U"):
        vectors.search(index, [["a"] * 16], 5)
    with pytest.raises(ValueError, match=r"queries \[1\] hold NaN"):
        vectors.search(index, np.stack([x[0], np.full(16, np.nan, np.float32)]), 5)
    for k in (0, 2.5, True):
        with pytest.raises(ValueError, match="must be a whole number of neighbours"):
            vectors.search(index, x[:2], k)


def test_a_full_disk_leaves_the_old_index_and_no_partial_file(tmp_path, monkeypatch):
    x = _vectors(500, 16)
    old = faiss.IndexFlatIP(16)
    old.add(x[:100])
    path = vectors.save_index(old, tmp_path / "index.faiss")
    new = faiss.IndexFlatIP(16)
    new.add(x)
    real_write = faiss.write_index

    def fills_the_disk(index, name):  # writes half the file, then fails as FAISS does on a full disk
        real_write(index, name)
        with open(name, "r+b") as handle:
            handle.truncate(handle.seek(0, 2) // 2)
        raise RuntimeError(f"Error in void faiss::write_index(...) at index_write.cpp:1: write error in {name}: "
                           "946131 != 2048000 (No space left on device)")

    def fails_on_close(index, name):  # FAISS only prints an error when the file's last buffer cannot be written
        real_write(index, name)
        with open(name, "r+b") as handle:
            handle.truncate(handle.seek(0, 2) - 100)

    for failing, message in ((fills_the_disk, "no space left on device to save the index"),
                             (fails_on_close, "index written to .* is incomplete")):
        monkeypatch.setattr(faiss, "write_index", failing)
        with pytest.raises(OSError, match=message) as caught:
            vectors.save_index(new, path)
        assert str(path) in str(caught.value) and "save again" in str(caught.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss", "index.faiss.json"]
        assert vectors.load_index(path).ntotal == 100
    monkeypatch.setattr(faiss, "write_index", real_write)
    assert vectors.load_index(vectors.save_index(new, path)).ntotal == 500


def test_a_writer_killed_mid_save_leaves_the_old_index_loadable(tmp_path):
    x = _vectors(300, 16)
    old = faiss.IndexFlatIP(16)
    old.add(x[:100])
    path = vectors.save_index(old, tmp_path / "index.faiss")
    script = textwrap.dedent("""
        import os, signal, sys
        from helpers import vectors
        from tests.test_indexfiles import _vectors
        faiss = vectors.load_faiss()
        real_write = faiss.write_index
        def killed(index, name):
            real_write(index, name)
            with open(name, "r+b") as handle:
                handle.truncate(handle.seek(0, 2) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        faiss.write_index = killed
        new = faiss.IndexFlatIP(16)
        new.add(_vectors(300, 16))
        vectors.save_index(new, sys.argv[1])
    """)
    run = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO_ROOT, capture_output=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("index.faiss", "index.faiss.json"))
    assert len(leftovers) == 1 and leftovers[0].startswith(".index.faiss.") and leftovers[0].endswith(".part")
    reloaded = vectors.load_index(path)
    np.testing.assert_array_equal(vectors.search(reloaded, x[:5], 3)[1], vectors.search(old, x[:5], 3)[1])
    with pytest.raises(ValueError, match="is not a readable FAISS index|has no record"):
        vectors.load_index(tmp_path / leftovers[0])


def test_faiss_errors_while_reading_become_one_message(tmp_path, monkeypatch):
    index = faiss.IndexFlatIP(4)
    index.add(_vectors(10, 4))
    path = vectors.save_index(index, tmp_path / "index.faiss")
    for error in (MemoryError("std::bad_alloc"), MemoryError(), RuntimeError("Error in read_index: bad")):
        def fails(name, error=error):
            raise error
        monkeypatch.setattr(faiss, "read_index", fails)
        with pytest.raises(ValueError, match="index.faiss is not a readable FAISS index .*build the index again"):
            vectors.load_index(path)


def test_an_index_type_the_checks_do_not_know_is_not_saved(tmp_path):
    lsh = faiss.IndexLSH(16, 32)
    lsh.add(_vectors(50, 16))
    with pytest.raises(ValueError, match="save_index saves flat, IVF-Flat.*this IndexLSH"):
        vectors.save_index(lsh, tmp_path / "lsh.faiss")
    assert not list(tmp_path.iterdir())


def test_ivf_indexes_build_for_narrow_vectors():
    assert [vectors.pq_parts(d) for d in (256, 64, 48, 16, 4)] == [32, 32, 16, 16, 4]  # 256-d: as before
    x = _vectors(1000, 16)
    for name, index in vectors.ivf_indexes(vectors.train_quantizer(x, 8), 8).items():
        index.train(x)
        index.add(x)
        index.nprobe = 8
        found = vectors.search(index, x[:20], 5)[1]
        assert (found[:, 0] == np.arange(20)).mean() >= 0.9, name  # each vector finds itself
    with pytest.raises(ValueError, match="none divides d=6"):
        vectors.ivf_indexes(faiss.IndexFlatIP(6), 4)
