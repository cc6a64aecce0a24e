"""The C helper kcpsock._cfbc (kcp-go CFB + nonce/CRC header) against the other paths.

Same bytes as pycryptodome's public API (``_PycryptodomeCFB``) and the ctypes
path (``RawCFB``) for every cipher it serves, on lengths around the block
boundaries, unaligned buffers and batches of every size around the lane
count; bad arguments raise TypeError/ValueError naming them; and without
the helper (``kcpsock._accel.native`` returning None, or a helper that
computes wrong bytes) the other paths are taken.
"""

from __future__ import annotations

import gc
import random
import types
import zlib
from typing import Any, Callable, Optional

import pytest
from Crypto.Cipher import AES, CAST, DES, DES3, Blowfish

from kcpsock import PacketCodec, _accel, _fastcrypt, crypt, new_block_crypt
from kcpsock.crypt import IV, derive_key
from kcpsock.errors import PacketError

KEY = derive_key("cfbc")
CFBC = _fastcrypt.native_cfb_module()
needs_cfbc = pytest.mark.skipif(CFBC is None, reason="kcpsock._cfbc is not built or not in use")

#: name -> (factory, key, block size, CFB mode, ECB mode), as kcpsock.crypt builds them
_SERVED: dict[str, tuple[Any, bytes, int, int, int]] = {
    "aes": (AES.new, KEY[:32], 16, AES.MODE_CFB, AES.MODE_ECB),
    "aes-128": (AES.new, KEY[:16], 16, AES.MODE_CFB, AES.MODE_ECB),
    "aes-192": (AES.new, KEY[:24], 16, AES.MODE_CFB, AES.MODE_ECB),
    "blowfish": (Blowfish.new, KEY[:32], 8, Blowfish.MODE_CFB, Blowfish.MODE_ECB),
    "cast5": (CAST.new, KEY[:16], 8, CAST.MODE_CFB, CAST.MODE_ECB),
    "3des": (DES3.new, KEY[:24], 8, DES3.MODE_CFB, DES3.MODE_ECB),
    "des": (DES.new, KEY[:8], 8, DES.MODE_CFB, DES.MODE_ECB),  # 3des with K1 = K2
}


def _lengths(b: int) -> list[int]:
    """0..3 blocks, then around every block boundary of a wire packet, up to 1500+."""
    near = {n for k in range(4 * b, 1520, b) for n in (k - 1, k, k + 1)}
    return sorted(set(range(0, 3 * b + 2)) | near | {1372, 1400, 1500, 4000})


def _public(name: str) -> crypt._PycryptodomeCFB:
    factory, key, b, mode_cfb, mode_ecb = _SERVED[name]
    return crypt._PycryptodomeCFB(factory, key, b, mode_cfb, mode_ecb)


def _native(name: str) -> _fastcrypt.NativeCFB:
    assert CFBC is not None
    factory, key, b, _, mode_ecb = _SERVED[name]
    return _fastcrypt.NativeCFB(CFBC, factory, key, IV[:b], mode_ecb)


def _unaligned(data: bytes, shift: int) -> memoryview:
    """``data`` as a memoryview starting ``shift`` bytes into a bytearray."""
    return memoryview(bytearray(shift) + data)[shift:]


@needs_cfbc
@pytest.mark.parametrize("name", list(_SERVED))
def test_packets_equal_the_public_api(name: str) -> None:
    fast, slow = _native(name), _public(name)
    rng = random.Random(name)
    for n in _lengths(fast._c.block_size):
        plain = rng.randbytes(n)
        enc = slow.encrypt(plain)
        assert fast.encrypt(plain) == enc, n
        assert fast.decrypt(enc) == plain == slow.decrypt(enc), n
        shift = n % 8
        assert fast.encrypt(_unaligned(plain, shift)) == enc, n
        assert fast.decrypt(_unaligned(enc, 7 - shift)) == plain, n
        assert fast.encrypt(bytearray(plain)) == enc, n
        cut = n // 3
        assert fast.encrypt_pair(_unaligned(plain[:cut], 3), plain[cut:]) == enc, n


