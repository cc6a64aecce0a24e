"""kcp-go's packet ciphers, byte-identical, under kcptun's names.

A :class:`BlockCrypt` transforms one whole UDP payload at a time.  For every
cipher except AES-GCM the payload the session hands over is already laid out
as kcp-go lays it out (kcp-go ``sess.go`` ``output``)::

    0               16      20
    +---------------+-------+---------------------------------+
    | nonce (16)    | crc32 | body (FEC header + KCP datagram) |
    +---------------+-------+---------------------------------+
    |<------------- encrypted as a whole (CFB, fixed IV) ----->|

and ``encrypt`` transforms all of it.  The codec (kcpsock.codec) fills in the
nonce and the CRC; this module only knows the ciphers.

Invariants:
    * Block ciphers use kcp-go's CFB (kcp-go ``encrypt``/``decrypt`` in
      crypt.go): the fixed IV ``a7734f9c...e66b`` (its first 8 bytes for
      64-bit blocks) restarts for **every** packet, the ciphertext is fed
      back, and a trailing partial block uses a truncated keystream block.
      Only the block cipher's encryption direction is ever used.
    * Salsa20 leaves bytes 0..7 in clear and uses them as its nonce.
    * ``xor`` XORs with a fixed 1500-byte PBKDF2 pad (obfuscation only).
    * ``none`` is the identity but keeps the 20-byte header (kcp-go
      ``NewNoneBlockCrypt``); "no BlockCrypt at all" is ``None`` in the codec.
    * ``aes-gcm`` (kcp-go HEAD's AEAD mode, opt-in) has its own layout: a
      12-byte clear nonce, the GCM ciphertext, a 16-byte tag, and no CRC.
      kcp-go releases before late 2025 (Debian's 5.6.1 included) do not
      understand it.
    * Every object is safe to share between threads without a lock: the
      per-packet cipher state lives in objects taken from a pool with the
      atomic ``list.pop``/``list.append`` and never touched by two threads
      at once (kcp-go HEAD serialises with a mutex instead).
    * Keys follow kcptun's convention: each name takes a fixed-size prefix
      of the key (``pass[0:16]`` for ``aes-128`` ...), so one 32-byte
      :func:`derive_key` result serves every cipher.
    * Speed paths (pycryptodome's C functions called through ctypes, all in
      kcpsock._fastcrypt; ``KCPSOCK_NO_FASTCRYPT=1`` turns them off) are
      used only after they reproduced the public
      API's output at construction; otherwise the public API is used.  Both
      give the same bytes.  For the CFB ciphers the full comparison (~0.8
      ms) runs once per cipher and process, and each later key gets a brief
      one (one 2.5-block packet both ways, against the public ECB).
    * The first choice for the pycryptodome CFB ciphers (aes, blowfish,
      cast5, 3des) is the C helper kcpsock._cfbc (:class:`kcpsock._fastcrypt.NativeCFB`:
      CFB and the nonce + CRC header of a whole batch in one C call, over
      pycryptodome's own block cipher), under the same rule: a full
      comparison once per cipher and process, a brief one per key.  Without
      the extension (``KCPSOCK_PURE=1``, not built, stale) the ctypes path
      or the public API serve.
    * TEA, XTEA, Twofish and SM4 are pure Python (kcpsock._tea, _twofish,
      _sm4): exact, but 0.7 to 2.3 ms per 1400-byte packet.

Pure module: no I/O, no clock; nonces are the codec's business.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from types import ModuleType
from typing import Callable, Final, NamedTuple, Optional, Protocol, runtime_checkable

from Crypto.Cipher import AES, CAST, DES, DES3, Blowfish, Salsa20

from . import _fastcrypt
from ._cfb import IV as _CFB_IV
from ._cfb import WordCFB
from ._fastcrypt import CipherFactory, cipher_repr
from .config import MTU_LIMIT
from .errors import PacketError

__all__ = [
    "CIPHERS",
    "CRC_SIZE",
    "CRYPT_HEADER_SIZE",
    "GCM_NONCE_SIZE",
    "GCM_TAG_SIZE",
    "IV",
    "NONCE_SIZE",
    "BlockCrypt",
    "CipherInfo",
    "cipher_info",
    "derive_key",
    "new_block_crypt",
]

#: kcp-go ``initialVector``: the fixed CFB IV (8-byte-block ciphers use [:8]);
#: defined in kcpsock._cfb, which the pure-Python ciphers share.
IV = _CFB_IV
#: kcp-go ``nonceSize``, ``crcSize``, ``cryptHeaderSize``.
NONCE_SIZE: Final = 16
CRC_SIZE: Final = 4
CRYPT_HEADER_SIZE: Final = NONCE_SIZE + CRC_SIZE
#: kcp-go HEAD AES-GCM: nonce in clear in front, tag behind.
GCM_NONCE_SIZE: Final = 12
GCM_TAG_SIZE = 16
#: kcp-go ``saltxor``, kcptun ``SALT``.
_XOR_SALT = b"sH3CIVoF#rWLtJo6"
_KDF_SALT = b"kcp-go"


@runtime_checkable
class BlockCrypt(Protocol):
    """What the codec needs from a cipher: whole-packet encrypt and decrypt.

    Implementations may also define ``nonce_size`` and ``tag_size``
    (AEAD layout, see :class:`AESGCMCrypt`); without them the codec assumes
    kcp-go's nonce+CRC layout.
    """

    def encrypt(self, packet: bytes) -> bytes:
        """Return the encrypted packet (same length, except for AEAD)."""
        ...  # pragma: no cover

    def decrypt(self, packet: bytes) -> bytes:
        """Return the decrypted packet (may raise PacketError for AEAD)."""
        ...  # pragma: no cover


def derive_key(password: str | bytes) -> bytes:
    """kcptun's key derivation: PBKDF2-HMAC-SHA1(password, "kcp-go", 4096, 32).

    Args:
        password: a str (encoded as UTF-8) or bytes.

    Returns:
        The 32-byte key (give it whole to :func:`new_block_crypt`).

    Raises:
        TypeError: if ``password`` is neither str nor bytes-like.
    """
    if isinstance(password, str):
        pw = password.encode("utf-8")
    elif isinstance(password, (bytes, bytearray, memoryview)):
        pw = bytes(password)
    else:
        raise TypeError(f"password must be str or bytes, not {type(password).__name__}")
    return hashlib.pbkdf2_hmac("sha1", pw, _KDF_SALT, 4096, 32)


def _xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR two byte strings of equal length (whole-int arithmetic, C speed)."""
    n = len(a)
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(n, "little")


