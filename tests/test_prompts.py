import pytest

from mtpb.prompts import (CHAT, MODES, MULTI, PREFIX, SINGLE, Conversation, extract_code, is_finished, mode_named,
                          served_chat_context, truncate)


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


PROMPTS = ["Set x to 1.", "Print x."]
SOLUTIONS = ["x = 1", "print(x)"]


def answer_all(talk: Conversation, replies: list[str]) -> list[str]:
    """Plays the replies turn by turn; returns the context the conversation asked for before each."""
    asked = []
    for raw in replies:
        asked.append(talk.context)
        talk.add(raw)
    assert talk.done
    return asked


def test_multi_asks_for_each_prompt_as_a_comment_after_the_truncated_history():
    talk = Conversation("multi", PROMPTS, SOLUTIONS, max_gen_length=32)
    assert talk.mode is MULTI and talk.max_tokens == 32 and talk.messages == () and talk.solution == "x = 1"
    replies = ["x = 1\nprint(x)\nprint(2)\n", "print(x)\n\n\n# more"]
    asked = answer_all(talk, replies)
    assert asked == [PREFIX + "# Set x to 1.\n", PREFIX + "# Set x to 1.\nx = 1\nprint(x)\n\n\n# Print x.\n"]
    assert talk.program == asked[1] + "print(x)\n\n"
    assert talk.turns == [{"prompt": "Set x to 1.", "raw": replies[0], "completion": "x = 1\nprint(x)\n"},
                          {"prompt": "Print x.", "raw": replies[1], "completion": "print(x)"}]


def test_single_asks_once_for_the_joined_prompts_with_every_turn_s_budget():
    talk = Conversation(SINGLE, PROMPTS, SOLUTIONS, max_gen_length=32)
    assert talk.prompts == ["Set x to 1. Print x."] and talk.max_tokens == 64
    assert talk.solution == "x = 1\nprint(x)"
    raw = "x = 1\nprint(x)\nprint(x)\n# end"   # single keeps a second top-level print
    assert answer_all(talk, [raw]) == [PREFIX + "# Set x to 1. Print x.\n"]
    assert talk.program == PREFIX + "# Set x to 1. Print x.\nx = 1\nprint(x)\nprint(x)\n\n\n"
    assert [t["completion"] for t in talk.turns] == ["x = 1\nprint(x)\nprint(x)\n"]


def test_chat_sends_messages_and_keeps_the_fenced_code_without_prompt_comments():
    talk = Conversation(CHAT, PROMPTS, SOLUTIONS)
    assert talk.context == PREFIX and talk.messages == ({"role": "user", "content": "Set x to 1."},)
    assert talk.solution == "```python\nx = 1\n```"
    first = "Sure:\n```python\nx = 1\n```\nDone."
    assert talk.add(first) == "x = 1"
    assert talk.context == PREFIX + "x = 1\n\n" and talk.turn_index == 1
    assert talk.messages == ({"role": "user", "content": "Set x to 1."}, {"role": "assistant", "content": first},
                             {"role": "user", "content": "Print x."})
    assert talk.add(talk.solution) == "print(x)"   # the reference reply gives back the solution
    assert talk.done and talk.program == PREFIX + "x = 1\n\nprint(x)\n\n"
    assert talk.turns[0] == {"prompt": "Set x to 1.", "raw": first, "completion": "x = 1"}


def test_problems_without_solutions_offer_none_in_every_mode():
    assert [Conversation(m, PROMPTS).solution for m in MODES] == [None, None, None]


def test_modes_by_name():
    assert [mode_named(m) for m in MODES] == [MULTI, SINGLE, CHAT]
    with pytest.raises(ValueError, match="unknown mode 'multiturn'"):
        Conversation("multiturn", PROMPTS)


def test_served_chat_is_the_multi_context_of_its_messages():
    messages = [("user", "Set x to 1.\nThen stop.  \n"), ("assistant", "```python\nx = 1\n```"), ("user", "")]
    assert served_chat_context(messages) == PREFIX + "# Set x to 1.\n# Then stop.\nx = 1\n\n#\n"
    talk = Conversation(MULTI, ["Set x to 1.", "Print x."])
    talk.add("x = 1")
    assert served_chat_context([("user", "Set x to 1."), ("assistant", "x = 1"), ("user", "Print x.")]) == talk.context
