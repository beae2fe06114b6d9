import re

import pytest

from synthaug import imagenet_data as d


def test_table_shape_and_order():
    w = d.wnids()
    assert d.num_classes == d.NUM_CLASSES == len(w) == 1000
    assert len(set(w)) == 1000
    assert list(w) == sorted(w)
    assert all(re.fullmatch(r"n\d{8}", x) for x in w)
    assert len(d.class_names()) == len(d.short_names()) == 1000


def test_known_classes():
    # well-known positions of the standard ILSVRC2012 label order
    assert d.label_to_wnid(0) == "n01440764" and d.short_name(0) == "tench"
    assert d.label_to_wnid(1) == "n01443537" and d.short_name(1) == "goldfish"
    assert d.wnid_to_label("n02690373") == 404 and d.short_name(404) == "airliner"
    assert d.label_to_wnid(999) == "n15075141"
    assert d.class_name(999).startswith("toilet tissue")
    assert d.short_name(207) == "golden retriever"


def test_round_trips():
    for label in range(1000):
        assert d.wnid_to_label(d.label_to_wnid(label)) == label
        assert d.short_name(label) == d.class_name(label).split(",")[0]
    unique = [i for i, s in enumerate(d.short_names()) if d.short_names().count(s) == 1]
    assert len(unique) >= 990
    for label in unique:
        assert d.label_from_name(d.short_name(label)) == label


def test_name_lookup_variants():
    assert d.label_from_name("Tinca tinca") == 0
    assert d.label_from_name("  GOLDFISH ") == 1
    assert d.label_from_name("n01443537") == 1
    assert d.label_from_name(d.class_name(2)) == 2
    # short names win over a second lemma of another class
    assert d.label_from_name("partridge") == 86
    assert d.label_from_name("ruffed grouse") == 82
    assert d.label_from_name("Cardigan") == 264 and d.label_from_name("cardigan") == 474


@pytest.mark.parametrize("bad", ["n00000000", "tench ", 12, None])
def test_unknown_wnid(bad):
    with pytest.raises(KeyError, match="wnid"):
        d.wnid_to_label(bad)


@pytest.mark.parametrize("bad", [-1, 1000, 2.5, "3"])
def test_bad_label(bad):
    with pytest.raises(KeyError, match="label"):
        d.class_name(bad)


def test_unknown_and_ambiguous_names():
    with pytest.raises(d.UnknownClassError, match="not the name"):
        d.label_from_name("hovercraft of eels")
    with pytest.raises(d.UnknownClassError, match="ambiguous.*n02012849.*n03126707"):
        d.label_from_name("crane")


def test_data_file_records_its_source():
    from importlib import resources

    text = resources.files("synthaug.imagenet_data").joinpath("data/imagenet_classes.tsv")
    head = text.read_text().splitlines()[:4]
    assert any("make_imagenet_data_classes.py" in line for line in head)


def test_prompt_names_are_1000_distinct_strings():
    names = d.prompt_names()
    assert len(names) == 1000 and all(isinstance(n, str) and n.strip() for n in names)
    assert len(set(names)) == 1000
    assert len({" ".join(n.lower().split()) for n in names}) == 1000  # also ignoring case
    # the short names collide: that is what the overrides are for
    short = d.short_names()
    assert len(set(short)) == 998 and len({n.lower() for n in short}) == 997
    assert d.prompt_name(134) == "crane (bird)" and d.prompt_name(517) == "crane (machine)"
    assert d.prompt_name(638) == "maillot (tights)" and d.prompt_name(639) == "maillot (swimsuit)"
    assert d.prompt_name(264) == "Cardigan Welsh corgi" and d.prompt_name(474) == "cardigan"
    # every other class keeps its short name, and every override is one of the class's
    # lemmas or its short name with a parenthesis
    changed = [i for i in range(1000) if names[i] != short[i]]
    assert changed == sorted(d.wnid_to_label(w) for w in d.PROMPT_OVERRIDES)
    for i in changed:
        base = names[i].split(" (")[0]
        assert base in [x.strip() for x in d.class_name(i).split(",")]
    # prompt names resolve back to their class
    assert all(d.label_from_name(names[i]) == i for i in changed + [0, 207, 474])
    with pytest.raises(d.UnknownClassError):
        d.prompt_name(1000)
