from __future__ import annotations

import hashlib
import re

from qwenedit.domain.keys import hash_key, key_id_of, new_api_key

KEY = re.compile(r"^qe_[a-z0-9]{8}_[A-Za-z0-9_-]{32,}$")


def test_new_keys_are_well_formed_and_distinct() -> None:
    made = [new_api_key() for _ in range(200)]
    for key_id, key in made:
        assert KEY.fullmatch(key), key
        assert key.startswith(f"qe_{key_id}_")
        assert key_id_of(key) == key_id
    assert len({key for _, key in made}) == len({key_id for key_id, _ in made}) == 200


def test_hash_is_sha256_hex_of_the_whole_key() -> None:
    _, key = new_api_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert hash_key(key) != hash_key(key + "x")


def test_key_id_of_rejects_anything_else() -> None:
    secret = "A" * 32
    assert key_id_of(f"qe_abcd1234_{secret}") == "abcd1234"
    assert key_id_of(f"qe_abcd1234_{'_-' * 16}") == "abcd1234"  # secrets may hold _ and -
    for bad in (
        "",
        "qe_x_y",
        f"qe_ABCD1234_{secret}",
        f"qe_abcd123_{secret}",
        f"qe_abcd1234_{'A' * 31}",
        f"sk_abcd1234_{secret}",
        f"qe_abcd1234_{secret} ",
        f"qe_abcd1234_{secret[:-1]}=",
    ):
        assert key_id_of(bad) is None, bad
