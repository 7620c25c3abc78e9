"""The `scrm` command line and the pipeline steps that dvc.yaml and MLproject call."""
