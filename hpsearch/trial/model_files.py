"""A trained model's files for the kept-model archive, its weights streamed rather than saved.

`save_pretrained` would write the weights to a temporary file that is then copied into the archive.
Here its small files (config, generation config; the tokenizer's) still go to a directory, but the
weights become one ZipEntry that writes the safetensors format (an 8-byte header length, a JSON
header, the raw tensors) straight into the archive entry: the weights are written once, and no
copy of them is made in memory (a GPU tensor comes to the CPU one at a time). The state dict is
the one save_pretrained writes (tied weights dropped, weight conversions reverted), so
from_pretrained reads the archive as it reads save_pretrained's files.

A LoRA model's adapter and head are small: they are saved to the directory as before.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from transformers import modeling_utils

from hpsearch.storage.model_upload import ZipEntry
from hpsearch.trial.lora import is_adapter, save_adapter

WEIGHTS_FILE = "model.safetensors"

# safetensors' dtype names (https://github.com/huggingface/safetensors, format.md).
DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def model_files(model, tokenizer) -> Callable[[Path], list[ZipEntry]]:
    """What BestModelKeeper's writer calls, on its thread, to archive `model` and `tokenizer`."""

    def save(directory: Path) -> list[ZipEntry]:
        tokenizer.save_pretrained(directory)
        if is_adapter(model):
            save_adapter(model, directory)
            return []
        model.save_pretrained(directory, state_dict={})  # config files only: no weights
        return [safetensors_entry(WEIGHTS_FILE, weights_to_save(model), {"format": "pt"})]

    return save


def weights_to_save(model) -> dict[str, torch.Tensor]:
    """The tensors save_pretrained writes for `model` (transformers' own steps)."""
    state = model.state_dict()
    for key in model._keys_to_ignore_on_save or ():
        state.pop(key, None)
    state = modeling_utils.remove_tied_weights_from_state_dict(state, model)
    return modeling_utils.revert_weight_conversion(model, state)


def safetensors_entry(name: str, tensors: dict[str, torch.Tensor], metadata: dict) -> ZipEntry:
    """A zip entry that writes `tensors` in the safetensors format as it goes. Tensors are laid
    out as safetensors lays them out (widest dtype first, then by name), so each stays aligned."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict = {"__metadata__": metadata}
    offset = 0
    for key in order:
        tensor = tensors[key]
        n_bytes = tensor.numel() * tensor.element_size()
        header[key] = {
            "dtype": DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + n_bytes],
        }
        offset += n_bytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned

    def write(out: BinaryIO) -> None:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for key in order:
            tensor = tensors[key].detach().to("cpu").contiguous().reshape(-1)
            if tensor.numel():
                out.write(memoryview(tensor.view(torch.uint8).numpy()))

    return ZipEntry(name, 8 + len(raw) + offset, write)
