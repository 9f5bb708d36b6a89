"""The transformers classes a task names (its Auto model class, collator, Trainer and arguments).

Tasks name them rather than import them (hpsearch.tasks stays free of torch and transformers);
this is where a name becomes the class.
"""

from __future__ import annotations


def transformers_class(name: str) -> type:
    import transformers

    try:
        return getattr(transformers, name)
    except AttributeError:
        raise AttributeError(f"transformers {transformers.__version__} has no {name}") from None
