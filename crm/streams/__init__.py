"""Stream processors over the event bus, keyed by customer: conversation aggregates (online
features), the offline turn history (what `dvc repro` trains on), analytics counters, and the
runner that feeds them with checkpoints committed together with their effects."""
