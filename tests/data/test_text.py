"""Text decoding (utf-8/gbk/cp1252, binary detection) and tweet cleaning."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mmsent.config import CleaningConfig
from mmsent.data.text import (MAX_TEXT_CHARS, TextCleaner, TextDecodeError, TextError, decode_text, read_text_file,
                              text_problem)

TWEET = (
    "RT @AmitSwami77: The conspirators have an evil eye & are now set to attack! "
    "#WeDemandSafety4Bapuji http://t.co/N8…"
)


class TestDecode:
    def test_utf8_with_bom(self) -> None:
        assert decode_text(b"\xef\xbb\xbfHello \xf0\x9f\x98\x80", "x.txt") == ("Hello \U0001f600", "utf-8")

    def test_gbk(self) -> None:
        raw = "今天天气很好 http://t.co/N8…".encode("gbk")
        assert decode_text(raw, "x.txt") == ("今天天气很好 http://t.co/N8…", "gbk")

    def test_cp1252_when_utf8_and_gbk_fail(self) -> None:
        raw = "print 40x40cm from 180€ – contact".encode("cp1252")
        assert decode_text(raw, "x.txt") == ("print 40x40cm from 180€ – contact", "cp1252")

    @pytest.mark.parametrize("text", ["Don’t stop", "naïve", "I’m so “happy” – really", "he said “wow…” ok",
                                      "café’s"])
    def test_cp1252_that_is_also_valid_gbk_stays_cp1252(self, text: str) -> None:
        # "Don\x92t" is valid gbk too ("Don抰t"): Western text must not come back as ideographs
        assert decode_text(text.encode("cp1252"), "x.txt") == (text, "cp1252")

    @pytest.mark.parametrize("text", ["What I’m Loving – Vol. 2", "海へ来たぞ！ #pixiv", "winter – whatever",
                                      "la création", "我爱NBA 今天"])
    def test_gbk_punctuation_and_cjk_stay_gbk(self, text: str) -> None:
        assert decode_text(text.encode("gbk"), "x.txt") == (text, "gbk")

    def test_empty_is_text(self) -> None:
        assert decode_text(b"", "x.txt") == ("", "utf-8")

    def test_nul_bytes_are_binary(self) -> None:
        with pytest.raises(TextDecodeError, match=r"data/9\.txt: contains NUL bytes") as info:
            decode_text(b"PK\x03\x04\x00\x00binary", "data/9.txt")
        assert info.value.location == "data/9.txt"
        assert isinstance(info.value, ValueError)

    def test_control_characters_are_binary(self) -> None:
        # Valid utf-8 without NULs, so only the control-character share can catch it.
        raw = bytes(range(1, 32)) * 4 + b"abc"
        with pytest.raises(TextDecodeError, match="control characters"):
            decode_text(raw, "x.txt")

    def test_random_bytes_are_rejected(self) -> None:
        raw = random.Random(0).randbytes(400)
        with pytest.raises(TextDecodeError):
            decode_text(raw, "x.txt")

    def test_random_bytes_without_nul_or_undefined_cp1252_are_rejected(self) -> None:
        # cp1252 decodes every byte except these five, so this data gets as far as the control-character check.
        allowed = [b for b in range(1, 256) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)]
        rng = random.Random(1)
        raw = bytes(rng.choice(allowed) for _ in range(400))
        with pytest.raises(TextDecodeError):
            decode_text(raw, "x.txt")

    def test_a_stray_control_character_is_fine(self) -> None:
        text, _ = decode_text(b"tabs\tand\r\nnewlines and one \x0b vertical tab in a normal tweet", "x.txt")
        assert "\x0b" in text


class TestCleaner:
    def test_defaults_on_a_real_tweet(self) -> None:
        assert TextCleaner().clean(TWEET) == (
            "The conspirators have an evil eye & are now set to attack! WeDemandSafety4Bapuji"
        )

    def test_urls(self) -> None:
        text = "Look https://example.com/a?b=1 and http://t.co/AbC123 or t.co/xyz and www.site.org/page. Nice"
        assert TextCleaner().clean(text) == "Look and or and Nice"

    def test_truncated_url(self) -> None:
        assert TextCleaner().clean("Cheetah's Eyes, Namibia #Wild http:…") == "Cheetah's Eyes, Namibia Wild"

    def test_mentions_but_not_emails(self) -> None:
        text = "“@_noo_remorse: All my friends love me @cutebri123 - contact@laurentbaheux.com"
        assert TextCleaner().clean(text) == "“ All my friends love me - contact@laurentbaheux.com"

    def test_retweet_only_at_start(self) -> None:
        cleaner = TextCleaner(CleaningConfig(strip_mentions=False))
        assert cleaner.clean("RT @a: RT @b: so true") == "so true"
        assert cleaner.clean("I said RT @a: no") == "I said RT @a: no"

    @pytest.mark.parametrize(
        ("mode", "expected"),
        [
            ("strip_symbol", "snow at ualbertafarm UAlberta 雪"),
            ("drop", "snow at"),
            ("keep", "snow at #ualbertafarm #UAlberta #雪"),
        ],
    )
    def test_hashtags(self, mode: str, expected: str) -> None:
        assert TextCleaner(CleaningConfig(hashtags=mode)).clean("snow at #ualbertafarm #UAlberta #雪") == expected

    def test_hashtag_rule_leaves_entities_and_words_alone(self) -> None:
        assert TextCleaner(CleaningConfig(hashtags="drop")).clean("C# rocks &#39;ok&#39;") == "C# rocks &#39;ok&#39;"

    def test_case_and_emoji_kept_by_default(self) -> None:
        assert TextCleaner().clean("SO Happy 😀❤️ today") == "SO Happy 😀❤️ today"

    def test_lowercase_option(self) -> None:
        assert TextCleaner(CleaningConfig(lowercase=True)).clean("SO Happy 😀") == "so happy 😀"

    def test_everything_off_is_identity(self) -> None:
        cfg = CleaningConfig(strip_retweet=False, strip_mentions=False, strip_urls=False, hashtags="keep",
                             normalize_whitespace=False)
        assert TextCleaner(cfg).clean(TWEET + "\r\n") == TWEET + "\r\n"

    def test_whitespace_collapsed(self) -> None:
        assert TextCleaner().clean("  a\r\n\tb   c \n") == "a b c"

    def test_fingerprint_tracks_every_option(self) -> None:
        base = TextCleaner().fingerprint()
        assert base == TextCleaner(CleaningConfig()).fingerprint()
        variants = [
            CleaningConfig(strip_retweet=False), CleaningConfig(strip_mentions=False), CleaningConfig(strip_urls=False),
            CleaningConfig(hashtags="drop"), CleaningConfig(lowercase=True), CleaningConfig(normalize_whitespace=False),
        ]
        prints = {TextCleaner(cfg).fingerprint() for cfg in variants}
        assert base not in prints and len(prints) == len(variants)
        # Part of every text cache key: a change in its spelling re-encodes every cached text, so it is pinned.
        assert base == ("TextCleaner/v1(strip_retweet=True,strip_mentions=True,strip_urls=True,hashtags=strip_symbol,"
                        "lowercase=False,normalize_whitespace=True)")
        assert repr(TextCleaner()) == base

    def test_bad_hashtag_mode(self) -> None:
        with pytest.raises(ValueError, match="^cleaning.hashtags must be one of strip_symbol, drop, keep, got "
                                             "'remove'$"):
            TextCleaner(CleaningConfig(hashtags="remove"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "decoded", "encoding"), [
    # A lone ideograph between ASCII characters is cp1252 read as gbk; one beside another non-ASCII one is real gbk.
    ("a抰 is fine", "a’t is fine", "cp1252"),
    ("é抰 is", "é抰 is", "gbk"),  # non-ASCII just before it
    ("抰é is", "抰é is", "gbk"),  # non-ASCII just after it
    ("éa抰 is fine", "¨¦a’t is fine", "cp1252"),  # non-ASCII two before it: not a neighbour
    ("抰aé is", "’ta¨¦ is", "cp1252"),  # non-ASCII two after it: not a neighbour
    ("\x7f抰 is fine and long enough", "\x7f’t is fine and long enough", "cp1252"),  # DEL is ASCII
])
def test_only_direct_non_ascii_neighbours_make_an_ideograph_gbk(text, decoded, encoding) -> None:
    assert decode_text(text.encode("gbk"), "t.txt") == (decoded, encoding)


def test_a_control_share_at_the_limit_is_text_and_above_it_binary() -> None:
    assert decode_text(b"abcdefghi\x01", "t.txt") == ("abcdefghi\x01", "utf-8")  # 1 of 10: exactly the limit
    with pytest.raises(TextDecodeError) as info:
        decode_text(b"abcdefgh\x01\x02", "t.txt")
    assert str(info.value.reason) == "looks like binary data: 2 of 10 characters are control characters"


def test_bytes_no_codec_reads_are_named_with_every_codec_tried() -> None:
    with pytest.raises(TextDecodeError) as info:
        decode_text(b"\xff\x81", "t.txt")
    assert (info.value.location, info.value.reason) == ("t.txt", "not valid utf-8, gbk, cp1252 (a binary file?)")


@pytest.mark.parametrize(("text", "kind", "reason"), [
    ("", "empty", "empty"),
    (" \t\r\n\u3000", "empty", "empty"),
    ("\u200b\u200c\u200d\u2060\ufeff", "empty", "empty: only invisible characters (zero-width, bidi or control)"),
    ("\u200e\u200f\u202a\u202e\u2066\u2069", "empty", "empty: only invisible characters (zero-width, bidi or control)"),
    ("\x01\x1b \u00ad\u034f\ufe0f\u3164\u2800", "empty",
     "empty: only invisible characters (zero-width, bidi or control)"),
    ("\x00", "nul", "contains NUL characters (binary data?)"),
    ("hi\x00there", "nul", "contains NUL characters (binary data?)"),
    ("ok \ud800", "not_unicode", "not valid Unicode (a lone surrogate at position 3)"),
    ("x" * 11, "too_long", "11 characters, over the limit of 10"),
])
def test_the_text_rule_refuses_empty_invisible_nul_broken_and_long_texts(text, kind, reason) -> None:
    problem = text_problem(text, limit=10)
    assert problem is not None and (problem.kind, problem.reason) == (kind, reason) and problem.fix


@pytest.mark.parametrize("text", ["a", "x" * 10, "héllo 😀", "\u200fשלום\u200f", "٣", "#", "a\u200b",
                                  "\U0001f600\ufe0f"])
def test_the_text_rule_takes_any_visible_character(text) -> None:
    assert text_problem(text, limit=10) is None


def test_the_text_limit_is_the_servers() -> None:
    from mmsent.serve import ServeSettings

    assert ServeSettings().max_text_chars == MAX_TEXT_CHARS == 5_000


def test_a_text_file_is_read_decoded_and_held_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("héllo".encode("gbk"))
    assert read_text_file(path, "data/t.txt", limit=5) == ("héllo", "gbk")
    path.write_text("x" * 6, encoding="utf-8")
    with pytest.raises(TextError) as info:
        read_text_file(path, "data/t.txt", limit=5)
    assert (info.value.location, info.value.reason, info.value.fix) == (
        "data/t.txt", "6 characters, over the limit of 5", "shorten it to 5 characters at most")
    with pytest.raises(FileNotFoundError):
        read_text_file(tmp_path / "none.txt", "none.txt")


def test_a_huge_text_file_is_refused_from_its_size_without_reading_it(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "huge.txt"
    with path.open("wb") as fh:
        fh.truncate(200_000_000)  # sparse: no disk used, but read whole it would cost 200 MB
    tracemalloc.start()
    try:
        with pytest.raises(TextError) as info:
            read_text_file(path, "huge.txt")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert info.value.reason == "200,000,000 bytes, over the limit of 5,000 characters"
    assert info.value.fix == "shorten it to 5,000 characters at most"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_device_or_folder_is_refused_without_blocking(tmp_path: Path) -> None:
    from data_helpers import call_unblocked

    fifo = tmp_path / "t.txt"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO (named pipe)"), (tmp_path, "a folder"), (Path("/dev/zero"), "a device")):
        with pytest.raises(TextError) as info:
            call_unblocked(lambda p=path: read_text_file(p, p.name), [fifo])
        assert info.value.reason == f"not a regular file but {kind}"
        assert info.value.fix == "replace it with a regular file"