@needs_cfbc
@pytest.mark.parametrize("name", ["aes", "blowfish", "3des"])
def test_equals_the_ctypes_path(name: str) -> None:
    """The same bytes as RawCFB (the path it replaces), single packets and pairs."""
    factory, key, b, mode_cfb, mode_ecb = _SERVED[name]
    handles = _fastcrypt.cfb_handles()
    if handles is None:
        pytest.skip("the ctypes path is unavailable")
    raw = _fastcrypt.RawCFB(handles, factory, key, IV[:b], mode_cfb, mode_ecb)
    fast = _native(name)
    rng = random.Random(5)
    heads = [rng.randbytes(rng.choice([0, 20, 26, 28])) for _ in range(50)]
    bodies = [rng.randbytes(rng.choice(_lengths(b))) for _ in range(50)]
    expected = raw.encrypt_pairs(heads, bodies)
    assert [fast.encrypt_pair(h, bd) for h, bd in zip(heads, bodies)] == expected
    assert [fast.decrypt(e) for e in expected] == [h + bd for h, bd in zip(heads, bodies)]


def _sealed_by_hand(
    encrypt: Callable[[bytes], bytes], nonces: bytes, heads: list[bytes], bodies: list[bytes]
) -> list[bytes]:
    return [
        encrypt(nonces[16 * i : 16 * i + 16] + zlib.crc32(h + bd).to_bytes(4, "little") + h + bd)
        for i, (h, bd) in enumerate(zip(heads, bodies))
    ]


@needs_cfbc
@pytest.mark.parametrize("name", list(_SERVED))
def test_batches_of_every_size_equal_packet_by_packet(name: str) -> None:
    assert CFBC is not None
    fast, slow = _native(name), _public(name)
    b = fast._c.block_size
    rng = random.Random(11)
    lengths = [0, 1, b - 1, b, b + 1, 3 * b + 5, 100, 1364, 1372, 1380, 1500]
    for count in [0, 1, 2, CFBC.LANES - 1, CFBC.LANES, CFBC.LANES + 1, 2 * CFBC.LANES + 3, 64]:
        heads = [rng.randbytes(rng.choice([0, 6, 8])) for _ in range(count)]
        bodies = [rng.randbytes(rng.choice(lengths)) for _ in range(count)]
        nonces = rng.randbytes(16 * count)
        expected = _sealed_by_hand(slow.encrypt, nonces, heads, bodies)
        assert fast.seal_many(nonces, heads, bodies) == expected, count
        # unaligned, bytearrays, tuples: the same bytes
        assert (
            fast.seal_many(
                _unaligned(nonces, 5),
                tuple(bytearray(h) for h in heads),
                [_unaligned(bd, i % 8) for i, bd in enumerate(bodies)],
            )
            == expected
        )
        plain = [h + bd for h, bd in zip(heads, bodies)]
        assert fast.open_packets(expected) == plain
        assert fast.open_packets([_unaligned(e, 3) for e in expected]) == plain
        assert [fast.open_packet(e) for e in expected] == plain


@needs_cfbc
def test_open_reports_a_bad_crc_as_none() -> None:
    fast = _native("aes")
    rng = random.Random(2)
    good = fast.seal_many(
        rng.randbytes(48), [b"", b"ab", b""], [rng.randbytes(n) for n in (0, 5, 1400)]
    )
    for i, packet in enumerate(good):
        for pos in (0, 15, 16, 19, len(packet) - 1):
            spoilt = bytearray(packet)
            spoilt[pos] ^= 0x40
            assert fast.open_packet(bytes(spoilt)) is None, (i, pos)
    spoilt = bytearray(good[2])
    spoilt[700] ^= 1
    assert fast.open_packets([good[0], bytes(spoilt), good[1]]) == [
        fast.open_packet(good[0]),
        None,
        fast.open_packet(good[1]),
    ]
    # a given object in place of None (the codec's PacketError)
    marker = object()
    got = fast.open_packets([bytes(spoilt), good[0], bytes(spoilt)], marker)
    assert got[0] is marker and got[2] is marker and got[1] == fast.open_packet(good[0])


