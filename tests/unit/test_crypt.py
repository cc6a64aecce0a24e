"""Unit tests of kcpsock.crypt and the hand-written block ciphers."""

from __future__ import annotations

import os
import random

import pytest
from Crypto.Cipher import AES, DES

from kcpsock import _accel, _fastcrypt, crypt
from kcpsock._sm4 import SBOX, SM4
from kcpsock._tea import TEA, XTEA
from kcpsock._twofish import Q0, Q1, Twofish
from kcpsock.crypt import CIPHERS, IV, cipher_info, derive_key, new_block_crypt
from kcpsock.errors import PacketError

KEY = derive_key("it's a secrect")


# --- block cipher check values (docs/CRYPTO.md §6) ------------------------


def test_tea16_check_value() -> None:
    block = TEA(bytes(range(16))).encrypt_block(bytes.fromhex("0123456789abcdef"))
    assert block.hex() == "4bba3193aceaa306"  # not the 64-round 14f0c75d2bebd98d


def test_xtea_check_value() -> None:
    block = XTEA(bytes(range(16))).encrypt_block(bytes.fromhex("0123456789abcdef"))
    assert block.hex() == "14669763a456e1d8"


def test_twofish_check_values() -> None:
    assert Twofish(bytes(16)).encrypt_block(bytes(16)).hex() == "9f589f5cf6122c32b6bfec2f2ae8c35a"
    assert (
        Twofish(bytes(range(32)))
        .encrypt_block(bytes.fromhex("0123456789abcdef0123456789abcdef"))
        .hex()
        == "8309f2aadfb45131a0589c2d11fc5302"
    )


def test_twofish_192_known_answer() -> None:
    # Twofish paper, ECB_TBL.TXT: 192-bit key 0123456789ABCDEFFEDCBA98765432100011223344556677
    key = bytes.fromhex("0123456789abcdeffedcba98765432100011223344556677")
    assert Twofish(key).encrypt_block(bytes(16)).hex() == "cfd1d2e5a9be9cdf501f13b892bd2248"


def test_twofish_q_permutations() -> None:
    assert sorted(Q0) == list(range(256)) and sorted(Q1) == list(range(256))
    assert (Q0[0], Q0[255], Q1[0], Q1[255]) == (0xA9, 0xE0, 0x75, 0x91)


def test_sm4_check_values() -> None:
    k = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert SM4(k).encrypt_block(k).hex() == "681edf34d206965e86b3e94f536e4246"
    assert (
        SM4(bytes(range(16))).encrypt_block(bytes.fromhex("0123456789abcdef0123456789abcdef")).hex()
        == "53b6281a464bd90a7a78c3de14c0a90b"
    )


def test_sm4_sbox_is_the_standard_table() -> None:
    assert SBOX[:8].hex() == "d690e9fecce13db7" and SBOX[-4:].hex() == "d7cb3948"
    assert sorted(SBOX) == list(range(256))


@pytest.mark.parametrize(("cls", "size"), [(TEA, 17), (XTEA, 15), (Twofish, 20), (SM4, 32)])
def test_pure_cipher_key_length_checked(cls: type, size: int) -> None:
    with pytest.raises(ValueError, match="key"):
        cls(bytes(size))


@pytest.mark.parametrize(("cls", "bad"), [(TEA, 7), (Twofish, 15), (SM4, 17)])
def test_encrypt_block_length_checked(cls: type, bad: int) -> None:
    with pytest.raises(ValueError, match="block"):
        cls(bytes(16)).encrypt_block(bytes(bad))


# --- CFB construction -------------------------------------------------------


def _reference_cfb(name: str, key: bytes, data: bytes, decrypt: bool) -> bytes:
    """CFB per docs/CRYPTO.md §2, block by block, with pycryptodome's AES ECB."""
    ecb = AES.new(key, AES.MODE_ECB)
    out = bytearray()
    k = ecb.encrypt(IV)
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        res = bytes(a ^ b for a, b in zip(chunk, k))
        out += res
        k = ecb.encrypt(chunk if decrypt else res) if len(chunk) == 16 else k
    return bytes(out)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 20, 31, 32, 33, 100, 1399, 1400, 1500])
