"""The `scrm` command groups, one module each; `pipelines.cli` assembles them."""
