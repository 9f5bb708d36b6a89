"""What the tokenized-data cache is keyed by: the content of the data files and of the tokenizer.

A file's fingerprint is the SHA-256 of its bytes, so a file rewritten in the same second, or a copy
with preserved mtime (`cp -p`, `shutil.copy2`, rsync -t), cannot serve stale tokens. Reading a large
file costs a pass over it, so its digest is remembered in the cache directory under its stat:
path, size, mtime_ns, ctime_ns, inode and device. Any write to the file, or a copy or rename over
it, changes its ctime or inode (ctime cannot be set back from user space), so a remembered digest
is reused only for the very file it was computed from, by every worker and every later run.

A tokenizer's fingerprint is its class, its name or path, its special tokens and settings and the
whole of its vocabulary and pipeline (the fast tokenizer's JSON), so two tokenizers that encode
differently never share tokens, whatever model reference they came with.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

DIGEST_DIR = "digests"  # under the cache directory: one small file per (file, stat)
_CHUNK = 1 << 20


def file_fingerprint(path: Path, cache_dir: Path) -> str:
    """The SHA-256 of `path`'s bytes, or of a folder's files (their relative paths and digests);
    remembered under `cache_dir` while the file's stat is unchanged."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = [[str(p.relative_to(path)), file_fingerprint(p, cache_dir)] for p in files]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    stat = path.stat()
    identity = [
        str(path.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
        stat.st_ino,
        stat.st_dev,
    ]
    remembered = (
        cache_dir / DIGEST_DIR / hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]
    )
    try:
        return remembered.read_text().strip()
    except FileNotFoundError:
        pass
    digest = _digest_file(path)
    _write_atomically(remembered, digest)
    return digest


def _digest_file(path: Path) -> str:
    """The SHA-256 of a file's bytes: the one full read of it a changed stat costs."""
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    """Written whole or not at all; two workers remembering the same digest at once is harmless."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".staging-", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(staging, path)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """The SHA-256 of what makes `tokenizer` encode as it does (see the module's docstring)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pipeline = (
        backend.to_str()
        if backend is not None
        else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    )
    identity = {
        "class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
        "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
        "special_tokens": tokenizer.special_tokens_map,
        "settings": {
            key: getattr(tokenizer, key, None)
            for key in ("padding_side", "truncation_side", "model_max_length")
        },
        "pipeline": hashlib.sha256(pipeline.encode()).hexdigest(),
    }
    encoded = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()