@needs_cfbc
@pytest.mark.parametrize("name", list(_SERVED))
def test_open_of_every_length_equals_the_public_api(name: str) -> None:
    """open(): the keystream of every block in one call, the payload XORed into the result."""
    fast, slow = _native(name), _public(name)
    rng = random.Random(name + "open")
    for n in [20, 21, *_lengths(fast._c.block_size)]:
        if n < 20:
            continue
        packet = rng.randbytes(n)
        plain = slow.decrypt(packet)
        # (random bytes: the CRC field matches with odds 2**-32; this seed's do not)
        assert zlib.crc32(plain[20:]) != int.from_bytes(plain[16:20], "little"), n
        assert fast.open_packet(packet) is None, n
        # the same packet with its CRC made to match
        fixed = bytearray(plain)
        fixed[16:20] = zlib.crc32(plain[20:]).to_bytes(4, "little")
        sealed = slow.encrypt(bytes(fixed))
        assert fast.open_packet(sealed) == plain[20:], n
        assert fast.open_packets([sealed, packet, _unaligned(sealed, n % 7)]) == [
            plain[20:],
            None,
            plain[20:],
        ], n


@needs_cfbc
def test_shared_small_bytes_are_never_written() -> None:
    # CPython shares its one-byte bytes objects: results are always fresh objects
    fast = _native("aes")
    for value in (0, 97, 255):
        one = bytes([value])
        out = fast.encrypt(one)
        assert out is not one and bytes([value]) == one and one[0] == value
        assert fast.decrypt(out) == one
        assert fast.encrypt_pair(b"", one) == out
        assert fast.encrypt(b"") == b""


@needs_cfbc
def test_the_ecb_object_lives_as_long_as_the_c_object() -> None:
    assert CFBC is not None
    c = CFBC.CFB(AES.new(KEY, AES.MODE_ECB), IV)
    gc.collect()
    expected = _public("aes").encrypt(bytes(100))
    assert c.encrypt(bytes(100)) == expected
    assert type(c.ecb).__name__ == "EcbMode"
    assert c.block_size == 16


@needs_cfbc
def test_bad_arguments_name_themselves() -> None:
    assert CFBC is not None
    c = CFBC.CFB(AES.new(KEY, AES.MODE_ECB), IV)
    bad: Any = "text"
    with pytest.raises(TypeError, match="data"):
        c.encrypt(bad)
    with pytest.raises(TypeError, match="data"):
        c.decrypt(123)
    with pytest.raises(TypeError, match="body"):
        c.encrypt_pair(b"", None)
    with pytest.raises(TypeError, match="exactly 1 argument"):
        c.encrypt()
    with pytest.raises(TypeError, match="contiguous"):
        c.encrypt(memoryview(bytes(32))[::2])
    with pytest.raises(ValueError, match="nonces must be 32 bytes"):
        c.seal(bytes(16), [b"", b""], [b"x", b"y"])
    with pytest.raises(ValueError, match="heads and bodies differ"):
        c.seal(bytes(16), [b""], [b"x", b"y"])
    with pytest.raises(TypeError, match=r"bodies\[1\]"):
        c.seal(bytes(32), [b"", b""], [b"x", 5])
    with pytest.raises(TypeError, match="heads must be a sequence"):
        c.seal(bytes(16), b"x", [b"y"])
    with pytest.raises(TypeError, match="nonces"):
        c.seal(None, [], [])
    with pytest.raises(ValueError, match="packet is shorter than the 20-byte"):
        c.open(bytes(19))
    with pytest.raises(ValueError, match=r"packets\[1\] is shorter"):
        c.open_many([bytes(40), bytes(3)])
    with pytest.raises(TypeError, match=r"packets\[0\]"):
        c.open_many([None])
    with pytest.raises(TypeError, match="1 or 2 arguments"):
        c.open_many([], None, None)
    with pytest.raises(TypeError, match="packets must be a sequence"):
        c.open_many(7)
    # the iterables that are not lists or tuples are taken as sequences
    assert c.seal(bytes(16), iter([b"h"]), (x for x in [b"b"])) == c.seal(bytes(16), [b"h"], [b"b"])


