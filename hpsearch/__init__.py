"""hpsearch: hyperparameter search orchestration for fine-tuning Hugging Face transformers."""

__version__ = "0.1.0"