def test_aes_cfb_matches_reference_for_every_length(n: int) -> None:
    rng = random.Random(n)
    data = bytes(rng.getrandbits(8) for _ in range(n))
    block = new_block_crypt("aes", KEY)
    enc = _reference_cfb("aes", KEY, data, False)
    assert block.encrypt(data) == enc
    assert block.decrypt(enc) == data
    assert _reference_cfb("aes", KEY, enc, True) == data


def test_state_does_not_leak_between_packets() -> None:
    # A long-lived CFB object must restart at the IV: interleave lengths that
    # leave partial blocks and compare with a fresh object each time.
    shared = new_block_crypt("aes", KEY)
    rng = random.Random(1)
    for _ in range(50):
        data = os.urandom(rng.randrange(0, 200))
        fresh = new_block_crypt("aes", KEY)
        assert shared.encrypt(data) == fresh.encrypt(data)
        assert shared.decrypt(data) == fresh.decrypt(data)


@pytest.mark.parametrize("name", [n for n in CIPHERS if "gcm" not in n])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 44, 1400, 1501])
def test_round_trip_every_length(name: str, n: int) -> None:
    block = new_block_crypt(name, KEY)
    data = os.urandom(n)
    enc = block.encrypt(data)
    assert len(enc) == n
    assert block.decrypt(enc) == data
    if name != "none" and n >= 16:
        assert enc != data


def test_ciphers_are_distinct() -> None:
    data = bytes(64)
    outs = {new_block_crypt(n, KEY).encrypt(data) for n in CIPHERS if "gcm" not in n}
    # aes/aes-128/aes-192 differ by key slice, so every cipher is different
    assert len(outs) == len([n for n in CIPHERS if "gcm" not in n])


def test_salsa20_keeps_first_8_bytes_and_ignores_short_packets() -> None:
    block = new_block_crypt("salsa20", KEY)
    data = os.urandom(40)
    assert block.encrypt(data)[:8] == data[:8]
    assert block.encrypt(b"abc") == b"abc"


def test_salsa20_nonce_changes_keystream() -> None:
    block = new_block_crypt("salsa20", KEY)
    a = block.encrypt(bytes(8) + bytes(32))
    b = block.encrypt(bytes([1]) + bytes(7) + bytes(32))
    assert a[8:] != b[8:]


def test_xor_pad_and_long_packets() -> None:
    block = new_block_crypt("xor", KEY)
    pad = block.encrypt(bytes(1500))
    assert pad[:32].hex() == "0ffe8987ad94757154791bc8fa01b62c6bce0106b2954013cd523fbc1f7aac8c"
    # bytes beyond the 1500-byte pad pass unchanged (kcp-go xor.Bytes)
    assert block.encrypt(bytes(1600))[1500:] == bytes(100)


def test_none_is_identity() -> None:
    block = new_block_crypt("none", b"")
    assert block.encrypt(b"abc") == b"abc" == block.decrypt(b"abc")


# --- 3DES keys pycryptodome refuses -----------------------------------------


def test_3des_degenerate_keys_act_as_single_des() -> None:
    k1, k3 = b"ABCDEFGH", b"12345678"
    data = os.urandom(40)
    ref = DES.new(k3, DES.MODE_CFB, iv=IV[:8], segment_size=64).encrypt(data)
    assert new_block_crypt("3des", k1 + k1 + k3).encrypt(data) == ref
    ref1 = DES.new(k1, DES.MODE_CFB, iv=IV[:8], segment_size=64).encrypt(data)
    assert new_block_crypt("3des", k1 + k3 + k3).encrypt(data) == ref1
    assert (
        new_block_crypt("3des", k1 * 3).decrypt(new_block_crypt("3des", k1 * 3).encrypt(data))
        == data
    )


# --- AES-GCM ------------------------------------------------------------------


