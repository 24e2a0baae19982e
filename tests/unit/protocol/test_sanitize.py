from p2p_comm.sanitize import clean_label, clean_text, skeleton


def test_escape_sequences_and_controls_removed() -> None:
    assert clean_text("a\x1b[31mred\x1b[0m\x07b") == "aredb"
    assert clean_text("title\x1b]0;owned\x07x") == "titlex"
    assert clean_text("keep\ttabs\nand lines") == "keep\ttabs\nand lines"
    assert clean_text("nul\x00del\x7fc1\x9b") == "nuldelc1"


def test_bidi_and_zero_width_kept_in_text_removed_from_labels() -> None:
    assert clean_text("ab\u202ecd\u200bef\u2066g") == "ab\u202ecd\u200bef\u2066g"
    assert clean_label("ab\u202ecd\u200bef\u2066g", 64) == "abcdefg"


def test_label_is_one_line_and_bounded() -> None:
    assert clean_label("  a \n b\tc  ", 100) == "a b c"
    assert clean_label("x" * 50, 10) == "x" * 10


def test_lookalike_names_share_a_skeleton() -> None:
    assert skeleton("Bob") == skeleton("bob")
    assert skeleton("bób") == skeleton("bob")
    assert skeleton("ｂｏｂ") == skeleton("bob")
    assert skeleton("bo\u200bb") == skeleton("bob")
    assert skeleton("alice") != skeleton("bob")


def test_cross_script_lookalikes_share_a_skeleton() -> None:
    assert skeleton("bоb") == skeleton("bob")  # Cyrillic о
    assert skeleton("аlice") == skeleton("alice")  # Cyrillic а
    assert skeleton("paypa1") == skeleton("paypal")
    assert skeleton("rnoe") == skeleton("moe")
    assert skeleton("Αlice") == skeleton("alice")  # Greek capital alpha
