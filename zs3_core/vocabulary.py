"""Validated class vocabularies: class names with their synonyms, and prompt templates.

Class names arrive from operators over a ROS service or a command line, so every name is
checked before any work is done: a bad request is refused with a reason and the vocabulary
in force stays as it was.

Operators name one thing in several ways, so a class may be written with synonyms,
"person|pedestrian|human": one class, named by its first synonym ("person"), whose text
embedding averages all of them (`zs3_core.class_embeddings`). Listing the synonyms as
separate classes instead would split the pixels of one object between labels. Likewise a
vocabulary may carry several prompt templates (an ensemble, CLIP Sec. 3.1.4), given one by
one or by a built-in set's name (`zs3_core.prompt_templates`, e.g. "imagenet").
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from zs3_core.prompt_templates import TEMPLATE_SETS

MAX_CLASSES = 1024          # mono16 label images could hold 65,534; text encoding and the
                            # (C, H, W) probability map make thousands impractical anyway.
MAX_NAME_LENGTH = 200       # characters; CLIP's 77-token context is the real bound (checked at encoding)
MAX_TEMPLATE_LENGTH = 300
DEFAULT_TEMPLATE = "a photo of a {}."
SYNONYM_SEPARATOR = "|"
MAX_SYNONYMS = 16           # per class: more phrasings than this add encoding time, not meaning
MAX_TEMPLATES = 100         # CLIP's ImageNet set, the largest published ensemble in use, has 80
MAX_PROMPTS = 20_000        # sentences encoded for one vocabulary (classes × synonyms × templates), as many
                            # as the text cache holds; ViT-B/16 encodes 1,600 in minutes on 2 CPU cores
                            # (docs/benchmarks.md)


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


def split_synonyms(entry: str) -> list[str]:
    """"person | pedestrian|human" → ["person", "pedestrian", "human"] (whitespace collapsed;
    empty items kept, so validation can point at them)."""
    return [" ".join(part.split()) for part in entry.split(SYNONYM_SEPARATOR)]


def class_name(entry: str) -> str:
    """The name a class written with synonyms goes by: its first synonym."""
    return split_synonyms(entry)[0]


def validate_classes(entries: Iterable[str], max_classes: int = MAX_CLASSES) -> tuple[tuple[str, ...], ...]:
    """Each class's synonyms (its name first), refused with a reason when the list is unusable.

    A name may not occur in two classes, as a name or as a synonym: the two classes would
    compete for the same pixels. Within one class a repeated synonym is kept (it weighs
    twice in the class's mean embedding; "person|person" is the class "person").
    """
    if isinstance(entries, str):
        raise VocabularyError("class names must be a list of strings, not one string "
                              "(use [\"a\", \"b\"] or a comma-separated string through parse_class_list)")
    entries = list(entries)
    if not entries:
        raise VocabularyError("the vocabulary is empty: give at least one class name")
    if len(entries) > max_classes:
        raise VocabularyError(f"{len(entries)} class names given; at most {max_classes} are supported")
    classes: list[tuple[str, ...]] = []
    owner: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, str):
            raise VocabularyError(f"class {i} is not a string: {entry!r}")
        synonyms = split_synonyms(entry)
        if len(synonyms) == 1 and not synonyms[0]:
            raise VocabularyError(f"class {i} is empty or only whitespace")
        bad = _control_characters(entry)
        if bad:
            raise VocabularyError(f"class {i} contains control characters {', '.join(bad[:5])}")
        if len(synonyms) > MAX_SYNONYMS:
            raise VocabularyError(f"class {i} {synonyms[0]!r} has {len(synonyms)} synonyms; at most "
                                  f"{MAX_SYNONYMS} are supported")
        for k, synonym in enumerate(synonyms):
            if not synonym:
                raise VocabularyError(f"class {i} {entry.strip()!r}: synonym {k} is empty or only whitespace")
            if len(synonym) > MAX_NAME_LENGTH:
                raise VocabularyError(f"class {i} is {len(synonym)} characters long; the limit is {MAX_NAME_LENGTH}")
            key = synonym.casefold()
            if owner.get(key, i) != i:
                j = owner[key]
                what = "duplicates class" if k == 0 and synonym.casefold() == classes[j][0].casefold() else \
                    "repeats a name of class"
                raise VocabularyError(f"class {i} {synonyms[0]!r}: {synonym!r} {what} {j} {classes[j][0]!r}")
            owner[key] = i
        classes.append(tuple(synonyms))
    return tuple(classes)


def validate_class_names(names: Iterable[str], max_classes: int = MAX_CLASSES) -> tuple[str, ...]:
    """Stripped class names (the first synonym of each), refused with a reason when the list is unusable."""
    return tuple(synonyms[0] for synonyms in validate_classes(names, max_classes))


def resolve_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Templates with built-in set names expanded, each validated; refused with a reason when
    the list is empty, too long, repeats a template or holds an item that is neither."""
    if isinstance(templates, str):
        raise VocabularyError("prompt templates must be a list of strings, not one string")
    resolved: list[str] = []
    for i, item in enumerate(templates):
        if isinstance(item, str) and item.strip() in TEMPLATE_SETS:
            resolved.extend(TEMPLATE_SETS[item.strip()])
            continue
        try:
            resolved.append(validate_template(item))
        except VocabularyError as err:
            raise VocabularyError(f"prompt template {i}: {err} (nor is it a built-in set: "
                                  f"{', '.join(TEMPLATE_SETS)})") from None
    if not resolved:
        raise VocabularyError("the prompt template list is empty: give at least one template or a set name")
    if len(resolved) > MAX_TEMPLATES:
        raise VocabularyError(f"{len(resolved)} prompt templates given; at most {MAX_TEMPLATES} are supported")
    seen: dict[str, int] = {}
    for i, template in enumerate(resolved):
        if template in seen:
            raise VocabularyError(f"prompt template {i} {template!r} repeats template {seen[template]}")
        seen[template] = i
    return tuple(resolved)


def parse_class_list(text: str) -> list[str]:
    """"person, forklift|pallet truck ,pallet" → ["person", "forklift|pallet truck", "pallet"]
    (empty items kept, so validation can point at them)."""
    return [part.strip() for part in text.split(",")] if text.strip() else []


@dataclass(frozen=True)
class Vocabulary:
    """Classes (each a name and its synonyms) and the prompt templates that turn every
    synonym into sentences for CLIP. `names[i]` is `synonyms[i][0]`."""
    names: tuple[str, ...]
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    synonyms: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self):
        if not self.synonyms:   # plain names: each class is its own only synonym
            object.__setattr__(self, "synonyms", tuple((name,) for name in self.names))

    @classmethod
    def create(cls, names: Iterable[str], template: Optional[str] = None,
               max_classes: int = MAX_CLASSES, templates: Optional[Sequence[str]] = None) -> "Vocabulary":
        """Validated classes ("name|synonym|…") with one `template` or an ensemble `templates`
        (templates or set names), not both; neither: DEFAULT_TEMPLATE."""
        if template and templates:
            raise VocabularyError("give one prompt template or a list of prompt templates, not both")
        synonyms = validate_classes(names, max_classes)
        resolved = resolve_templates(templates) if templates else \
            (validate_template(template if template is not None else DEFAULT_TEMPLATE),)
        prompts = sum(len(s) for s in synonyms) * len(resolved)
        if prompts > MAX_PROMPTS:
            raise VocabularyError(f"{len(synonyms)} classes with {sum(len(s) for s in synonyms)} synonyms in all "
                                  f"× {len(resolved)} templates make {prompts} sentences to encode; at most "
                                  f"{MAX_PROMPTS} are supported (use fewer templates or synonyms)")
        return cls(tuple(s[0] for s in synonyms), resolved, synonyms)

    @property
    def template(self) -> str:
        """The first template (the only one unless an ensemble is in force)."""
        return self.templates[0]

    def class_prompts(self) -> list[list[str]]:
        """Per class, every sentence its embedding averages: synonyms × templates."""
        return [[template.format(synonym) for synonym in synonyms for template in self.templates]
                for synonyms in self.synonyms]

    def prompts(self) -> list[str]:
        """The first sentence of each class (its name in the first template)."""
        return [self.template.format(name) for name in self.names]

    def written_classes(self) -> list[str]:
        """Each class as it would be written: "person|pedestrian|human"."""
        return [SYNONYM_SEPARATOR.join(synonyms) for synonyms in self.synonyms]

    def __len__(self) -> int:
        return len(self.names)