def test_gcm_layout_and_tag_check() -> None:
    block = new_block_crypt("aes-gcm", KEY)
    packet = os.urandom(12) + b"body bytes"
    sealed = block.encrypt(packet)
    assert len(sealed) == len(packet) + 16 and sealed[:12] == packet[:12]
    assert block.decrypt(sealed) == packet
    forged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PacketError) as info:
        block.decrypt(forged)
    assert info.value.counter == "InCsumErrors"
    with pytest.raises(PacketError) as info:
        block.decrypt(sealed[:27])
    assert info.value.counter == "InErrs"
    with pytest.raises(ValueError, match="shorter than the AES-GCM nonce"):
        block.encrypt(b"short")


def test_gcm_attributes() -> None:
    block = new_block_crypt("aes-128-gcm", KEY)
    assert (getattr(block, "nonce_size"), getattr(block, "tag_size")) == (12, 16)  # noqa: B009
    assert not hasattr(new_block_crypt("aes", KEY), "tag_size")


# --- arguments ----------------------------------------------------------------


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="valid choices: aes, aes-128"):
        new_block_crypt("rot13", KEY)


@pytest.mark.parametrize("name", [n for n in CIPHERS if n != "none"])
def test_short_key_rejected(name: str) -> None:
    size = cipher_info(name).key_size
    with pytest.raises(ValueError, match="key"):
        new_block_crypt(name, bytes(size - 1))


def test_aes_gcm_key_lengths() -> None:
    for n in (16, 24, 32):
        new_block_crypt("aes-gcm", bytes(n))
    with pytest.raises(ValueError, match="16, 24 or 32"):
        new_block_crypt("aes-gcm", bytes(40))


def test_type_errors() -> None:
    with pytest.raises(TypeError, match="key"):
        new_block_crypt("aes", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        new_block_crypt(b"aes", KEY)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="password"):
        derive_key(42)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_keys() -> None:
    data = os.urandom(50)
    ref = new_block_crypt("aes", KEY).encrypt(data)
    assert new_block_crypt("aes", bytearray(KEY)).encrypt(data) == ref
    assert new_block_crypt("aes", memoryview(KEY)).encrypt(data) == ref


def test_derive_key_str_and_bytes_agree() -> None:
    assert derive_key("pässword") == derive_key("pässword".encode())
    assert len(derive_key(b"")) == 32


def test_cipher_table() -> None:
    assert CIPHERS[:13] == (
        "aes",
        "aes-128",
        "aes-192",
        "salsa20",
        "blowfish",
        "twofish",
        "cast5",
        "3des",
        "tea",
        "xtea",
        "xor",
        "sm4",
        "none",
    )
    assert cipher_info("tea").implementation == "pure Python"
    assert isinstance(new_block_crypt("tea", KEY), crypt.BlockCrypt)


# --- the public-API fallbacks (used when pycryptodome's C functions cannot be
# reached directly, e.g. with its cffi backend) -------------------------------

_FALLBACK_NAMES = ["aes", "aes-128", "aes-192", "blowfish", "cast5", "3des", "salsa20", "xor"]


