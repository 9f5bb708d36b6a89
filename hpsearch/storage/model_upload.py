"""A model archive written once, in the background: a zip streamed straight into the artifact store.

The archive is produced into an os.pipe that the store's own `write` reads from, so its bytes go
to disk once (the store's file), not into a temporary directory, then a temporary zip, then the
store. Large entries (a model's weights) are written by their producer straight into the zip
entry; small ones (config, tokenizer) come from a directory.

One BackgroundWriter per worker runs the uploads on a thread. Its queue holds at most one job
(queue.Queue(maxsize=1)): a worker never has more than one model waiting to be written, so memory
stays bounded whatever the disk's speed. A job can be cancelled (Ctrl-C): its producer stops at its
next write and the partial file is removed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PIPE_BYTES = 1 << 20  # the pipe's buffer (Linux F_SETPIPE_SZ): fewer hand-overs between threads


class UploadCancelled(Exception):
    """The upload was cancelled before it finished (its trial was interrupted)."""


@dataclass(frozen=True)
class ZipEntry:
    """A file of the archive written by `write` into the open entry: `size` bytes exactly
    (known beforehand, so that zipfile picks ZIP64 for an entry over 4 GiB on a stream)."""

    name: str
    size: int
    write: Callable[[BinaryIO], None]


def write_archive(
    out: BinaryIO, directory: Path, entries: list[ZipEntry], cancelled: threading.Event
) -> None:
    """A stored (not deflated) zip of `directory`'s files and `entries` into the stream `out`.
    Safetensors weights barely compress; deflating them costs seconds."""
    guarded = _Guarded(out, cancelled)
    with zipfile.ZipFile(guarded, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(directory).as_posix())
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.file_size = entry.size
            with zf.open(info, "w") as f:
                entry.write(f)


def stream_into(store, artifact_id: str, produce: Callable[[BinaryIO], None]) -> None:
    """Write what `produce` writes to its stream into `store` as `artifact_id`, in one pass: the
    store reads a pipe on a helper thread. A failure on either side removes the partial file and
    raises (the store's error first: the producer's is then only the broken pipe)."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(AttributeError, OSError):
        import fcntl

        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    reader, writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    store_error: list[BaseException] = []

    def consume() -> None:
        try:
            store.write(artifact_id, reader)
        except BaseException as e:  # noqa: BLE001 - handed to the producer's thread below
            store_error.append(e)
        finally:
            reader.close()  # a producer still writing gets a broken pipe, not a hang

    consumer = threading.Thread(target=consume, name="hpsearch-store-write", daemon=True)
    consumer.start()
    produce_error: BaseException | None = None
    try:
        produce(writer)
    except BaseException as e:  # noqa: BLE001 - re-raised below, after the consumer has ended
        produce_error = e
    finally:
        with contextlib.suppress(OSError):
            writer.close()  # EOF: the store's write ends (with a partial file after a failure)
        consumer.join()
    error = store_error[0] if store_error else produce_error
    if error is not None:
        with contextlib.suppress(Exception):
            store.remove(artifact_id)
        raise error


class BackgroundWriter:
    """Runs jobs one at a time on a thread, at most one waiting (submit blocks while one does)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> Future:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hpsearch-upload", daemon=True)
            self._thread.start()
        future: Future = Future()
        self._jobs.put((job, future))
        return future

    def close(self) -> None:
        """Finish every submitted job, then stop the thread (a worker's exit: nothing left behind
        half-written by a thread that dies with the process)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as e:  # noqa: BLE001 - the submitter reads it from the future
                future.set_exception(e)
            # The job's closure holds the trial's model: not kept while waiting for the next one.
            del item, job, future


class _Guarded:
    """A write-only stream that raises UploadCancelled once `cancelled` is set."""

    def __init__(self, out: BinaryIO, cancelled: threading.Event):
        self._out, self._cancelled = out, cancelled

    def write(self, data) -> int:
        if self._cancelled.is_set():
            raise UploadCancelled("upload cancelled")
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()

    def tell(self) -> int:
        raise OSError("not seekable")  # zipfile then writes data descriptors, as on a pipe

    def seekable(self) -> bool:
        return False