@needs_cfbc
def test_construction_checks_the_ecb_object() -> None:
    assert CFBC is not None
    with pytest.raises(TypeError, match="ecb must be a pycryptodome ECB"):
        CFBC.CFB(object(), IV)
    with pytest.raises(TypeError, match="ecb must be a pycryptodome ECB"):
        CFBC.CFB(types.SimpleNamespace(_state=types.SimpleNamespace(get=lambda: "x")), IV)
    with pytest.raises(ValueError, match="iv must be 8 or 16 bytes"):
        CFBC.CFB(AES.new(KEY, AES.MODE_ECB), IV[:12])
    with pytest.raises(ValueError, match="block size does not match"):
        CFBC.CFB(AES.new(KEY, AES.MODE_ECB), IV[:8])
    with pytest.raises(ValueError, match="block size does not match"):
        CFBC.CFB(Blowfish.new(KEY, Blowfish.MODE_ECB), IV)
    with pytest.raises(TypeError):
        CFBC.CFB(AES.new(KEY, AES.MODE_ECB))

    class Liar:
        """An AES ECB state whose public encrypt says something else."""

        def __init__(self) -> None:
            self._ecb = AES.new(KEY, AES.MODE_ECB)
            self._state = self._ecb._state

        def encrypt(self, data: bytes) -> bytes:
            return bytes(len(data))

    with pytest.raises(ValueError, match=r"does not encrypt as ecb\.encrypt"):
        CFBC.CFB(Liar(), IV)


@needs_cfbc
def test_crc32_is_zlibs() -> None:
    assert CFBC is not None
    rng = random.Random(4)
    for n in (0, 1, 7, 8, 9, 100, 1400, 70000):
        data = rng.randbytes(n)
        assert CFBC.crc32(data) == zlib.crc32(data)


def test_served_ciphers_use_the_helper_when_built() -> None:
    for name in ("aes", "aes-128", "aes-192", "blowfish", "cast5", "3des"):
        block = new_block_crypt(name, KEY)
        assert isinstance(block, _fastcrypt.NativeCFB) == (CFBC is not None), name
    assert not isinstance(new_block_crypt("twofish", KEY), _fastcrypt.NativeCFB)


