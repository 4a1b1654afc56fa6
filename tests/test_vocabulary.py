"""Vocabulary validation: every unusable request (names, synonyms, templates) is refused with a reason."""
import pytest

from zs3_core.prompt_templates import IMAGENET_TEMPLATES
from zs3_core.vocabulary import (DEFAULT_TEMPLATE, MAX_SYNONYMS, MAX_TEMPLATES, Vocabulary, VocabularyError, class_name,
                                 parse_class_list)


def test_names_are_stripped_and_template_applied():
    vocab = Vocabulary.create(["  person ", "fork  lift"], "a photo of a {}.")
    assert vocab.names == ("person", "fork lift")
    assert vocab.prompts() == ["a photo of a person.", "a photo of a fork lift."]


@pytest.mark.parametrize("names, reason", [
    ([], "empty"),
    (["person", "Person"], "duplicates"),
    (["person", ""], "empty or only whitespace"),
    (["person", " \t "], "empty or only whitespace"),
    (["x%d" % i for i in range(5000)], "at most"),
    (["a" * 10_000], "characters long"),
    (["per\x00son"], "control characters"),
    (["spill\n"], "control characters"),
    (["person", 3], "not a string"),
])
def test_bad_vocabularies_are_refused_with_a_reason(names, reason):
    with pytest.raises(VocabularyError, match=reason):
        Vocabulary.create(names)


def test_a_single_string_is_not_mistaken_for_a_list_of_characters():
    with pytest.raises(VocabularyError, match="list of strings"):
        Vocabulary.create("person")


@pytest.mark.parametrize("template", ["no placeholder", "{} and {}", "{0}", "a {} \x07"])
def test_bad_templates_are_refused(template):
    with pytest.raises(VocabularyError):
        Vocabulary.create(["person"], template)


def test_parse_class_list_keeps_empty_items_for_validation():
    assert parse_class_list("person, forklift ,pallet") == ["person", "forklift", "pallet"]
    assert parse_class_list("a,,b") == ["a", "", "b"]
    assert parse_class_list("  ") == []


def test_a_class_with_synonyms_is_named_by_the_first():
    vocab = Vocabulary.create([" person | pedestrian|human ", "fork lift"], "a photo of a {}.")
    assert vocab.names == ("person", "fork lift")
    assert vocab.synonyms == (("person", "pedestrian", "human"), ("fork lift",))
    assert vocab.written_classes() == ["person|pedestrian|human", "fork lift"]
    assert vocab.class_prompts()[0] == ["a photo of a person.", "a photo of a pedestrian.", "a photo of a human."]


def test_a_template_set_is_selected_by_name_and_may_join_other_templates():
    vocab = Vocabulary.create(["person"], templates=["imagenet", "a {} on a robot's camera."])
    assert vocab.templates == IMAGENET_TEMPLATES + ("a {} on a robot's camera.",)
    assert len(vocab.class_prompts()[0]) == 81


@pytest.mark.parametrize("names, templates, reason", [
    (["person|", "car"], None, "synonym 1 is empty"),
    (["person||human"], None, "synonym 1 is empty"),
    (["|person"], None, "synonym 0 is empty"),
    (["person|human", "human"], None, "repeats a name of class 0"),
    (["person", "car|Person"], None, "repeats a name of class 0"),
    (["|".join(f"p{i}" for i in range(MAX_SYNONYMS + 1))], None, "synonyms; at most"),
    (["person"], ["a {}."] * 2, "repeats template 0"),
    (["person"], ["imagenet", "a photo of a {}."], "repeats template"),
    (["person"], ["a {} and a {}."], "exactly one"),
    (["person"], ["a photo"], "nor is it a built-in set: imagenet"),
    (["person"], [], None),
    (["person"], ["a {}."] + [f"{i} {{}}" for i in range(MAX_TEMPLATES)], "at most"),
    ([f"thing {i}|item {i}|object {i}" for i in range(90)], ["imagenet"], "sentences to encode"),
])
def test_bad_synonyms_and_template_lists_are_refused(names, templates, reason):
    if reason is None:   # an empty list means "no ensemble": the single default template
        assert Vocabulary.create(names, templates=templates).templates == (DEFAULT_TEMPLATE,)
        return
    with pytest.raises(VocabularyError, match=reason):
        Vocabulary.create(names, templates=templates)


def test_one_template_and_a_list_together_are_refused():
    with pytest.raises(VocabularyError, match="not both"):
        Vocabulary.create(["person"], "a {}.", templates=["imagenet"])


def test_a_synonym_repeated_within_its_class_is_kept():
    assert Vocabulary.create(["person|Person"]).synonyms == (("person", "Person"),)
    assert class_name(" person |pedestrian") == "person"
