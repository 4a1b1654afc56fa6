"""Which class list is in force at each moment of a bag, as a user would switch it live.

On a robot the vocabulary changes through `~/set_vocabulary` while frames keep flowing;
bag evaluation replays that with a schedule of (bag time, class list) entries. A single
`--classes` list or `--vocabulary FILE` is a one-entry schedule.

Schedule file (YAML), times in seconds from the start of the bag:
    - {at: 0.0, classes: [red circle, blue ring]}
    - {at: 5.0, classes: [red circle|red disc, blue ring, green star], template: "a photo of a {}."}
    - {at: 9.0, classes: [red circle, blue ring], templates: [imagenet]}
Vocabulary file: a YAML list, a YAML mapping {classes: [...], template: ... or templates: [...]},
or one name a line. A class may carry synonyms ("red circle|red disc"); it is scored under
its first name.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import yaml

from zs3_core.vocabulary import class_name, parse_class_list


class ScheduleError(ValueError):
    """A vocabulary or schedule file that cannot be used; the message says why."""


@dataclass(frozen=True)
class ScheduleEntry:
    at_s: float
    classes: tuple[str, ...]
    template: str | None = None
    templates: tuple[str, ...] = ()      # an ensemble instead of `template` (templates or set names)


@dataclass(frozen=True)
class VocabularySchedule:
    entries: tuple[ScheduleEntry, ...]

    def __post_init__(self):
        if not self.entries:
            raise ScheduleError("the vocabulary schedule is empty")
        times = [e.at_s for e in self.entries]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ScheduleError(f"schedule times must increase strictly, got {times}")
        for e in self.entries:
            if not e.classes:
                raise ScheduleError(f"schedule entry at {e.at_s} s has no classes")

    @classmethod
    def single(cls, classes, template: str | None = None, templates=()) -> VocabularySchedule:
        return cls((ScheduleEntry(0.0, tuple(classes), template, tuple(templates or ())),))

    def index_at(self, t_s: float) -> int:
        """Index of the entry in force at `t_s` seconds (the first entry before its time)."""
        return max(bisect.bisect_right([e.at_s for e in self.entries], t_s) - 1, 0)

    @property
    def all_classes(self) -> list[str]:
        """Every class of every entry (by its name, the first synonym), in order of first
        appearance: the evaluation classes."""
        seen: dict[str, None] = {}
        for e in self.entries:
            seen.update(dict.fromkeys(class_name(c) for c in e.classes))
        return list(seen)


def load_vocabulary_file(path: str | Path) -> VocabularySchedule:
    path = Path(path)
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict):
        return VocabularySchedule.single([str(c) for c in data.get("classes") or []],
                                         data.get("template"), _templates(data, path))
    if isinstance(data, list) and all(isinstance(c, str) for c in data):
        return VocabularySchedule.single(data)
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not names:
        raise ScheduleError(f"{path} holds no class names")
    return VocabularySchedule.single(names)


def load_schedule_file(path: str | Path) -> VocabularySchedule:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, list):
        raise ScheduleError(f"{path}: expected a YAML list of {{at: seconds, classes: [...]}} entries")
    entries = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "at" not in item or "classes" not in item:
            raise ScheduleError(f"{path}: entry {i} needs 'at' (seconds) and 'classes' (list)")
        classes = item["classes"]
        if isinstance(classes, str):
            classes = parse_class_list(classes)
        entries.append(ScheduleEntry(float(item["at"]), tuple(str(c) for c in classes),
                                     item.get("template"), _templates(item, path)))
    return VocabularySchedule(tuple(entries))


def _templates(item: dict, path: str | Path) -> tuple[str, ...]:
    """The optional `templates:` list of a vocabulary or schedule entry."""
    templates = item.get("templates") or ()
    if isinstance(templates, str):
        templates = [templates]
    if not isinstance(templates, list):
        raise ScheduleError(f"{path}: 'templates' must be a list of templates or set names, got {templates!r}")
    return tuple(str(t) for t in templates)