def test_fallback_when_native_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_accel.native`` gives None (pure build, stale, absent): the ctypes or public path."""
    asked: list[str] = []

    def absent(name: str) -> Optional[types.ModuleType]:
        asked.append(name)
        return None

    monkeypatch.setattr(_accel, "native", absent)
    block = new_block_crypt("aes", KEY)
    assert asked == ["_cfbc"] or not _fastcrypt.enabled()
    assert not isinstance(block, _fastcrypt.NativeCFB)
    assert type(block).__name__ in ("RawCFB", "_PycryptodomeCFB")
    slow = _public("aes")
    data = random.Random(1).randbytes(1400)
    assert block.encrypt(data) == slow.encrypt(data)
    codec = PacketCodec(block, 10, 3, random_bytes=lambda n: bytes(n))
    assert codec._seal is None and codec._open_packets is None
    wire = codec.encode_many([data[:1372]] * 10, 0)
    assert len(wire) == 13
    assert all(isinstance(r, bytes) for r in codec.open_many(wire))


@needs_cfbc
def test_a_helper_computing_wrong_bytes_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CFBC is not None
    real = CFBC

    class WrongCFB:
        def __init__(self, ecb: object, iv: bytes) -> None:
            self._c = real.CFB(ecb, iv)
            self.decrypt = self._c.decrypt
            self.encrypt_pair = self._c.encrypt_pair
            self.seal = self._c.seal
            self.open = self._c.open
            self.open_many = self._c.open_many

        def encrypt(self, data: bytes) -> bytes:
            out = bytearray(self._c.encrypt(data))
            if len(out) > 40:
                out[40] ^= 1
            return bytes(out)

    class Refusing:
        def __init__(self, ecb: object, iv: bytes) -> None:
            raise ValueError("no")

    for cls in (WrongCFB, Refusing):
        fake = types.ModuleType("kcpsock._cfbc")
        fake.CFB = cls  # type: ignore[attr-defined]
        fake.LANES = real.LANES  # type: ignore[attr-defined]
        monkeypatch.setattr(_accel, "native", lambda name, fake=fake: fake)
        block = new_block_crypt("aes", KEY)
        assert not isinstance(block, _fastcrypt.NativeCFB), cls
        assert block.encrypt(bytes(100)) == _public("aes").encrypt(bytes(100))


@needs_cfbc
@pytest.mark.parametrize("cipher", ["aes", "blowfish", "3des"])
@pytest.mark.parametrize(("d", "p"), [(0, 0), (10, 3)])
def test_codec_with_and_without_the_helper(
    cipher: str, d: int, p: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rng_bytes(seed: int) -> Callable[[int], bytes]:
        rng = random.Random(seed)
        return lambda n: rng.randbytes(n)

    rng = random.Random(8)
    dgs = [rng.randbytes(rng.choice([24, 25, 100, 1000, 1372])) for _ in range(45)]
    fast = PacketCodec(new_block_crypt(cipher, KEY), d, p, random_bytes=rng_bytes(1))
    assert fast._seal is not None and fast._open_packets is not None
    monkeypatch.setattr(_accel, "native", lambda name: None)
    slow = PacketCodec(new_block_crypt(cipher, KEY), d, p, random_bytes=rng_bytes(1))
    assert slow._seal is None
    wire: list[bytes] = []
    for size in (1, 2, 3, 4, 5, 30):  # both sides of the old batch threshold
        got = fast.encode_many(dgs[:size], 1000)
        assert got == slow.encode_many(dgs[:size], 1000), size
        wire += got
    assert fast.encode(dgs[7], 1000) == slow.encode(dgs[7], 1000)
    spoilt = bytearray(wire[3])
    spoilt[-1] ^= 1
    batch = [wire[0], bytes(spoilt), bytes(10), bytes(1501), wire[1], *wire[2:9]]

    def show(results: list[Any]) -> list[Any]:
        return [r if isinstance(r, bytes) else (type(r), r.counter, str(r)) for r in results]

    assert show(fast.open_many(batch)) == show(slow.open_many(batch))
    assert show(fast.open_many(batch[:1])) == show(slow.open_many(batch[:1]))
    assert fast.open(wire[0]) == slow.open(wire[0])
    with pytest.raises(PacketError, match="CRC") as info:
        fast.open(bytes(spoilt))
    assert info.value.counter == "InCsumErrors"


def _fec_head(tag: int, body: bytes) -> bytes:
    """The FEC header a tag stands for (kcp-go's layout, written out here by hand)."""
    if tag >= 1 << 32:
        return (tag - (1 << 32)).to_bytes(4, "little") + bytes([0xF2, 0])
    return tag.to_bytes(4, "little") + bytes([0xF1, 0]) + (len(body) + 2).to_bytes(2, "little")


@needs_cfbc
@pytest.mark.parametrize("name", list(_SERVED))
def test_seal_writes_fec_headers_from_tags(name: str) -> None:
    assert CFBC is not None
    assert CFBC.PARITY_TAG == 1 << 32 == __import__("kcpsock.fec").fec.PARITY_TAG
    fast, slow = _native(name), _public(name)
    assert fast.seal_tagged is not None
    rng = random.Random(5)
    # every body length of a wire packet, each as a data packet and as a parity packet
    for n in range(0, 1530):
        body = rng.randbytes(n)
        seq = rng.choice([0, 1, 255, 256, 0xFFFF, 0x10000, 0xFFFFFFFF, rng.getrandbits(32)])
        tags = [seq, CFBC.PARITY_TAG + seq]
        heads = [_fec_head(t, body) for t in tags]
        nonces = rng.randbytes(32)
        expected = _sealed_by_hand(slow.encrypt, nonces, heads, [body, body])
        assert fast.seal_tagged(nonces, tags, [body, body]) == expected, n
    # batches of every size around the lane count, tags and bytes heads mixed
    for count in [1, CFBC.LANES - 1, CFBC.LANES, CFBC.LANES + 1, 2 * CFBC.LANES + 3, 64]:
        bodies = [rng.randbytes(rng.choice([0, 1, 15, 16, 17, 1372, 1500])) for _ in range(count)]
        heads_in: list[Any] = []
        for i in range(count):
            kind = i % 3
            tag = rng.getrandbits(32) + (CFBC.PARITY_TAG if kind == 1 else 0)
            heads_in.append(tag if kind < 2 else rng.randbytes(rng.choice([0, 6, 8])))
        heads = [_fec_head(h, bd) if isinstance(h, int) else h for h, bd in zip(heads_in, bodies)]
        nonces = rng.randbytes(16 * count)
        expected = _sealed_by_hand(slow.encrypt, nonces, heads, bodies)
        assert fast.seal_many(nonces, heads_in, bodies) == expected, count
        assert fast.seal_many(nonces, tuple(heads_in), tuple(bodies)) == expected, count


@needs_cfbc
def test_seal_refuses_bad_tags() -> None:
    assert CFBC is not None
    c = _native("aes")._c
    for bad in (-1, 1 << 33, (1 << 33) + 5, 1 << 64, -(1 << 70)):
        with pytest.raises(ValueError, match=r"heads\[1\]: an int head"):
            c.seal(bytes(32), [0, bad], [b"x", b"y"])
    with pytest.raises(TypeError, match=r"heads\[0\]"):
        c.seal(bytes(16), [True], [b"x"])
    with pytest.raises(TypeError, match=r"heads\[0\]"):
        c.seal(bytes(16), [1.0], [b"x"])
    with pytest.raises(TypeError, match=r"bodies\[0\]"):
        c.seal(bytes(16), [7], [None])
    # the size field: 2 + the body's length must fit a u16 (a parity packet has none)
    longest = bytes(0xFFFF - 2)
    assert len(c.seal(bytes(16), [3], [longest])[0]) == 20 + 8 + len(longest)
    with pytest.raises(ValueError, match=r"bodies\[1\]: 65534 bytes, too long for FEC"):
        c.seal(bytes(32), [3, 4], [b"", longest + b"x"])
    assert len(c.seal(bytes(16), [CFBC.PARITY_TAG], [longest + b"xy"])[0]) == 20 + 6 + 0xFFFF


def _cpu_has_aes() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " aes" in line for line in f)
    except OSError:
        return False


