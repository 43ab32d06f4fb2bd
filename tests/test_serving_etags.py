"""Entity tags (depot.serving.etags): valid by RFC 9110 and sensitive to every change."""
import re
from datetime import datetime

import pytest

from depot.serving.etags import etag_list_matches, make_etag, parse_etags, strong_match

# entity-tag = [ weak ] opaque-tag ; opaque-tag = DQUOTE *etagc DQUOTE
# etagc = %x21 / %x23-7E / obs-text
ENTITY_TAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"\Z')
WHEN = datetime(2026, 11, 26, 15, 33, 27)


@pytest.mark.parametrize(
    "version",
    [None, "1", "2a-18eba72a10d8456a-b", '"d41d8cd98f00b204e9800998ecf8427e"', "with space", "ünï", "x" * 500, ""],
)
def test_always_a_valid_entity_tag(version):
    tag = make_etag("d37138cf-2364-4128-8236-9cfaa8a6567c", version, WHEN, 11)
    assert ENTITY_TAG.match(tag), tag
    assert not tag.startswith("W/")


def test_version_changes_the_tag_within_one_second_and_same_length():
    a = make_etag("id", "ino1-mtime1-11", WHEN, 11)
    b = make_etag("id", "ino2-mtime2-11", WHEN, 11)
    assert a != b


def test_fallback_uses_time_and_length():
    assert make_etag("id", None, WHEN, 11) == '"id-1795707207-11"'
    assert make_etag("id", None, WHEN, 12) != make_etag("id", None, WHEN, 11)
    assert make_etag("id", None, datetime(2026, 11, 26, 15, 33, 28), 11) != make_etag("id", None, WHEN, 11)


def test_tag_is_per_file():
    assert make_etag("a", "1", WHEN, 1) != make_etag("b", "1", WHEN, 1)


def test_nothing_to_validate_gives_a_weak_tag():
    tag = make_etag("id", None, None, 11)
    assert tag.startswith('W/"') and ENTITY_TAG.match(tag)


def test_unsafe_characters_are_digested_not_copied():
    tag = make_etag("id", '"quoted" and\r\nnewline', WHEN, 1)
    assert "\r" not in tag and " " not in tag and tag.count('"') == 2


def test_parse_list():
    assert parse_etags('"a", W/"b" ,"c"') == [(False, "a"), (True, "b"), (False, "c")]
    assert parse_etags('garbage, "ok"') == [(False, "ok")]
    assert parse_etags("") == []


def test_weak_comparison():
    assert etag_list_matches('"x", W/"abc"', '"abc"', weak=True)
    assert etag_list_matches('"abc"', 'W/"abc"', weak=True)
    assert etag_list_matches("*", '"abc"', weak=True)
    assert etag_list_matches(" * ", '"abc"', weak=True)
    assert not etag_list_matches('"abcd"', '"abc"', weak=True)
    assert not etag_list_matches("abc", '"abc"', weak=True)


def test_strong_comparison():
    assert etag_list_matches('"x", "abc"', '"abc"', weak=False)
    assert not etag_list_matches('W/"abc"', '"abc"', weak=False)
    assert not etag_list_matches('"abc"', 'W/"abc"', weak=False)
    assert etag_list_matches("*", '"abc"', weak=False)
    assert strong_match(' "abc" ', '"abc"')
    assert not strong_match('W/"abc"', '"abc"')
    assert not strong_match('W/"abc"', 'W/"abc"')


# -- checksums (integrity): the same bytes keep the same tag ------------------


def _etag(storage, file_id):
    f = storage.get(file_id)
    try:
        return make_etag(f.file_id, getattr(f, "version", None), f.last_modified, f.content_length, f.checksum)
    finally:
        f.close()


def test_checksum_tag_survives_identical_replace_and_migration(tmp_path):
    from depot.io.local import LocalFileStorage
    from depot.io.memory import MemoryFileStorage

    local = LocalFileStorage(str(tmp_path))
    file_id = local.create(b"same bytes", "a.txt")
    before = _etag(local, file_id)
    assert ENTITY_TAG.match(before) and not before.startswith("W/")
    local.replace(file_id, b"same bytes")
    assert _etag(local, file_id) == before  # a new write, the same bytes
    memory = MemoryFileStorage()
    source = local.get(file_id)
    memory.replace(source, source)  # migrated under the same id, as depot migrate does
    assert _etag(memory, file_id) == before
    local.replace(file_id, b"other bytes")
    assert _etag(local, file_id) != before


def test_without_checksum_the_version_decides(tmp_path):
    from depot.io.local import LocalFileStorage

    local = LocalFileStorage(str(tmp_path), checksum=None)
    file_id = local.create(b"same bytes", "a.txt")
    before = _etag(local, file_id)
    local.replace(file_id, b"same bytes")
    assert _etag(local, file_id) != before  # 0.12-written files: every write is a new tag


def test_checksum_tag_is_per_file_and_size():
    assert make_etag("a", "1", WHEN, 1, "crc32c:00000001") != make_etag("b", "1", WHEN, 1, "crc32c:00000001")
    assert make_etag("a", "1", WHEN, 1, "crc32c:00000001") != make_etag("a", "1", WHEN, 2, "crc32c:00000001")
    assert make_etag("a", "1", WHEN, 1, "crc32c:00000001") == make_etag("a", "2", None, 1, "crc32c:00000001")
