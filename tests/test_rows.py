"""Images on disk read a few rows at a time (ltbench.data.rows): what the streaming stages of
Table 1 and the classifier read their splits through."""

import numpy as np
import pytest
import torch

from ltbench.data.rows import ConcatRows, RowFile, RowWriter


@pytest.fixture
def array_file(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (37, 5, 6), dtype=np.uint8)
    path = str(tmp_path / "a.npy")
    with RowWriter(path, a.shape, np.uint8) as w:
        w.write(a[:10])
        w.write(a[10:])
    return a, path


def test_row_file_reads_what_numpy_wrote_and_numpy_reads_what_the_writer_wrote(array_file):
    a, path = array_file
    np.testing.assert_array_equal(np.load(path), a)
    f = RowFile(path)
    assert len(f) == 37 and f.shape == a.shape and f.dtype == np.uint8
    idx = np.array([5, 3, 4, 36, 0, 0, -1])
    np.testing.assert_array_equal(f[idx], a[idx])  # unsorted, repeated, negative
    np.testing.assert_array_equal(f[3:9], a[3:9])
    np.testing.assert_array_equal(f[::4], a[::4])
    np.testing.assert_array_equal(f[7], a[7])
    mask = a[:, 0, 0] > 100
    np.testing.assert_array_equal(f[mask], a[mask])
    np.testing.assert_array_equal(np.asarray(f), a)
    b = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.save(path, b)  # numpy's own header
    np.testing.assert_array_equal(RowFile(path)[[2, 0]], b[[2, 0]])
    with pytest.raises(IndexError):
        f[[37]]


def test_row_file_refuses_a_truncated_file(array_file):
    _, path = array_file
    with open(path, "r+b") as fh:
        fh.truncate(300)
    with pytest.raises(ValueError, match="truncated"):
        RowFile(path)


def test_row_writer_is_atomic_and_can_end_short(tmp_path):
    path = str(tmp_path / "b.npy")
    with pytest.raises(RuntimeError):
        with RowWriter(path, (4, 2), np.uint8) as w:
            w.write(np.ones((2, 2)))
            raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())  # nothing left: no partial file, no temporary
    with pytest.raises(ValueError, match="wrote 2 of 4"):
        with RowWriter(path, (4, 2), np.uint8) as w:
            w.write(np.ones((2, 2)))
    with RowWriter(path, (4, 2), np.uint8, allow_fewer=True) as w:  # skipped images: fewer rows
        w.write(np.full((3, 2), 7))
    np.testing.assert_array_equal(np.load(path), np.full((3, 2), 7, np.uint8))
    with pytest.raises(ValueError, match="does not fit"):
        RowWriter(str(tmp_path / "c.npy"), (1, 2), np.uint8).write(np.ones((2, 2)))


def test_concat_rows_indexes_two_sources_as_one(array_file):
    a, path = array_file
    extra = np.zeros((3, 5, 6), np.uint8)
    c = ConcatRows(RowFile(path), extra)
    both = np.concatenate([a, extra])
    assert c.shape == both.shape
    idx = np.array([36, 37, 39, 0])
    np.testing.assert_array_equal(c[idx], both[idx])
    np.testing.assert_array_equal(c[30:40], both[30:40])
    with pytest.raises(ValueError, match="row shapes differ"):
        ConcatRows(RowFile(path), np.zeros((1, 5, 5), np.uint8))


def test_classifier_trains_and_scores_from_disk_as_from_memory(tmp_path):
    """The harness reads its batches from a RowFile: the same network and scores as from the
    array in memory."""
    from ltbench.eval.classifier import ClassifierConfig, predict, train_classifier

    g = np.random.default_rng(0)
    x = g.integers(0, 256, (40, 32, 32), dtype=np.uint8)
    y = (g.random((40, 3)) < 0.4).astype(np.uint8)
    path = str(tmp_path / "x.npy")
    np.save(path, x)
    cfg = ClassifierConfig(input_size=32, steps=2, batch_size=8)
    gen = np.full((6, 32, 32), 200, np.uint8)
    yy = np.concatenate([y, np.ones((6, 3), np.uint8)])
    torch.manual_seed(0)
    a = predict(train_classifier(np.concatenate([x, gen]), yy, cfg, seed=3, n_real=40), x, cfg)
    b = predict(train_classifier(ConcatRows(RowFile(path), gen), yy, cfg, seed=3, n_real=40), RowFile(path), cfg)
    np.testing.assert_array_equal(a, b)
