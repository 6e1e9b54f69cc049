import hashlib
import io

import pytest

from anybuild.errors import IntegrityError
from anybuild.oci import Digest, DigestAlgorithm, Hasher

EMPTY256 = hashlib.sha256(b"").hexdigest()


def test_digest_of_bytes_sha256_matches_hashlib() -> None:
    digest = Digest.of_bytes(b"hello")
    assert str(digest) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert digest.algorithm is DigestAlgorithm.SHA256


def test_digest_of_bytes_sha512_has_128_hex() -> None:
    digest = Digest.of_bytes(b"x", DigestAlgorithm.SHA512)
    assert len(digest.hex) == 128
    assert Digest.parse(str(digest)) == digest


def test_digest_of_stream_counts_size() -> None:
    digest, size = Digest.of_stream(io.BytesIO(b"a" * 3_000_000))
    assert size == 3_000_000
    assert digest == Digest.of_bytes(b"a" * 3_000_000)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sha256", "invalid digest format"),
        ("sha256:" + EMPTY256[:-1], "expected 64"),
        ("sha256:" + EMPTY256.upper(), "expected 64"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm"),
        ("sha512:" + EMPTY256, "expected 128"),
        ("", "invalid digest format"),
    ],
    ids=["no-hex", "short", "upper", "md5", "sha512-short", "empty"],
)
def test_digest_parse_bad_input_raises_integrity_error(text: str, problem: str) -> None:
    with pytest.raises(IntegrityError, match=problem) as info:
        Digest.parse(text)
    assert info.value.hint


def test_hasher_verify_size_mismatch_raises() -> None:
    hasher = Hasher()
    hasher.update(b"abc")
    with pytest.raises(IntegrityError, match="size mismatch"):
        hasher.verify(digest=Digest.of_bytes(b"abc"), size=4, what="blob")


def test_hasher_verify_digest_mismatch_raises() -> None:
    hasher = Hasher()
    hasher.update(b"abd")
    with pytest.raises(IntegrityError, match="digest mismatch"):
        hasher.verify(digest=Digest.of_bytes(b"abc"), size=3, what="blob")


def test_hasher_verify_match_passes() -> None:
    hasher = Hasher()
    hasher.update_all([b"a", b"bc"])
    hasher.verify(digest=Digest.of_bytes(b"abc"), size=3, what="blob")
