"""tunepipe: reproducible fine-tuning of Hugging Face transformers as a DVC + Prefect pipeline."""

__version__ = "0.1.0"
