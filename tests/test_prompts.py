import pytest

from mtpb.prompts import extract_code, is_finished, truncate


@pytest.mark.parametrize("completion, expected", [
    # the original sampler's own test case
    ("\nif len_a > len_b:\n    result = a\nelse:\n    result = b\n\n\n\n#", "\nif len_a > len_b:\n    result = a\nelse:\n    result = b"),
    ("x = 1\n# next step\ny = 2", "x = 1\n"),                              # ^#
    ("x = 1\n    # indented comment\ny = 2", "x = 1\n    # indented comment\ny = 2"),  # only column 0
    ("x = 1<|endoftext|>junk", "x = 1"),                                  # end of text
    ("x = 1\n'''doc'''", "x = 1\n"),                                      # ^'''
    ('x = 1\n"""doc"""', "x = 1\n"),                                      # ^"""
    ("x = 1\n\n\ny = 2", "x = 1"),                                        # three newlines
    ("print(a)\nprint(b)\n", "print(a)\n"),                               # second top-level print
    ("def f():\n    print(1)\n    print(2)\n", "def f():\n    print(1)\n    print(2)\n"),  # nested prints stay
    ("def f():\n    pass\ndef g():\n    pass", "def f():\n    pass\n"),  # second top-level def
    ("print(1)\ndef f():\n    pass\nprint(2)\ndef g():\n    pass", "print(1)\ndef f():\n    pass\n"),
    ("#at start", ""),
])
def test_truncate_rules(completion, expected):
    assert truncate(completion) == expected


def test_single_mode_keeps_several_prints_and_defs():
    text = "def f():\n    pass\ndef g():\n    pass\nprint(f())\nprint(g())\n# end"
    assert truncate(text, "single") == text[:-len("# end")]


def test_is_finished_is_stable():
    # once finished, more text never changes the truncation
    text = "x = 1\n\n\n"
    assert is_finished(text) and truncate(text + "print(2)\n#") == truncate(text)
    assert not is_finished("x = 1\n\n")
    assert not is_finished("print(1)\n")


def test_extract_code():
    assert extract_code("Sure:\n```python\nx = 1\n```\nand\n```\ny = 2\n```") == "x = 1\ny = 2"
    assert extract_code("x = 1\n") == "x = 1"
