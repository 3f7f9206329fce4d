"""The pipeline-style call ``clf(image, text)``: every input form a user tries gives the same answer, and every
wrong shape a clear error that says what was passed and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import mmsent


@pytest.fixture(scope="module")
def clf(tiny_run):
    return mmsent.load(tiny_run)


@pytest.fixture(scope="module")
def post(tiny_run) -> tuple[Path, str]:
    return tiny_run.parent / "lab" / "data" / "130.jpg", "sad hate awful rain"


def test_one_post_in_every_image_form_gives_one_answer(clf, post):
    path, text = post
    [expected] = clf.predict([path], [text], explain_inputs=False)
    with Image.open(path) as im:
        pil = im.copy()
    for image in (str(path), path, path.read_bytes(), pil):
        answer = clf(image, text)
        assert answer == {"label": expected["label"], "scores": expected["probabilities"]}, type(image)
    assert clf(image=str(path), text=text) == clf(str(path), text)
    assert set(clf(path, text)["scores"]) == set(clf.labels)


def test_lists_give_a_list_in_order(clf, post, tiny_run):
    path, text = post
    other = tiny_run.parent / "lab" / "data" / "131.jpg"
    answers = clf([path, other], [text, "love this great day"])
    assert isinstance(answers, list) and len(answers) == 2
    assert answers[0] == clf(path, text) and answers[1] == clf(other, "love this great day")
    assert clf((path,), (text,)) == [clf(path, text)]
    assert clf([], []) == []


def test_explain_adds_evidence_timings_and_the_heat_map(clf, post):
    answer = clf(*post, explain=True)
    assert {"label", "scores", "evidence", "cleaned_text", "timing_ms"} <= set(answer)
    assert answer["evidence"]["image_overlay_png"].startswith("data:image/png;base64,")
    assert answer["evidence"]["tokens"]  # per-token scores only when explaining
    assert "evidence" not in clf(*post)


@pytest.mark.parametrize(("image", "text", "error", "message"), [
    ("post.jpg", None, TypeError, "both an image and a text are needed (got image=a str, text=a NoneType)"),
    (None, "what a day", TypeError, "both an image and a text are needed"),
    (42, "what a day", TypeError, "one text but an int as the image"),
    (["a.jpg", "b.jpg"], "what a day", ValueError, "one text but a list of 2 as the image"),
    ("a.jpg", ["x", "y"], ValueError, "got a str as image and a list of 2 as text"),
    ("a.jpg", 3.5, TypeError, "got a str as image and a float as text"),
    (["a.jpg"], ["x", "y"], ValueError, "1 images but 2 texts"),
    (["a.jpg", 7], ["x", "y"], TypeError, "post 1: got an int as image and a str as text"),
])
def test_a_wrong_shape_says_what_was_passed_and_what_is_expected(clf, image, text, error, message):
    with pytest.raises(error) as err:
        clf(image, text)
    assert message in str(err.value)
    assert "clf(image, text) for one post, or clf([image, ...], [text, ...]) for several" in str(err.value)


def test_predict_given_one_post_instead_of_lists_points_to_the_call(clf, post):
    path, text = post
    with pytest.raises(TypeError, match=r"predict takes lists \(got a PosixPath and a str\); for one post call"):
        clf.predict(path, text)
    with pytest.raises(TypeError, match="predict takes lists"):
        clf.predict([path], text)  # the old trap: a text's characters counted as posts


def test_an_image_that_does_not_exist_names_the_path(clf, tmp_path):
    from mmsent.data.images import ImageLoadError

    with pytest.raises(ImageLoadError, match="nowhere.jpg"):
        clf(str(tmp_path / "nowhere.jpg"), "what a day")


@pytest.mark.parametrize(("text", "message"), [
    ("", "text: empty"), ("   \n", "text: "), ("a\x00b", "NUL"), ("bad \ud800 text", "not valid Unicode"),
    ("good " * 1001, "over the limit"),
])
def test_a_text_the_server_would_refuse_is_refused_here_too(clf, post, text, message):
    from mmsent.data.text import TextError

    with pytest.raises(TextError, match=message):
        clf(post[0], text)
    with pytest.raises(TextError, match=r"^text 1: "):
        clf([post[0], post[0]], ["fine", text])


def test_a_decoded_image_is_held_to_the_pixel_limit_and_must_have_pixels(clf, post):
    from mmsent.data.images import ImageLoadError, ImageTooLargeError

    with pytest.raises(ImageLoadError, match=r"empty image \(0x0 pixels\)"):
        clf(Image.new("RGB", (0, 0)), "what a day")
    limit = clf.max_image_pixels
    with pytest.raises(ImageTooLargeError, match="over the decompression-bomb limit"):
        clf(Image.new("L", (limit // 1000 + 1, 1001)), "what a day")


def test_explain_must_be_a_boolean_and_an_image_path_not_empty(clf, post):
    with pytest.raises(TypeError, match="explain must be True or False, not a str"):
        clf(*post, explain="no")
    with pytest.raises(ValueError, match="an empty string is not an image path"):
        clf("", "what a day")
    with pytest.raises(ValueError, match="post 1: an empty string is not an image path"):
        clf([post[0], " "], ["a", "b"])