class _PycryptodomeCFB:
    """kcp-go CFB over a pycryptodome block cipher, without per-packet setup.

    Creating a pycryptodome cipher object costs more than encrypting a
    1400-byte packet, so long-lived CFB objects are re-synchronised instead:

    * decrypt: CFB's state after *decrypting* a block is E(that ciphertext
      block), whatever came before, so ``dec.decrypt(IV + packet + pad)``
      restarts the chain at the fixed IV; the first block's output and the
      pad are dropped.  The zero pad completes the trailing partial block so
      the object always ends on a block boundary.
    * encrypt: the state after encrypting is E(last ciphertext block), which
      we know (we produced it), so the keystream block K the object will use
      next is one ECB call away.  Feeding ``P0 ^ E(IV) ^ K`` as the first
      block makes its ciphertext ``P0 ^ E(IV)`` = kcp-go's first block, and
      the chain continues from there exactly as kcp-go's.

    This class uses pycryptodome's public API only; :class:`_RawCFB` is the
    faster variant used when pycryptodome's C functions can be reached.
    """

    __repr__ = cipher_repr

    def __init__(
        self, factory: CipherFactory, key: bytes, block_size: int, mode_cfb: int, mode_ecb: int
    ) -> None:
        self._b = block_size
        self._iv = IV[:block_size]
        self._seg = block_size * 8

        def new_cfb() -> _fastcrypt.Cipher:
            return factory(key, mode_cfb, iv=self._iv, segment_size=self._seg)

        self._new_cfb = new_cfb
        self._ecb = factory(key, mode_ecb)
        self._k0 = self._ecb.encrypt(self._iv)
        self._k0_int = int.from_bytes(self._k0, "big")
        # pools of per-thread-at-a-time state (see the module invariants)
        self._enc_pool: list[tuple[_fastcrypt.Cipher, int]] = []
        self._dec_pool: list[_fastcrypt.Cipher] = []

    def encrypt(self, packet: bytes) -> bytes:
        """Encrypt one packet (kcp-go ``encrypt``); see the class docstring."""
        n = len(packet)
        b = self._b
        if n <= b:
            return _xor_bytes(packet, self._k0[:n])
        try:
            cfb, k_next = self._enc_pool.pop()
        except IndexError:
            # fresh object: its next keystream block is E(IV)
            cfb, k_next = self._new_cfb(), self._k0_int
        first = (int.from_bytes(packet[:b], "big") ^ self._k0_int ^ k_next).to_bytes(b, "big")
        pad = b"\0" * (-n % b)
        out = cfb.encrypt(first + packet[b:] + pad)
        self._enc_pool.append((cfb, int.from_bytes(self._ecb.encrypt(out[-b:]), "big")))
        return out[:n] if pad else out

    def decrypt(self, packet: bytes) -> bytes:
        """Decrypt one packet (kcp-go ``decrypt``); see the class docstring."""
        n = len(packet)
        b = self._b
        if n <= b:
            return _xor_bytes(packet, self._k0[:n])
        try:
            cfb = self._dec_pool.pop()
        except IndexError:
            cfb = self._new_cfb()
        out = cfb.decrypt(self._iv + packet + b"\0" * (-n % b))
        self._dec_pool.append(cfb)
        return out[b : b + n]


