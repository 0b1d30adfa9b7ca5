"""Pipeline stages: thin entry points `python -m tasks.<stage>` that dvc.yaml runs from the project root."""
