from stcg_model.maths.text import group_tokens, normalize_answer, vqa_accuracy, word_kind


def test_normalisation_follows_vqa_eval():
    assert normalize_answer("Two") == "2"
    assert normalize_answer("The Red.") == "red"
    assert normalize_answer("a dog!") == "dog"
    assert normalize_answer("dont") == "don't"
    assert normalize_answer("  Yes\n") == "yes"


def test_vqa_accuracy_min_3():
    humans = ["red"] * 3 + ["blue"] * 7
    assert vqa_accuracy("blue", humans) == 1.0
    # leave-one-out: dropping a "blue" leaves 3 reds (1.0), dropping a "red" leaves 2 (2/3)
    assert abs(vqa_accuracy("red", humans) - (7 * 1.0 + 3 * (2 / 3)) / 10) < 1e-9
    assert abs(vqa_accuracy("red", ["red"] * 2 + ["blue"] * 8) - (8 * 2 / 3 + 2 * 1 / 3) / 10) < 1e-9
    assert vqa_accuracy("green", humans) == 0.0
    assert vqa_accuracy("Red", ["red"]) == 1.0


def test_words_and_kinds():
    words, tw = group_tokens(
        "what color is the cat?", [(0, 4), (5, 8), (8, 10), (11, 13), (14, 17), (18, 21), (21, 22)]
    )
    assert words == ["what", "color", "is", "the", "cat", "?"]
    assert tw == [0, 1, 1, 2, 3, 4, 5]
    assert [word_kind(w) for w in words] == ["function", "content", "function", "function", "content", "punct"]