def _agrees(fast: BlockCrypt, reference: BlockCrypt, block_size: int) -> bool:
    """True if ``fast`` matches ``reference`` on assorted lengths, both ways."""
    samples = [
        bytes((i * 7 + n) & 255 for i in range(n))
        for n in (
            0,
            1,
            block_size - 1,
            block_size,
            block_size + 1,
            3 * block_size + 5,
            44,
            1400,
            1500,
            2000,
        )
    ]
    try:
        for _ in range(2):  # twice: state must not leak between packets
            for data in samples:
                if fast.encrypt(data) != reference.encrypt(data):
                    return False
                if fast.decrypt(data) != reference.decrypt(data):
                    return False
        return _batch_paths_agree(fast, reference.encrypt, reference.decrypt, samples)
    except Exception:
        return False


def _batch_paths_agree(
    fast: object,
    encrypt: Callable[[bytes], bytes],
    decrypt: Callable[[bytes], bytes],
    samples: list[bytes],
) -> bool:
    """True if ``fast``'s ``encrypt_pair`` and ``decrypt_many`` (when it has them) agree."""
    pair = getattr(fast, "encrypt_pair", None)
    if pair is not None:
        for data in samples:
            for cut in (0, 1, 20, len(data) // 2):
                if cut <= len(data) and pair(data[:cut], data[cut:]) != encrypt(data):
                    return False
    seal = getattr(fast, "seal_many", None)
    if seal is not None and not _seal_agrees(fast, seal, encrypt, samples):
        return False
    many = getattr(fast, "decrypt_many", None)
    if many is not None:
        got = many(
            samples,
            lambda view, offsets: [
                view[o : o + len(p)].tobytes() for o, p in zip(offsets, samples)
            ],
        )
        if got != [decrypt(p) for p in samples]:
            return False
    return True


def _seal_agrees(
    fast: object,
    seal: Callable[[bytes, list[bytes], list[bytes]], list[bytes]],
    encrypt: Callable[[bytes], bytes],
    samples: list[bytes],
) -> bool:
    """True if ``seal`` (kcpsock._cfbc's batch sealer) agrees with ``encrypt``.

    Each sample is cut into head and body; the batch's packets must equal
    ``encrypt(nonce + crc32 + head + body)``, and ``open_packets`` (and
    ``open_packet``) must give ``head + body`` back, and None for a packet
    with one bit flipped.
    """
    heads = [data[: i % 9] for i, data in enumerate(samples)]
    bodies = [data[i % 9 :] for i, data in enumerate(samples)]
    nonces = bytes((i * 13 + 7) & 255 for i in range(NONCE_SIZE * len(samples)))
    expected = [
        encrypt(
            nonces[NONCE_SIZE * i : NONCE_SIZE * (i + 1)]
            + zlib.crc32(data).to_bytes(CRC_SIZE, "little")
            + data
        )
        for i, data in enumerate(samples)
    ]
    if seal(nonces, heads, bodies) != expected:
        return False
    tagged = getattr(fast, "seal_tagged", None)
    if tagged is not None and len(bodies) >= 2:
        # FEC headers by tag: a data packet's (seqid, 0xF1, size) and a parity one's
        tags = [0x01020304, (1 << 32) + 0xFFFFFFFF]
        heads = [
            struct.pack("<IHH", 0x01020304, 0xF1, len(bodies[0]) + 2),
            struct.pack("<IH", 0xFFFFFFFF, 0xF2),
        ]
        two = nonces[: 2 * NONCE_SIZE]
        if tagged(two, tags, bodies[:2]) != seal(two, heads, bodies[:2]):
            return False
    open_packets = getattr(fast, "open_packets", None)
    open_packet = getattr(fast, "open_packet", None)
    if open_packets is None or open_packet is None:
        return True
    spoilt = bytearray(expected[-1])
    spoilt[-1] ^= 1
    if open_packets([*expected, bytes(spoilt)]) != [*samples, None]:
        return False
    return open_packet(expected[0]) == samples[0] and open_packet(bytes(spoilt)) is None


# (factory, block size, CFB mode, ECB mode) -> (the C handles checked, did
# _RawCFB agree with the public API in the full check?).  The direct C calls do not depend on the key,
# so the full check (~0.8 ms) runs once per cipher and process; every later
# key still gets the cheap check of _agrees_briefly.  Racing threads may both
# run the full check, which is harmless.
_CFB_VERDICTS: dict[
    tuple[CipherFactory, int, int, int], tuple[tuple[_fastcrypt.CFunc, ...], bool]
] = {}


def _cfb_by_hand(ecb: _fastcrypt.Cipher, plain: bytes, b: int) -> bytes:
    """kcp-go CFB encryption of ``plain``, one public ECB call per block."""
    expected = b""
    feedback = IV[:b]
    for i in range(0, len(plain), b):
        chunk = plain[i : i + b]
        block = _xor_bytes(chunk, ecb.encrypt(feedback)[: len(chunk)])
        expected += block
        feedback = block
    return expected


def _agrees_briefly(fast: _fastcrypt.RawCFB, ecb: _fastcrypt.Cipher, block_size: int) -> bool:
    """True if ``fast`` matches kcp-go's CFB built from the public ECB ``ecb``.

    One packet of 2.5 blocks, both ways: C0 = P0 ^ E(IV), C1 = P1 ^ E(C0),
    C2 = P2 ^ E(C1) truncated (three public ECB calls).
    """
    b = block_size
    plain = bytes((i * 11 + 5) & 255 for i in range(2 * b + b // 2))
    expected = _cfb_by_hand(ecb, plain, b)
    try:
        if not (fast.encrypt(plain) == expected and fast.decrypt(expected) == plain):
            return False
        got = fast.decrypt_many(
            [expected, expected[:5]],
            lambda view, offsets: [
                view[offsets[0] : offsets[0] + len(expected)].tobytes(),
                view[offsets[1] : offsets[1] + 5].tobytes(),
            ],
        )
        return got == [plain, plain[:5]] and fast.encrypt_pair(plain[:3], plain[3:]) == expected
    except Exception:
        return False


# (factory, block size, CFB mode, ECB mode, the C helper module) -> did
# NativeCFB agree with the public API in the full check?  Once per cipher,
# process and module (tests swap the module); every later key gets the brief
# check of _native_agrees_briefly.
_NATIVE_VERDICTS: dict[tuple[CipherFactory, int, int, int, ModuleType], bool] = {}


def _native_agrees_briefly(fast: _fastcrypt.NativeCFB, block_size: int) -> bool:
    """True if ``fast`` matches kcp-go's CFB built from its public ECB object.

    One 2.5-block packet both ways (see :func:`_agrees_briefly`), and one
    sealed batch of two packets opened again.
    """
    b = block_size
    plain = bytes((i * 11 + 5) & 255 for i in range(2 * b + b // 2))
    expected = _cfb_by_hand(fast.ecb, plain, b)
    try:
        if not (fast.encrypt(plain) == expected and fast.decrypt(expected) == plain):
            return False
        return _seal_agrees(fast, fast.seal_many, fast.encrypt, [plain, plain[:3]])
    except Exception:
        return False


def _native_cfb(
    factory: CipherFactory, key: bytes, block_size: int, mode_cfb: int, mode_ecb: int
) -> Optional[BlockCrypt]:
    """kcp-go CFB through the C helper kcpsock._cfbc, when present and exact; else None."""
    module = _fastcrypt.native_cfb_module()
    if module is None:
        return None
    try:
        fast = _fastcrypt.NativeCFB(module, factory, key, IV[:block_size], mode_ecb)
    except Exception:  # refused (see NativeCFB): the other paths serve
        return None
    kind = (factory, block_size, mode_cfb, mode_ecb, module)
    verdict = _NATIVE_VERDICTS.get(kind)
    if verdict is None:
        verdict = _NATIVE_VERDICTS[kind] = _agrees(
            fast, _PycryptodomeCFB(factory, key, block_size, mode_cfb, mode_ecb), block_size
        )
    if verdict and _native_agrees_briefly(fast, block_size):
        return fast
    return None


def _cfb(
    factory: CipherFactory, key: bytes, block_size: int, mode_cfb: int, mode_ecb: int
) -> BlockCrypt:
    """The fastest exact kcp-go CFB available for a pycryptodome cipher.

    In order: the C helper (:func:`_native_cfb`), pycryptodome's C functions
    through ctypes (:class:`~kcpsock._fastcrypt.RawCFB`), the public API.
    """
    native = _native_cfb(factory, key, block_size, mode_cfb, mode_ecb)
    if native is not None:
        return native
    handles = _fastcrypt.cfb_handles()
    kind = (factory, block_size, mode_cfb, mode_ecb)
    known = _CFB_VERDICTS.get(kind)
    if known is not None and (
        handles is None or any(a is not b for a, b in zip(known[0], handles))
    ):
        known = None  # other C handles (tests swap them): check again
    if handles is not None and (known is None or known[1]):
        try:
            fast: _fastcrypt.RawCFB | None = _fastcrypt.RawCFB(
                handles, factory, key, IV[:block_size], mode_cfb, mode_ecb
            )
        except Exception:
            fast = None
        if fast is not None:
            if known is None:
                known = _CFB_VERDICTS[kind] = (
                    handles,
                    _agrees(
                        fast,
                        _PycryptodomeCFB(factory, key, block_size, mode_cfb, mode_ecb),
                        block_size,
                    ),
                )
            if known[1] and _agrees_briefly(fast, fast.ecb, block_size):
                return fast
    return _PycryptodomeCFB(factory, key, block_size, mode_cfb, mode_ecb)


class _PureCFB:
    """kcp-go CFB over one of kcpsock's pure-Python block ciphers."""

    __repr__ = cipher_repr

    def __init__(self, impl: WordCFB) -> None:
        self._impl = impl

    def encrypt(self, packet: bytes) -> bytes:
        """Encrypt one packet (kcp-go ``encrypt``)."""
        return self._impl.cfb(packet, False)

    def decrypt(self, packet: bytes) -> bytes:
        """Decrypt one packet (kcp-go ``decrypt``)."""
        return self._impl.cfb(packet, True)


class Salsa20Crypt:
    """kcp-go ``NewSalsa20BlockCrypt``: Salsa20/20, nonce = packet bytes 0..7.

    Uses pycryptodome's C functions directly (kcpsock._fastcrypt) when they
    can be reached and agree with the public API at construction.

    Args:
        key: copied into 32 bytes (truncated or zero-padded, as kcp-go does).
    """

    __repr__ = cipher_repr

    def __init__(self, key: bytes) -> None:
        self._key = (bytes(key) + bytes(32))[:32]
        self._fast: _fastcrypt.RawSalsa20 | None = None
        try:
            fast = _fastcrypt.RawSalsa20(self._key)
            probes = [bytes(range(n % 256)) * 3 for n in (7, 8, 9, 70, 600)]
            if all(fast.encrypt(p) == self._encrypt_public(p) for p in probes if len(p) >= 8):
                self._fast = fast
        except Exception:
            self._fast = None

    def _encrypt_public(self, packet: bytes) -> bytes:
        head = packet[:8]
        return head + Salsa20.new(key=self._key, nonce=head).encrypt(packet[8:])

    def encrypt(self, packet: bytes) -> bytes:
        """XOR bytes 8.. with the keystream for nonce = bytes 0..7."""
        if len(packet) < 8:
            return bytes(packet)  # kcp-go HEAD leaves such packets alone
        packet = bytes(packet)  # no copy for bytes; c_char_p needs bytes
        fast = self._fast
        if fast is None:
            return self._encrypt_public(packet)
        return fast.encrypt(packet)

    decrypt = encrypt


class SimpleXORCrypt:
    """kcp-go ``NewSimpleXORBlockCrypt``: XOR with a fixed 1500-byte pad.

    Args:
        key: the PBKDF2 password (any length).
    """

    __repr__ = cipher_repr

    def __init__(self, key: bytes) -> None:
        self._pad = hashlib.pbkdf2_hmac("sha1", bytes(key), _XOR_SALT, 32, MTU_LIMIT)
        self._fast: _fastcrypt.RawXor | None = None
        try:
            fast = _fastcrypt.RawXor(self._pad)
            probe = bytes(range(256)) * 5  # within the pad (and the C buffer)
            if fast.xor(probe) == _xor_bytes(probe, self._pad[: len(probe)]):
                self._fast = fast
        except Exception:
            self._fast = None

    def encrypt(self, packet: bytes) -> bytes:
        """XOR the first min(len, 1500) bytes with the pad."""
        n = len(packet)
        if n > MTU_LIMIT:
            return self.encrypt(packet[:MTU_LIMIT]) + bytes(packet[MTU_LIMIT:])
        fast = self._fast
        if fast is None or n < 64:  # short: the int arithmetic is cheaper
            return _xor_bytes(packet, self._pad[:n])
        return fast.xor(bytes(packet))  # no copy for bytes; c_char_p needs bytes

    decrypt = encrypt


class NoneCrypt:
    """kcp-go ``NewNoneBlockCrypt``: identity (the 20-byte header stays)."""

    __repr__ = cipher_repr

    def encrypt(self, packet: bytes) -> bytes:
        """Return the packet unchanged."""
        return bytes(packet)

    decrypt = encrypt


class AESGCMCrypt:
    """kcp-go HEAD ``NewAESGCMCrypt``: AES-GCM, opt-in, its own layout.

    ``encrypt`` takes ``nonce(12) + body`` and returns
    ``nonce + ciphertext + tag(16)``; ``decrypt`` reverses it.  There is no
    CRC.  Not understood by kcp-go releases older than late 2025.

    A pycryptodome GCM object costs some 80 us to build (per packet, since
    the nonce changes), so when pycryptodome's C functions can be reached
    GCM is assembled from them (NIST SP 800-38D, 96-bit nonce, no AAD):
    one CTR pass from J0 = nonce || 1 over 16 zero bytes + the body gives
    E(J0) (the tag mask) and the ciphertext, and one GHASH call over
    ciphertext || pad || lengths gives S; tag = S ^ E(J0).  That path is
    checked against pycryptodome's own GCM at construction and used only
    if it agrees.

    Args:
        key: 16, 24 or 32 bytes (AES-128/192/256-GCM).

    Raises:
        ValueError: for any other key length.
    """

    nonce_size = GCM_NONCE_SIZE
    tag_size = GCM_TAG_SIZE

    __repr__ = cipher_repr

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("aes-gcm key must be 16, 24 or 32 bytes")
        self._key = bytes(key)
        self._fast: _fastcrypt.RawGCM | None = None
        try:
            self._fast = self._setup_fast()
        except Exception:
            self._fast = None
        if self._fast is not None:
            probe = [
                bytes(range(12)) + bytes((i * 5) & 255 for i in range(n))
                for n in (0, 1, 15, 16, 17, 100, 1372, 1500)
            ]
            try:
                ok = all(
                    self._encrypt_fast(p) == self._encrypt_public(p)
                    and self._decrypt_fast(self._encrypt_public(p)) == p
                    for p in probe
                )
            except Exception:
                ok = False
            if not ok:
                self._fast = None

    def _setup_fast(self) -> _fastcrypt.RawGCM:
        return _fastcrypt.RawGCM(self._key)

    def _encrypt_fast(self, packet: bytes) -> bytes:
        assert self._fast is not None
        return self._fast.seal(packet, GCM_NONCE_SIZE)

    def _decrypt_fast(self, packet: bytes) -> bytes:
        assert self._fast is not None
        return self._fast.open(packet, GCM_NONCE_SIZE, GCM_TAG_SIZE)

    def _encrypt_public(self, packet: bytes) -> bytes:
        nonce = packet[:GCM_NONCE_SIZE]
        ct, tag = AES.new(
            self._key, AES.MODE_GCM, nonce=nonce, mac_len=GCM_TAG_SIZE
        ).encrypt_and_digest(packet[GCM_NONCE_SIZE:])
        return b"".join((nonce, ct, tag))

    def _decrypt_public(self, packet: bytes) -> bytes:
        nonce = packet[:GCM_NONCE_SIZE]
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=GCM_TAG_SIZE)
        try:
            body = cipher.decrypt_and_verify(
                packet[GCM_NONCE_SIZE:-GCM_TAG_SIZE], packet[-GCM_TAG_SIZE:]
            )
        except ValueError:
            raise PacketError("bad AES-GCM tag", "InCsumErrors") from None
        return nonce + body

    def encrypt(self, packet: bytes) -> bytes:
        """Seal ``nonce + body`` into ``nonce + ciphertext + tag``.

        Raises:
            ValueError: if the packet is shorter than the nonce.
        """
        if len(packet) < GCM_NONCE_SIZE:
            raise ValueError("packet shorter than the AES-GCM nonce")
        packet = bytes(packet)
        fast = self._fast
        if fast is not None:
            return fast.seal(packet, GCM_NONCE_SIZE)
        return self._encrypt_public(packet)

    def decrypt(self, packet: bytes) -> bytes:
        """Open ``nonce + ciphertext + tag`` into ``nonce + body``.

        Raises:
            PacketError: too short (``InErrs``) or bad tag (``InCsumErrors``).
        """
        if len(packet) < GCM_NONCE_SIZE + GCM_TAG_SIZE:
            raise PacketError("packet shorter than AES-GCM nonce + tag", "InErrs")
        packet = bytes(packet)
        fast = self._fast
        if fast is not None:
            return fast.open(packet, GCM_NONCE_SIZE, GCM_TAG_SIZE)
        return self._decrypt_public(packet)


def _aes(key: bytes) -> BlockCrypt:
    return _cfb(AES.new, key, 16, AES.MODE_CFB, AES.MODE_ECB)


def _blowfish(key: bytes) -> BlockCrypt:
    return _cfb(Blowfish.new, key, 8, Blowfish.MODE_CFB, Blowfish.MODE_ECB)


def _cast5(key: bytes) -> BlockCrypt:
    return _cfb(CAST.new, key, 8, CAST.MODE_CFB, CAST.MODE_ECB)


def _3des(key: bytes) -> BlockCrypt:
    # pycryptodome refuses EDE3 keys that degenerate to single DES (K1 = K2 or
    # K2 = K3 up to parity bits); Go accepts them.  E_K3(D_K2(E_K1(x))) with
    # K1 = K2 is E_K3(x), and with K2 = K3 it is E_K1(x): use single DES then.
    k1, k2, k3 = (bytes(b & 0xFE for b in key[i : i + 8]) for i in (0, 8, 16))
    if k1 == k2:
        return _cfb(DES.new, key[16:24], 8, DES.MODE_CFB, DES.MODE_ECB)
    if k2 == k3:
        return _cfb(DES.new, key[0:8], 8, DES.MODE_CFB, DES.MODE_ECB)
    return _cfb(DES3.new, key, 8, DES3.MODE_CFB, DES3.MODE_ECB)


class CipherInfo(NamedTuple):
    """One row of the cipher table.

    Attributes:
        name: kcptun's ``--crypt`` name.
        key_size: bytes of the key the cipher takes (``key[:key_size]``).
        constructor: the kcp-go constructor it is byte-identical to.
        implementation: "pycryptodome", "pure Python" or "hashlib".
    """

    name: str
    key_size: int
    constructor: str
    implementation: str


# The pure-Python ciphers build their tables at import (tens of ms), so they
# are imported on first use rather than with kcpsock.
def _twofish(key: bytes) -> BlockCrypt:
    from ._twofish import Twofish

    return _PureCFB(Twofish(key))


def _tea(key: bytes) -> BlockCrypt:
    from ._tea import TEA

    return _PureCFB(TEA(key))


def _xtea(key: bytes) -> BlockCrypt:
    from ._tea import XTEA

    return _PureCFB(XTEA(key))


def _sm4(key: bytes) -> BlockCrypt:
    from ._sm4 import SM4

    return _PureCFB(SM4(key))


_TABLE: dict[str, tuple[CipherInfo, Callable[[bytes], BlockCrypt]]] = {
    "aes": (CipherInfo("aes", 32, "NewAESBlockCrypt", "pycryptodome"), _aes),
    "aes-128": (CipherInfo("aes-128", 16, "NewAESBlockCrypt", "pycryptodome"), _aes),
    "aes-192": (CipherInfo("aes-192", 24, "NewAESBlockCrypt", "pycryptodome"), _aes),
    "salsa20": (CipherInfo("salsa20", 32, "NewSalsa20BlockCrypt", "pycryptodome"), Salsa20Crypt),
    "blowfish": (CipherInfo("blowfish", 32, "NewBlowfishBlockCrypt", "pycryptodome"), _blowfish),
    "twofish": (CipherInfo("twofish", 32, "NewTwofishBlockCrypt", "pure Python"), _twofish),
    "cast5": (CipherInfo("cast5", 16, "NewCast5BlockCrypt", "pycryptodome"), _cast5),
    "3des": (CipherInfo("3des", 24, "NewTripleDESBlockCrypt", "pycryptodome"), _3des),
    "tea": (CipherInfo("tea", 16, "NewTEABlockCrypt", "pure Python"), _tea),
    "xtea": (CipherInfo("xtea", 16, "NewXTEABlockCrypt", "pure Python"), _xtea),
    "xor": (CipherInfo("xor", 32, "NewSimpleXORBlockCrypt", "hashlib"), SimpleXORCrypt),
    "sm4": (CipherInfo("sm4", 16, "NewSM4BlockCrypt", "pure Python"), _sm4),
    "none": (CipherInfo("none", 0, "NewNoneBlockCrypt", "none"), lambda k: NoneCrypt()),
    "aes-gcm": (CipherInfo("aes-gcm", 16, "NewAESGCMCrypt (HEAD)", "pycryptodome"), AESGCMCrypt),
    "aes-128-gcm": (
        CipherInfo("aes-128-gcm", 16, "NewAESGCMCrypt (HEAD)", "pycryptodome"),
        AESGCMCrypt,
    ),
}

#: Every valid cipher name, kcptun's spelling; the AEAD ones last (opt-in).
CIPHERS: tuple[str, ...] = tuple(_TABLE)


def cipher_info(name: str) -> CipherInfo:
    """Describe a cipher (key size, kcp-go constructor, implementation).

    Args:
        name: one of :data:`CIPHERS`.

    Returns:
        Its :class:`CipherInfo`.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    try:
        return _TABLE[name][0]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown cipher name {name!r}; valid choices: {', '.join(CIPHERS)}"
        ) from None


def new_block_crypt(name: str, key: bytes | bytearray | memoryview) -> BlockCrypt:
    """Create the kcp-go cipher kcptun calls ``name``, keyed as kcptun keys it.

    Each cipher takes the first ``key_size`` bytes of ``key`` (32 for aes,
    salsa20, blowfish, twofish, xor; 24 for aes-192 and 3des; 16 for aes-128,
    cast5, tea, xtea, sm4, aes-128-gcm; nothing for none), so the 32-byte
    :func:`derive_key` output works for all of them.  ``aes-gcm`` uses the
    whole key, which must be 16, 24 or 32 bytes (AES-128/192/256-GCM).

    Args:
        name: one of :data:`CIPHERS`.
        key: the key bytes.

    Returns:
        A thread-safe :class:`BlockCrypt`.

    Raises:
        TypeError: if ``name`` is not a str or ``key`` not bytes-like.
        ValueError: for an unknown name (listing the valid choices) or a key
            too short for the cipher.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    info = cipher_info(name)
    key = bytes(key)  # copied: a caller's bytearray may change later
    if len(key) < info.key_size:
        raise ValueError(
            f"key too short for cipher {name!r}: {len(key)} bytes, needs at least {info.key_size}"
        )
    if name == "aes-gcm":
        if len(key) not in (16, 24, 32):
            raise ValueError(f"key for cipher 'aes-gcm' must be 16, 24 or 32 bytes, not {len(key)}")
        block: BlockCrypt = AESGCMCrypt(key)
    else:
        block = _TABLE[name][1](key[: info.key_size])
    # the repr a REPL shows (cipher_repr); the key is never part of it
    block._kcpsock_label = f"<kcpsock cipher {name!r} (kcp-go {info.constructor})>"  # type: ignore[attr-defined]
    return block
