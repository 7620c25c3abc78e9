"""Entity extraction for Chinese CRM text: one registry (`types.yaml`), one `extract_entities`.

Three sources feed it: regex-and-checksum patterns (patterns/, one module per family), word
lists (gazetteers/) and the spans of a learned CLUENER-style NER model, which callers pass in.
Self-contained (stdlib and PyYAML only) so it can be bundled into an MLflow pyfunc model.
"""

from training.entities.extract import Entity, Extractor, extract_entities
from training.entities.registry import EntityType, load_registry

__all__ = ["Entity", "EntityType", "Extractor", "extract_entities", "load_registry"]
