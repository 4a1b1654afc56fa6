"""Vocabulary validation: every unusable request is refused with a reason."""
import pytest

from zs3_core.vocabulary import Vocabulary, VocabularyError, parse_class_list


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
