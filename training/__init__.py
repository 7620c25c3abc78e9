"""Model training, evaluation and registration. Knows nothing of the CLI or of serving."""