@pytest.mark.parametrize("name", _FALLBACK_NAMES)
def test_public_api_fallback_matches_vectors(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import load_vectors

    (vec,) = [c for c in load_vectors("crypt")["ciphers"] if c["name"] == name]
    fast = new_block_crypt(name, KEY)
    for kind in ("cfb", "salsa20", "strxor"):
        monkeypatch.setitem(_fastcrypt._RAW, kind, None)
    slow = new_block_crypt(name, KEY)
    assert type(slow).__name__ != "RawCFB"
    for r in vec["raw"] + [
        {"plaintext_hex": p["packet_hex"], "ciphertext_hex": p["encrypted_hex"]}
        for p in vec["packets"]
    ]:
        plain, enc = bytes.fromhex(r["plaintext_hex"]), bytes.fromhex(r["ciphertext_hex"])
        for _ in range(2):
            assert slow.encrypt(plain) == enc == fast.encrypt(plain)
            assert slow.decrypt(enc) == plain == fast.decrypt(enc)


def test_fast_paths_in_use_with_ctypes_backend() -> None:
    from Crypto.Util import _raw_api

    if _raw_api.backend != "ctypes":  # pragma: no cover - cffi: public API only
        pytest.skip("pycryptodome uses cffi here")
    native = _fastcrypt.native_cfb_module() is not None
    assert type(new_block_crypt("aes", KEY)).__name__ == ("NativeCFB" if native else "RawCFB")
    for name in ("salsa20", "xor", "aes-gcm"):  # each passed its check at construction
        assert getattr(new_block_crypt(name, KEY), "_fast", None) is not None, name


def test_broken_fast_path_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __call__(self, *args: object) -> int:
            return 0  # claims success, writes nothing

    monkeypatch.setattr(_accel, "native", lambda name: None)  # the ctypes path's checks
    monkeypatch.setitem(_fastcrypt._RAW, "cfb", (Broken(), Broken()))
    block = new_block_crypt("aes", KEY)
    assert type(block).__name__ == "_PycryptodomeCFB"
    data = os.urandom(100)
    assert block.decrypt(block.encrypt(data)) == data


def test_full_fast_path_check_once_per_cipher_brief_check_per_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from Crypto.Util import _raw_api

    if _raw_api.backend != "ctypes":  # pragma: no cover - cffi: public API only
        pytest.skip("pycryptodome uses cffi here")
    calls: list[int] = []
    real_agrees = crypt._agrees

    def counting(*args: object) -> bool:
        calls.append(1)
        return real_agrees(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_accel, "native", lambda name: None)  # the ctypes path's checks
    monkeypatch.setattr(crypt, "_CFB_VERDICTS", {})
    monkeypatch.setattr(crypt, "_agrees", counting)
    blocks = [new_block_crypt("aes", bytes([i]) * 32) for i in range(3)]
    assert len(calls) == 1
    assert all(type(b).__name__ == "RawCFB" for b in blocks)
    new_block_crypt("blowfish", KEY)
    assert len(calls) == 2  # another cipher: its own full check


def test_brief_check_rejects_a_broken_fast_path_the_full_check_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken:
        def __call__(self, *args: object) -> int:
            return 0  # claims success, writes nothing

    monkeypatch.setattr(_accel, "native", lambda name: None)  # the ctypes path's checks
    monkeypatch.setitem(_fastcrypt._RAW, "cfb", (Broken(), Broken()))
    monkeypatch.setattr(crypt, "_agrees", lambda *args: True)
    block = new_block_crypt("aes", KEY)
    assert type(block).__name__ == "_PycryptodomeCFB"
    data = os.urandom(100)
    assert block.decrypt(block.encrypt(data)) == data


def test_shared_object_across_threads_is_consistent() -> None:
    # The pools hand each thread its own CFB state: concurrent use of one
    # object gives the same bytes as sequential use.
    import threading

    block = new_block_crypt("aes", KEY)
    data = [os.urandom(random.Random(i).randrange(1, 1500)) for i in range(40)]
    expected = [block.encrypt(d) for d in data]
    errors: list[int] = []

    def worker() -> None:
        for _ in range(20):
            for d, e in zip(data, expected):
                if block.encrypt(d) != e or block.decrypt(e) != d:
                    errors.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


@pytest.mark.parametrize("fast", [True, False])
def test_gcm_fast_and_public_paths_agree(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:

        def no_fast(self: object) -> None:
            raise RuntimeError("no C access")

        monkeypatch.setattr(crypt.AESGCMCrypt, "_setup_fast", no_fast)
    block = crypt.AESGCMCrypt(KEY[:16])
    if not fast:
        assert block._fast is None
    for n in (0, 1, 16, 31, 1372, 1600):
        body = os.urandom(n)
        ref = AES.new(KEY[:16], AES.MODE_GCM, nonce=bytes(12), mac_len=16)
        ct, tag = ref.encrypt_and_digest(body)
        sealed = block.encrypt(bytes(12) + body)
        assert sealed == bytes(12) + ct + tag
        assert block.decrypt(sealed) == bytes(12) + body
        with pytest.raises(PacketError):
            block.decrypt(
                sealed[:12] + bytes([sealed[12] ^ 1]) + sealed[13:]
                if n
                else sealed[:-1] + bytes([sealed[-1] ^ 1])
            )


@pytest.mark.parametrize("cls", [TEA, XTEA])
def test_parallel_lane_decryption_matches_block_by_block(
    cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    cipher = cls(bytes(range(16)))
    rng = random.Random(5)
    cases = [
        bytes(rng.getrandbits(8) for _ in range(n))
        for n in [*range(0, 70), 199, 200, 201, 511, 1400, 1519, 1520, 1521, 1600]
    ]
    lanes = [cipher.cfb(c, True) for c in cases]
    # decryption (lanes) inverts the (always block-by-block) encryption
    assert [cipher.cfb(cipher.cfb(c, False), True) for c in cases] == cases
    monkeypatch.setattr(cls, "_lane_min_blocks", 10**9)
    scalar = [cipher.cfb(c, True) for c in cases]
    assert lanes == scalar


def test_sm4_parallel_lane_decryption_matches_block_by_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cipher = SM4(bytes(range(16)))
    rng = random.Random(6)
    cases = [
        bytes(rng.getrandbits(8) for _ in range(n))
        for n in [*range(0, 100), 399, 400, 401, 1400, 1519, 1520, 1521, 1600]
    ]
    lanes = [cipher.cfb(c, True) for c in cases]
    assert [cipher.cfb(cipher.cfb(c, False), True) for c in cases] == cases
    monkeypatch.setattr(SM4, "_lane_min_blocks", 10**9)
    assert [cipher.cfb(c, True) for c in cases] == lanes


@pytest.mark.parametrize("key_size", [16, 24, 32])
def test_twofish_parallel_lane_decryption_matches_block_by_block(
    key_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cipher = Twofish(bytes(range(key_size)))
    rng = random.Random(key_size)
    cases = [
        bytes(rng.getrandbits(8) for _ in range(n))
        for n in [0, 1, 15, 16, 17, 255, 256, 257, 511, 512, 513, 1400, 1519, 1520, 1521, 1600]
    ]
    lanes = [cipher.cfb(c, True) for c in cases]
    assert [cipher.cfb(cipher.cfb(c, False), True) for c in cases] == cases
    monkeypatch.setattr(Twofish, "_lane_min_blocks", 10**9)
    assert [cipher.cfb(c, True) for c in cases] == lanes


@pytest.mark.parametrize("name", [*_FALLBACK_NAMES, "aes-gcm"])
def test_env_switch_turns_fast_paths_off(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """KCPSOCK_NO_FASTCRYPT=1: every cipher uses pycryptodome's public API, same bytes."""
    fast = new_block_crypt(name, KEY)
    monkeypatch.setenv(_fastcrypt.ENV_SWITCH, "1")
    assert not _fastcrypt.enabled()
    slow = new_block_crypt(name, KEY)
    assert type(slow).__name__ not in ("RawCFB", "NativeCFB")
    assert getattr(slow, "_fast", None) is None
    for n in (13, 16, 100, 1400):
        data = bytes(range(256))[:12] + os.urandom(n)
        if name.startswith("aes-gcm"):
            assert slow.decrypt(fast.encrypt(data)) == data == fast.decrypt(slow.encrypt(data))
        else:
            assert slow.encrypt(data) == fast.encrypt(data)
            assert slow.decrypt(data) == fast.decrypt(data)
    monkeypatch.setenv(_fastcrypt.ENV_SWITCH, "0")
    assert _fastcrypt.enabled() == (
        type(new_block_crypt("aes", KEY)).__name__ in ("RawCFB", "NativeCFB")
    )


def test_repr_names_the_cipher_and_hides_the_key() -> None:
    key = bytes(range(32))
    for name in CIPHERS:
        text = repr(new_block_crypt(name, key))
        assert f"'{name}'" in text and "kcp-go New" in text, text
        assert key[:16].hex() not in text and str(key[:4]) not in text
