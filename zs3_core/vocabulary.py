"""Validated class vocabularies.

Class names arrive from operators over a ROS service or a command line, so every name is
checked before any work is done: a bad request is refused with a reason and the vocabulary
in force stays as it was.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable, Optional

MAX_CLASSES = 1024          # mono16 label images could hold 65,534; text encoding and the
                            # (C, H, W) probability map make thousands impractical anyway.
MAX_NAME_LENGTH = 200       # characters; CLIP's 77-token context is the real bound (checked at encoding)
MAX_TEMPLATE_LENGTH = 300
DEFAULT_TEMPLATE = "a photo of a {}."


class VocabularyError(ValueError):
    """A vocabulary or prompt template was refused; the message says why."""


def _control_characters(text: str) -> list[str]:
    return [repr(ch) for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co")]


def validate_template(template: str) -> str:
    """A prompt template with exactly one "{}" placeholder, e.g. "a photo of a {}."."""
    if not isinstance(template, str):
        raise VocabularyError(f"prompt template must be a string, got {type(template).__name__}")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise VocabularyError(f"prompt template is {len(template)} characters long; the limit is {MAX_TEMPLATE_LENGTH}")
    bad = _control_characters(template)
    if bad:
        raise VocabularyError(f"prompt template contains control characters {', '.join(bad[:5])}")
    if template.count("{}") != 1:
        raise VocabularyError(f"prompt template must contain exactly one '{{}}' placeholder, got {template!r}")
    try:
        template.format("x")
    except (IndexError, KeyError, ValueError) as err:
        raise VocabularyError(f"prompt template {template!r} cannot be formatted: {err}") from None
    return template


def validate_class_names(names: Iterable[str], max_classes: int = MAX_CLASSES) -> tuple[str, ...]:
    """Stripped class names, refused with a reason when the list is unusable."""
    if isinstance(names, str):
        raise VocabularyError("class names must be a list of strings, not one string "
                              "(use [\"a\", \"b\"] or a comma-separated string through parse_class_list)")
    names = list(names)
    if not names:
        raise VocabularyError("the vocabulary is empty: give at least one class name")
    if len(names) > max_classes:
        raise VocabularyError(f"{len(names)} class names given; at most {max_classes} are supported")
    cleaned: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise VocabularyError(f"class {i} is not a string: {name!r}")
        stripped = " ".join(name.split())
        if not stripped:
            raise VocabularyError(f"class {i} is empty or only whitespace")
        bad = _control_characters(name)
        if bad:
            raise VocabularyError(f"class {i} contains control characters {', '.join(bad[:5])}")
        if len(stripped) > MAX_NAME_LENGTH:
            raise VocabularyError(f"class {i} is {len(stripped)} characters long; the limit is {MAX_NAME_LENGTH}")
        key = stripped.casefold()
        if key in seen:
            raise VocabularyError(f"class {i} {stripped!r} duplicates class {seen[key]}")
        seen[key] = i
        cleaned.append(stripped)
    return tuple(cleaned)


def parse_class_list(text: str) -> list[str]:
    """"person, forklift ,pallet" → ["person", "forklift", "pallet"] (empty items kept, so
    validation can point at them)."""
    return [part.strip() for part in text.split(",")] if text.strip() else []


@dataclass(frozen=True)
class Vocabulary:
    """Class names and the prompt template that turns each into a sentence for CLIP."""
    names: tuple[str, ...]
    template: str = DEFAULT_TEMPLATE

    @classmethod
    def create(cls, names: Iterable[str], template: Optional[str] = None,
               max_classes: int = MAX_CLASSES) -> "Vocabulary":
        return cls(validate_class_names(names, max_classes),
                   validate_template(template if template is not None else DEFAULT_TEMPLATE))

    def prompts(self) -> list[str]:
        return [self.template.format(name) for name in self.names]

    def __len__(self) -> int:
        return len(self.names)
