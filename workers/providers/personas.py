"""Personas: named presets of system prompt, model, temperature and provider options (YAML).

Each ``*.yaml`` / ``*.yml`` file in ``personas_dir`` holds one persona (its name is the file's
stem unless it sets ``name``). With ``lazy_load_personas`` the files are read on the first call
that names a persona; without it, ``load_personas`` reads them all at once at start. A file
changed on disk is read again (the cache is keyed by the files' modification times).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workers.core.settings import Settings
from workers.providers.errors import ProviderConfigError

_FIELDS = {"name", "system", "model", "temperature", "max_tokens", "options", "description"}


@dataclass(frozen=True)
class Persona:
    """A preset for the AI skills."""

    name: str
    system: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_loaded: dict[str, tuple[tuple[tuple[str, float], ...], dict[str, Persona]]] = {}
_lock = threading.Lock()


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def _parse(path: Path) -> Persona:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ProviderConfigError(f"persona file {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ProviderConfigError(f"persona file {path} must hold a mapping of fields")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ProviderConfigError(
            f"persona file {path} has unknown fields {unknown}; known: {sorted(_FIELDS)}"
        )
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ProviderConfigError(f"persona file {path}: options must be a mapping")
    temperature = data.get("temperature")
    max_tokens = data.get("max_tokens")
    return Persona(
        name=str(data.get("name") or path.stem),
        system=None if data.get("system") is None else str(data["system"]),
        model=None if data.get("model") is None else str(data["model"]),
        temperature=None if temperature is None else float(temperature),
        max_tokens=None if max_tokens is None else int(max_tokens),
        options=dict(options),
        description=str(data.get("description") or ""),
    )


def load_personas(settings: Settings) -> dict[str, Persona]:
    """Every persona in ``personas_dir`` by name (read again when a file changes)."""
    if not settings.personas_dir:
        return {}
    directory = Path(settings.personas_dir).expanduser()
    files = _files(directory)
    signature = tuple((str(path), path.stat().st_mtime) for path in files)
    with _lock:
        cached = _loaded.get(str(directory))
        if cached is not None and cached[0] == signature:
            return cached[1]
    personas = {persona.name: persona for persona in map(_parse, files)}
    with _lock:
        _loaded[str(directory)] = (signature, personas)
    return personas


def persona(settings: Settings, name: str) -> Persona:
    """The persona called ``name``; the error lists the known ones."""
    personas = load_personas(settings)
    found = personas.get(name)
    if found is None:
        known = ", ".join(sorted(personas)) or "none"
        raise ProviderConfigError(
            f"no persona named {name!r} in personas_dir={settings.personas_dir!r}; known: {known}"
        )
    return found


def loaded_directories() -> list[str]:
    """The persona directories read so far in this process (tests of lazy loading)."""
    with _lock:
        return sorted(_loaded)
