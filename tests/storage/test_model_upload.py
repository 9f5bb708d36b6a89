"""The kept model's archive: streamed once into a real artifact store, never left half-written."""

from __future__ import annotations

import threading
import zipfile

import pytest
from optuna.artifacts import FileSystemArtifactStore

from hpsearch.storage.model_upload import (
    PIPE_BYTES,
    BackgroundWriter,
    UploadCancelled,
    ZipEntry,
    stream_into,
    write_archive,
)

BIG = bytes(range(256)) * (3 * PIPE_BYTES // 256 + 7)  # several pipe buffers, not a multiple


@pytest.fixture
def store(tmp_path):
    (tmp_path / "store").mkdir()
    return FileSystemArtifactStore(str(tmp_path / "store"))


def small_files(tmp_path):
    directory = tmp_path / "small"
    (directory / "sub").mkdir(parents=True)
    (directory / "config.json").write_text('{"a": 1}')
    (directory / "sub" / "vocab.txt").write_text("x\ny\n")
    return directory


def test_an_archive_is_streamed_into_the_store(tmp_path, store):
    entry = ZipEntry("model.safetensors", len(BIG), lambda out: out.write(BIG))
    directory = small_files(tmp_path)
    stream_into(store, "a", lambda out: write_archive(out, directory, [entry], threading.Event()))
    # The store holds one zip: the directory's files and the streamed entry, byte for byte.
    with zipfile.ZipFile(tmp_path / "store" / "a") as zf:
        assert sorted(zf.namelist()) == ["config.json", "model.safetensors", "sub/vocab.txt"]
        assert zf.read("model.safetensors") == BIG
        assert zf.read("sub/vocab.txt") == b"x\ny\n"
        assert zf.testzip() is None


def test_a_failing_producer_leaves_no_file_and_raises(tmp_path, store):
    def produce(out):
        out.write(BIG)
        raise ValueError("tensor gone")

    with pytest.raises(ValueError, match="tensor gone"):
        stream_into(store, "a", produce)
    # The partial file the store wrote from the pipe is removed.
    assert list((tmp_path / "store").iterdir()) == []


def test_a_failing_store_raises_its_error_not_the_broken_pipe(tmp_path):
    store = FileSystemArtifactStore(str(tmp_path / "missing"))  # its directory does not exist
    with pytest.raises(FileNotFoundError):
        stream_into(store, "a", lambda out: out.write(BIG))


def test_a_cancelled_archive_stops_and_leaves_no_file(tmp_path, store):
    cancelled = threading.Event()
    cancelled.set()
    entry = ZipEntry("model.safetensors", len(BIG), lambda out: out.write(BIG))
    with pytest.raises(UploadCancelled):
        stream_into(store, "a", lambda out: write_archive(out, tmp_path, [entry], cancelled))
    assert list((tmp_path / "store").iterdir()) == []


def test_the_background_writer_holds_at_most_one_waiting_job():
    writer = BackgroundWriter()
    release, done = threading.Event(), []
    first = writer.submit(lambda: (release.wait(), done.append(1)))
    second = writer.submit(lambda: done.append(2))  # waits in the queue while the first runs
    third = threading.Thread(target=lambda: writer.submit(lambda: done.append(3)))
    third.start()
    third.join(timeout=0.5)
    # The third submit blocks: one job running, one waiting is all a worker may hold.
    assert third.is_alive() and done == []
    release.set()
    third.join()
    writer.close()
    # close() ran every submitted job, in order, and their futures carry the results.
    assert done == [1, 2, 3]
    assert first.done() and second.done()


def test_a_failed_job_hands_its_error_to_its_future():
    writer = BackgroundWriter()

    def fail():
        raise OSError("No space left on device")

    future = writer.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        future.result()
    # The writer goes on with the next job.
    assert writer.submit(lambda: 7).result() == 7
    writer.close()