@needs_cfbc
@pytest.mark.parametrize("name", ["aes", "aes-128", "aes-192"])
def test_aes_runs_on_the_helpers_own_aesni_code_and_agrees(name: str) -> None:
    """With the key, AES chains run on _cfbc's AES-NI code: same bytes as without it."""
    assert CFBC is not None
    factory, key, _, _, mode_ecb = _SERVED[name]
    fast = _native(name)
    if _cpu_has_aes() and __import__("platform").machine() == "x86_64":
        assert fast._c.aesni
    plain = CFBC.CFB(factory(key, mode_ecb), IV[:16])  # no key: pycryptodome's cipher
    assert not plain.aesni
    rng = random.Random(21)
    for count in [1, 2, 7, 8, 9, 15, 16, 17, 40]:
        for _ in range(4):
            bodies = [
                rng.randbytes(rng.choice([0, 1, 15, 16, 17, 33, 64, 1380])) for _ in range(count)
            ]
            if rng.random() < 0.5:
                bodies = [rng.randbytes(1372)] * count  # equal lengths: whole rounds throughout
            heads = [rng.randbytes(rng.choice([0, 6, 8])) for _ in range(count)]
            nonces = rng.randbytes(16 * count)
            assert fast.seal_many(nonces, heads, bodies) == plain.seal(nonces, heads, bodies)
    for n in range(0, 100):
        data = rng.randbytes(n)
        assert fast.encrypt(data) == plain.encrypt(data)
        assert fast.encrypt_pair(data[:5], data[5:]) == plain.encrypt(data)


@needs_cfbc
def test_the_own_aes_is_used_only_when_it_agrees() -> None:
    assert CFBC is not None
    factory, key, _, _, mode_ecb = _SERVED["aes"]
    ecb = factory(key, mode_ecb)
    # a wrong key, a key of no AES length, a block cipher other than AES: pycryptodome's
    for other in (bytes(32), key[:16], key[:5], b"", key + b"x"):
        c = CFBC.CFB(ecb, IV[:16], other)
        assert not c.aesni, other
        assert c.encrypt(bytes(100)) == CFBC.CFB(ecb, IV[:16]).encrypt(bytes(100))
    bf_factory, bf_key, _, _, bf_ecb = _SERVED["blowfish"]
    assert not CFBC.CFB(bf_factory(bf_key, bf_ecb), IV[:8], bf_key[:16]).aesni
    with pytest.raises(TypeError):
        CFBC.CFB(ecb, IV[:16], 123)
    with pytest.raises(TypeError):
        CFBC.CFB(ecb, IV[:16], "key")
    assert CFBC.CFB(ecb, IV[:16], key=memoryview(key)).aesni == CFBC.CFB(ecb, IV[:16], key).aesni
