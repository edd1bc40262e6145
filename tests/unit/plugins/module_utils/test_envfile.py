"""The env-file quoting rule and the redacted diff form."""
from __future__ import annotations

import pytest

from ansible_collections.datamancy.stack.plugins.module_utils import envfile as e


@pytest.mark.parametrize("value, expected", [
    ("abc123", "abc123"),
    ("", ""),
    ("sk-0123abcd", "sk-0123abcd"),
    ("a+b/c=", "a+b/c="),                                # base64
    ("postgres://u:p@db:5432/x", "postgres://u:p@db:5432/x"),
    ("two words", "'two words'"),
    ("$HOME", "'$HOME'"),
    ("a#b", "'a#b'"),
    ('say "hi"', "'say \"hi\"'"),
    ("back\\slash", "'back\\slash'"),
    ("it's", '"it\'s"'),
])
def test_quoting_rule(value, expected):
    assert e.quote_value("K", value) == expected
    assert e.unquote_value(expected) == value


@pytest.mark.parametrize("value, message", [
    ("it's $HOME", "single quote together with"),
    ("it's \\", "single quote together with"),
    ("line1\nline2", "spans several lines"),
    ("nul\x00", "NUL"),
])
def test_unportable_values_are_refused(value, message):
    with pytest.raises(e.EnvFileError, match=message):
        e.quote_value("K", value)


def test_raw_format_writes_values_verbatim():
    assert e.quote_value("K", "two words $x 'q'", "raw") == "two words $x 'q'"
    with pytest.raises(e.EnvFileError):
        e.quote_value("K", "a\nb", "raw")


def test_render_and_parse_roundtrip():
    text = e.render([("A", "1"), ("B", "'x y'")])
    assert text.startswith("# Managed by Ansible")
    assert e.parse(text) == [("A", "1"), ("B", "'x y'")]


def test_redacted_text_hides_everything_not_plain():
    text = e.render([("PLAIN", "visible"), ("SECRET", "hunter2hunter2")]) + "# OLD=oldsecret\n"
    shown = e.redacted_text(text, {"PLAIN"})
    assert "PLAIN=visible" in shown
    assert "hunter2hunter2" not in shown and "oldsecret" not in shown
    assert "SECRET=<redacted:sha256:%s>" % e.fingerprint("hunter2hunter2") in shown
    assert e.fingerprint("a") != e.fingerprint("b")
