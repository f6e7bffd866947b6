"""Small shared helpers: atomic file writes, provenance, seeding."""

from ocelli.utils.io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text
from ocelli.utils.provenance import provenance
from ocelli.utils.seed import seed_everything

__all__ = [
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "provenance",
    "seed_everything",
]
