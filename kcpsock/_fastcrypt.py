"""pycryptodome's own C functions, called directly: the fast paths of kcpsock.crypt.

pycryptodome's Python wrappers cost about 2.5 us per call with its ctypes
backend (argument checks, buffer allocation), more than the C work on a
1400-byte packet.  The classes here call the same C functions through ctypes
handles of their own (pycryptodome's handles are left untouched).

Invariants:
    * Nothing here is used unchecked: :mod:`kcpsock.crypt` compares every
      fast object with pycryptodome's public API at construction and falls
      back to the public API when they disagree or a handle cannot be made.
      Both give the same bytes.
    * The direct calls are made only with the ctypes backend of pycryptodome
      3.9 to 4.x, whose C signatures were checked (:func:`enabled`); a wrong
      signature could crash rather than merely disagree.
    * Setting the environment variable ``KCPSOCK_NO_FASTCRYPT`` to anything
      but ``""`` or ``"0"`` turns every fast path off (read when a cipher is
      created): the public API is then used throughout.
    * Per-packet state (C cipher states, output buffers) lives in pools taken
      with the atomic ``list.pop``/``list.append``: one object may be shared
      by threads without a lock.
    * The libraries are loaded with ``ctypes.PyDLL``: the calls keep the
      GIL.  Each takes a few microseconds, less than handing the GIL to
      another thread and waiting to get it back (a receiver or updater
      thread in the same process would otherwise run in between and the
      sender wait for its next release, up to the 5 ms switch interval).
    * Batches: :meth:`RawCFB.decrypt_many` decrypts a receiver's whole batch
      with one ``ECB_encrypt`` and one ``strxor``; :meth:`RawCFB.encrypt_pair`
      encrypts ``head + body`` from a pooled C buffer (no join, no pad copy).
    * One C call per encrypted packet: a CFB state whose layout was verified
      when it was created (:meth:`RawCFB._next_iv_view`: plain fields first,
      then 16 known bytes behind each pointer, then a trial packet against
      the two-call form) is restarted at kcp-go's IV by writing the IV into
      its ``next_iv`` buffer instead of calling ``CFB_decrypt`` on it.  Any
      other state keeps the two-call restart (same bytes).
    * The handles are called without ``argtypes`` (the per-call conversion
      costs a third of the call): every argument is passed as the exact C
      type, bytes as ``const uint8_t *``, ctypes buffers and ``c_void_p`` as
      pointers, and sizes as ready-made ``c_size_t`` objects.

The C helper (kcpsock._cfbc, hand-written, built beside the mypyc modules):
    :class:`NativeCFB` does kcp-go's CFB in C over the block cipher of a
    pycryptodome ECB object (the ``BlockBase`` structure its state points
    to: pycryptodome's own encrypt function, no AES code of ours), with the
    XOR a word at a time instead of raw_cfb.c's byte loop, E(IV) computed
    once, and a batch's packets encrypted side by side (8 lanes: the next
    block of each packet in one block cipher call).  Its ``seal_many`` writes
    nonce + CRC-32 (carry-less multiplication where the CPU has PCLMULQDQ,
    zlib's otherwise) + FEC header + body of a whole batch into
    the result bytes and encrypts them there (one call per batch), and
    ``open_packets`` decrypts and checks the CRC of a receiver batch.  It is
    used only when :func:`native_cfb_module` finds the extension
    (``kcpsock._accel.native``: not under ``KCPSOCK_PURE``, not stale, and
    the fast paths not switched off) and :mod:`kcpsock.crypt` found it
    byte-identical to the public API at construction; otherwise
    :class:`RawCFB` or the public API serve (same bytes).

Pure module: no I/O, no clock (it loads shared libraries pycryptodome has
already loaded).
"""

from __future__ import annotations

import ctypes
import hmac
import os
import struct
import weakref
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Callable, Optional, Protocol, TypeVar, Union

from . import _accel
from .config import MTU_LIMIT
from .errors import PacketError

__all__ = [
    "ENV_SWITCH",
    "CFunc",
    "Cipher",
    "CipherFactory",
    "NativeCFB",
    "RawCFB",
    "RawGCM",
    "RawSalsa20",
    "RawXor",
    "cfb_handles",
    "cipher_repr",
    "enabled",
    "native_cfb_module",
    "xor_function",
]

#: The environment variable that turns the fast paths off.
ENV_SWITCH = "KCPSOCK_NO_FASTCRYPT"

#: What the C helper's methods accept (any C-contiguous buffer).
BytesLike = Union[bytes, bytearray, memoryview]

#: A C function reached through ctypes (restype already set).
CFunc = Callable[..., int]


def cipher_repr(obj: object) -> str:
    """The repr of a cipher object: the name :func:`kcpsock.new_block_crypt` gave it.

    ``new_block_crypt`` stores ``"<kcpsock cipher 'aes' (kcp-go NewAESBlockCrypt)>"``
    as ``_kcpsock_label`` on the object it returns; a cipher built otherwise shows
    its class.  The key is never shown.
    """
    label = getattr(obj, "_kcpsock_label", None)
    return label if isinstance(label, str) else f"<kcpsock cipher {type(obj).__name__}>"


class Cipher(Protocol):
    """A pycryptodome cipher object (ECB or CFB mode), as used here."""

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt (ECB: whole blocks)."""
        ...  # pragma: no cover

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt."""
        ...  # pragma: no cover


#: ``AES.new`` and friends: ``factory(key, mode, **kwargs)``.
CipherFactory = Callable[..., Cipher]

#: kind -> the C handles, or None when they cannot be had (tests replace entries).
_RAW: dict[str, Optional[tuple[CFunc, ...]]] = {}
_BUF_SIZE = MTU_LIMIT + 32
_SZ = [ctypes.c_size_t(i) for i in range(_BUF_SIZE + 1)]
_U0 = ctypes.c_uint(0)
_U4 = ctypes.c_uint(4)
_ZEROS = bytes(16)
#: RawCFB.decrypt decrypts packets up to this long block after block with one
#: CFB call (the serial chain of 16 blocks costs less than a second C call).
_SERIAL_DECRYPT_MAX = 256
#: RawCFB.decrypt_many's pooled buffer: a receiver batch of 64 full packets.
_MANY_SIZE = 64 * (MTU_LIMIT + 32) + 32
_T = TypeVar("_T")
_CFBEntry = tuple[
    "Cipher",
    ctypes.c_void_p,
    "ctypes.Array[ctypes.c_char]",
    "ctypes.Array[ctypes.c_char]",
    memoryview,
    memoryview,
    Optional[memoryview],
]
#: pycryptodome's CFB state (raw_cfb.c ``CfbModeState``, 3.9 to 4.x): cipher,
#: segment_len, usedKeyStream, keyStream, next_iv (see RawCFB._next_iv_view).
_CFB_WORDS = 5


#: block size -> [c_size_t of n rounded up to whole blocks for n <= _BUF_SIZE - block]
_ROUNDED: dict[int, list[ctypes.c_size_t]] = {}


def _rounded(block: int) -> list[ctypes.c_size_t]:
    """The shared round-up table of ``block`` (built once per block size)."""
    table = _ROUNDED.get(block)
    if table is None:
        table = _ROUNDED[block] = [
            _SZ[-(-n // block) * block] for n in range(_BUF_SIZE - block + 1)
        ]
    return table


def _size(n: int) -> ctypes.c_size_t:
    """A ``c_size_t`` holding ``n`` (shared, read-only, for small sizes)."""
    return _SZ[n] if n <= _BUF_SIZE else ctypes.c_size_t(n)


def enabled() -> bool:
    """True when the fast paths may be tried.

    False when ``KCPSOCK_NO_FASTCRYPT`` is set (not ``""``/``"0"``), or
    pycryptodome is not a ctypes-backend build of 3.9 to 4.x.

    Returns:
        Whether to try the direct C calls.
    """
    if _switched_off():
        return False
    try:
        from Crypto import version_info
        from Crypto.Util._raw_api import backend
    except ImportError:  # pragma: no cover
        return False
    return bool(backend == "ctypes" and (3, 9) <= tuple(version_info[:2]) < (5, 0))


def _load(kind: str) -> Optional[tuple[CFunc, ...]]:
    """The C handles of ``kind`` (cfb, ecb, strxor, salsa20), or None."""
    ci = ctypes.c_int
    if kind == "cfb":
        from Crypto.Cipher import _mode_cfb

        lib = ctypes.PyDLL(_mode_cfb.raw_cfb_lib._name)
        enc, dec = lib.CFB_encrypt, lib.CFB_decrypt
        enc.restype = dec.restype = ci
        return (enc, dec)
    if kind == "ecb":
        from Crypto.Cipher import _mode_ecb

        lib = ctypes.PyDLL(_mode_ecb.raw_ecb_lib._name)
        f = lib.ECB_encrypt
        f.restype = ci
        return (f,)
    if kind == "strxor":
        from Crypto.Util import strxor as _strxor

        lib = ctypes.PyDLL(_strxor._raw_strxor._name)
        f = lib.strxor
        f.restype = None
        return (f,)
    if kind == "salsa20":
        from Crypto.Cipher import Salsa20 as _salsa20

        lib = ctypes.PyDLL(_salsa20._raw_salsa20_lib._name)
        init, enc, destroy = (
            lib.Salsa20_stream_init,
            lib.Salsa20_stream_encrypt,
            lib.Salsa20_stream_destroy,
        )
        init.restype = enc.restype = destroy.restype = ci
        return (init, enc, destroy)
    raise ValueError(f"unknown kind {kind!r}")  # pragma: no cover


def _switched_off() -> bool:
    """True when ``KCPSOCK_NO_FASTCRYPT`` asks for the public API only."""
    return os.environ.get(ENV_SWITCH, "") not in ("", "0")


def _functions(kind: str) -> Optional[tuple[CFunc, ...]]:
    """The cached C handles of ``kind``, or None (disabled or unavailable)."""
    if _switched_off():
        return None
    return _cached(kind)


def _cached(kind: str) -> Optional[tuple[CFunc, ...]]:
    """The C handles of ``kind`` from the cache, loaded on first use (no switch check)."""
    try:
        return _RAW[kind]
    except KeyError:
        pass
    funcs: Optional[tuple[CFunc, ...]] = None
    if enabled():
        try:
            funcs = _load(kind)
        except Exception:  # any failure: the public API is used
            funcs = None
    _RAW[kind] = funcs
    return funcs


def cfb_handles() -> Optional[tuple[CFunc, ...]]:
    """The handles :class:`RawCFB` needs: CFB encrypt, CFB decrypt, ECB, strxor.

    Returns:
        The four handles, or None when any is unavailable.
    """
    if _switched_off():
        return None
    cfb, ecb, strxor = _cached("cfb"), _cached("ecb"), _cached("strxor")
    if cfb is None or ecb is None or strxor is None:
        return None
    return (cfb[0], cfb[1], ecb[0], strxor[0])


def native_cfb_module() -> Optional[ModuleType]:
    """The C helper kcpsock._cfbc, or None when it may not or cannot be used.

    None when the fast paths are switched off (``KCPSOCK_NO_FASTCRYPT``) or
    unavailable (:func:`enabled`: the helper reads pycryptodome's ctypes
    state pointers), or when ``kcpsock._accel.native("_cfbc")`` gives None
    (``KCPSOCK_PURE``, not built, or stale in a checkout).

    Returns:
        The extension module, or None.
    """
    if not enabled():
        return None
    try:
        return _accel.native("_cfbc")
    except Exception:  # a broken build: the other paths serve
        return None


def xor_function() -> Optional[CFunc]:
    """pycryptodome's C ``strxor(a, b, out, n)`` (``out = a ^ b`` over ``n`` bytes), or None.

    For whole-buffer XOR outside the ciphers (kcpsock.gf256's parity
    accumulator).  Arguments must be passed as exact C types: pointers
    (``bytes``, ctypes buffers, ``c_void_p``) and a ``c_size_t`` length.

    Returns:
        The handle, or None when the fast paths are off or unavailable.
    """
    funcs = _functions("strxor")
    return funcs[0] if funcs is not None else None


def _c_state(obj: object, what: str) -> ctypes.c_void_p:
    """The C state pointer of a pycryptodome cipher object (a private field)."""
    state = getattr(obj, "_state").get()  # noqa: B009 - private, not typed
    if not isinstance(state, ctypes.c_void_p) or not state.value:
        raise TypeError(f"unexpected pycryptodome {what} state")
    return state


class RawCFB:
    """kcp-go CFB with direct C calls (see ``_PycryptodomeCFB`` in kcpsock.crypt).

    encrypt (CFB is sequential, so it needs the CFB object): the state is
    restarted at the IV, then one ``CFB_encrypt`` of packet + zero pad.  The
    restart writes the IV into the state's ``next_iv`` buffer when the
    state's layout was verified at creation (:meth:`_next_iv_view`), else it
    is a ``CFB_decrypt`` of the IV, which re-synchronises the state whatever
    it was (one C call and one block more).

    decrypt (CFB decryption is parallel): keystream block i is E(C[i-1]),
    with C[-1] = IV, so one ``ECB_encrypt`` of IV + C[:-1 block] gives the
    whole keystream (AES-NI pipelines it), and one ``strxor`` applies it.

    Pool entries (CFB object, its C state, an output buffer) are used by
    one thread at a time; the ECB state is never written after key setup.

    Args:
        handles: the result of :func:`cfb_handles`.
        factory: the pycryptodome ``new`` function.
        key: the cipher key.
        iv: kcp-go's fixed IV, cut to the block size.
        mode_cfb: the factory's CFB mode constant.
        mode_ecb: the factory's ECB mode constant.

    Raises:
        TypeError: pycryptodome's objects are not what this was written for.
    """

    __repr__ = cipher_repr

    def __init__(
        self,
        handles: tuple[CFunc, ...],
        factory: CipherFactory,
        key: bytes,
        iv: bytes,
        mode_cfb: int,
        mode_ecb: int,
    ) -> None:
        self._enc_f, self._dec_f, self._ecb_f, self._strxor = handles
        self._b = len(iv)
        self._iv = iv
        self._seg = self._b * 8
        self._key = key
        self._factory = factory
        self._mode = mode_cfb
        #: the public ECB object (the brief check in kcpsock.crypt uses it)
        self.ecb = factory(key, mode_ecb)
        self._ecb_state = _c_state(self.ecb, "ECB")
        self._k0 = self.ecb.encrypt(iv)
        self._pool: list[_CFBEntry] = []
        self._buf_pool: list[ctypes.Array[ctypes.c_char]] = []
        self._many_pool: list[tuple[ctypes.Array[ctypes.c_char], memoryview]] = []
        self._pads = tuple(_ZEROS[:r] for r in range(self._b))
        self._size_b = _SZ[self._b]
        self._rounded = _rounded(self._b)

    def _new_entry(self) -> _CFBEntry:
        obj = self._factory(self._key, self._mode, iv=self._iv, segment_size=self._seg)
        out = ctypes.create_string_buffer(_BUF_SIZE)
        inp = ctypes.create_string_buffer(_BUF_SIZE)
        state = _c_state(obj, "CFB")
        try:
            restart = self._next_iv_view(state, out)
        except Exception:  # anything unexpected: the two-call restart
            restart = None
        return (
            obj,
            state,
            out,
            inp,
            memoryview(inp).cast("B"),
            memoryview(out).cast("B"),
            restart,
        )

    def _next_iv_view(
        self, state: ctypes.c_void_p, out: ctypes.Array[ctypes.c_char]
    ) -> Optional[memoryview]:
        """A writable view of the fresh CFB state's ``next_iv``, or None.

        With a full-block segment, pycryptodome's CFB computes the keystream of
        the next block from ``next_iv`` as soon as the previous block's is used
        up (``usedKeyStream == segment_len``, true after every whole-block
        call).  Writing kcp-go's IV there restarts the chain without the
        ``CFB_decrypt`` call of the IV (one C call and one block cipher call
        less per packet).  Only taken when the state looks exactly as raw_cfb.c
        of pycryptodome 3.9 to 4.x leaves it (``{cipher, segment_len,
        usedKeyStream, keyStream, next_iv}``): segment length = block size,
        nothing used yet, the keystream buffer holding E(IV) (16 known bytes)
        and ``next_iv`` zeroed; then a trial packet must give the bytes of the
        two-call restart.  Pointers are followed only after the plain fields
        matched.
        """
        b = self._b
        words = (ctypes.c_size_t * _CFB_WORDS).from_address(state.value or 0)
        _, seg, used, keystream, next_iv = words
        if seg != b or used != 0 or not keystream or not next_iv or (keystream | next_iv) % 8:
            return None
        if ctypes.string_at(keystream, b) != self._k0[:b]:
            return None
        if ctypes.string_at(next_iv, b) != bytes(b):
            return None
        view = memoryview((ctypes.c_char * b).from_address(next_iv)).cast("B")
        trial = bytes(range(3 * b))
        size = _SZ[3 * b]
        if self._dec_f(state, self._iv, out, self._size_b) or self._enc_f(state, trial, out, size):
            return None
        expected = out.raw[: 3 * b]
        view[:] = self._iv
        if self._enc_f(state, trial, out, size) or out.raw[: 3 * b] != expected:
            return None
        if words[2] != b or view.tobytes() != expected[-b:]:
            return None
        return view

    def _short(self, packet: bytes) -> bytes:
        """A packet of at most one block: XOR with E(IV)."""
        n = len(packet)
        k = self._k0[:n]
        return (int.from_bytes(packet, "little") ^ int.from_bytes(k, "little")).to_bytes(
            n, "little"
        )

    def encrypt(self, packet: bytes) -> bytes:
        """Encrypt one packet (kcp-go ``encrypt``)."""
        n = len(packet)
        b = self._b
        if n <= b:
            return self._short(packet)
        packet = bytes(packet)  # no copy for bytes; c_char_p needs bytes
        r = n % b
        if r:
            packet += _ZEROS[: b - r]
        m = len(packet)
        try:
            entry = self._pool.pop()
        except IndexError:
            entry = self._new_entry()
        state, buf, restart = entry[1], entry[2], entry[6]
        if m <= _BUF_SIZE:
            size = _SZ[m]
        else:
            buf = ctypes.create_string_buffer(m)
            size = ctypes.c_size_t(m)
        if restart is not None:
            restart[:] = self._iv
        elif self._dec_f(state, self._iv, buf, _SZ[b]):
            raise ValueError("pycryptodome CFB failed")  # pragma: no cover
        if self._enc_f(state, packet, buf, size):
            raise ValueError("pycryptodome CFB failed")  # pragma: no cover
        out = buf.raw[:n]
        self._pool.append(entry)
        return out

    def decrypt(self, packet: bytes) -> bytes:
        """Decrypt one packet (kcp-go ``decrypt``).

        Up to :data:`_SERIAL_DECRYPT_MAX` bytes (an interactive packet), with a
        pooled CFB state restarted by writing the IV: one ``CFB_decrypt``
        call, block after block.  Longer: one ``ECB_encrypt`` of IV + the
        ciphertext but its last block (the blocks in parallel), one
        ``strxor``.
        """
        n = len(packet)
        b = self._b
        if n <= b:
            return self._short(packet)
        packet = bytes(packet)
        m = -(-n // b) * b  # keystream length: whole blocks covering n
        if n <= _SERIAL_DECRYPT_MAX:
            try:
                entry = self._pool.pop()
            except IndexError:
                entry = self._new_entry()
            restart = entry[6]
            if restart is not None:
                restart[:] = self._iv
                if m != n:
                    packet += self._pads[m - n]
                if self._dec_f(entry[1], packet, entry[2], _SZ[m]):
                    raise ValueError("pycryptodome CFB failed")  # pragma: no cover
                out = entry[5][:n].tobytes()
                self._pool.append(entry)
                return out
            self._pool.append(entry)
        try:
            buf = self._buf_pool.pop()
        except IndexError:
            buf = ctypes.create_string_buffer(_BUF_SIZE)
        if m > _BUF_SIZE:
            buf = ctypes.create_string_buffer(m)
        if self._ecb_f(self._ecb_state, self._iv + packet[: m - b], buf, _size(m)):
            raise ValueError("pycryptodome ECB failed")  # pragma: no cover
        self._strxor(buf, packet, buf, _size(n))
        out = buf.raw[:n]
        if len(buf) == _BUF_SIZE:
            self._buf_pool.append(buf)
        return out

    def encrypt_pair(self, head: bytes, body: bytes) -> bytes:
        """``encrypt(head + body)`` without building the joined packet.

        Both parts are copied straight into a pooled C input buffer (no
        join, no zero pad: bytes past the end only touch output bytes that
        are dropped), the state is restarted at the IV (see the class),
        one ``CFB_encrypt`` encrypts, and one copy makes the result.
        """
        h = len(head)
        n = h + len(body)
        b = self._b
        if n <= b or n > _BUF_SIZE - b:  # whole blocks covering n stay inside the buffers
            return self.encrypt(head + body)
        try:
            entry = self._pool.pop()
        except IndexError:
            entry = self._new_entry()
        _, state, buf, inp, view_in, view_out, restart = entry
        view_in[:h] = head
        view_in[h:n] = body
        if restart is not None:
            restart[:] = self._iv
        elif self._dec_f(state, self._iv, buf, self._size_b):
            raise ValueError("pycryptodome CFB failed")  # pragma: no cover
        if self._enc_f(state, inp, buf, _SZ[-(-n // b) * b]):
            raise ValueError("pycryptodome CFB failed")  # pragma: no cover
        out = view_out[:n].tobytes()
        self._pool.append(entry)
        return out

    def encrypt_pairs(self, heads: Sequence[bytes], bodies: Sequence[bytes]) -> list[bytes]:
        """``[encrypt_pair(h, b) for h, b in zip(heads, bodies)]`` with one pooled buffer.

        The sender's batch path: one pool entry for the whole batch, and per
        packet two copies in, the restart (a 16-byte write, or a C call), one
        ``CFB_encrypt`` call and one copy out.

        Args:
            heads: the packets' first parts (nonce, CRC, FEC header).
            bodies: their second parts (datagram or parity shard).

        Returns:
            The encrypted packets, in order.
        """
        b = self._b
        top = _BUF_SIZE - b  # whole blocks covering n stay inside the buffers
        rounded = self._rounded
        dec_f, enc_f, iv, size_b = self._dec_f, self._enc_f, self._iv, self._size_b
        try:
            entry = self._pool.pop()
        except IndexError:
            entry = self._new_entry()
        _, state, buf, inp, view_in, view_out, restart = entry
        out: list[bytes] = []
        append = out.append
        try:
            for head, body in zip(heads, bodies):
                h = len(head)
                n = h + len(body)
                if n <= b or n > top:
                    append(self.encrypt(head + body))
                    continue
                view_in[:h] = head
                view_in[h:n] = body
                if restart is not None:
                    restart[:] = iv  # the chain restarts by writing the IV: one C call
                elif dec_f(state, iv, buf, size_b):
                    raise ValueError("pycryptodome CFB failed")  # pragma: no cover
                if enc_f(state, inp, buf, rounded[n]):
                    raise ValueError("pycryptodome CFB failed")  # pragma: no cover
                append(view_out[:n].tobytes())
        finally:
            self._pool.append(entry)
        return out

    def decrypt_many(
        self, packets: Sequence[bytes], consume: Callable[[memoryview, list[int]], _T]
    ) -> _T:
        """Decrypt a batch of packets with one ECB call and one XOR for all of them.

        CFB decryption needs no chaining: keystream block i of a packet is
        E(C[i-1]), with C[-1] = IV.  The packets are laid out one after the
        other as ``IV + packet + zero pad`` (whole blocks); one
        ``ECB_encrypt`` of the whole layout, written one block further on,
        puts E(C[i-1]) under C[i] of every packet, and one ``strxor`` of
        layout and keystream leaves every plaintext in place.

        Args:
            packets: the packets.
            consume: called once with a view of the result buffer and the
                offset of each packet's plaintext in it (the plaintext of
                ``packets[j]`` is ``view[offsets[j] : offsets[j] + len(packets[j])]``).
                The buffer is reused afterwards: ``consume`` copies out what it keeps.

        Returns:
            What ``consume`` returns.
        """
        b = self._b
        iv = self._iv
        pads = self._pads
        parts: list[bytes] = []
        add = parts.append
        offsets: list[int] = []
        mark = offsets.append
        pos = b
        for p in packets:
            n = len(p)
            add(iv)
            add(p)
            r = -n % b
            if r:
                add(pads[r])
            mark(pos)
            pos += n + r + b
        layout = b"".join(parts)
        total = len(layout)
        try:
            buf, view = self._many_pool.pop()
        except IndexError:
            buf = ctypes.create_string_buffer(_MANY_SIZE)
            view = memoryview(buf).cast("B")
        pooled = True
        if total + b > len(buf):
            buf = ctypes.create_string_buffer(total + b)
            view = memoryview(buf).cast("B")
            pooled = False
        size = _size(total)
        if self._ecb_f(self._ecb_state, layout, ctypes.byref(buf, b), size):
            raise ValueError("pycryptodome ECB failed")  # pragma: no cover
        self._strxor(buf, layout, buf, size)
        try:
            return consume(view, offsets)
        finally:
            if pooled:
                self._many_pool.append((buf, view))


class NativeCFB:
    """kcp-go CFB through the C helper kcpsock._cfbc (see the module docstring).

    The methods are the C object's own (bound at construction: no Python
    frame per call).  Thread-safe: the C code keeps no per-packet state, and
    the block cipher's key schedule is only read.

    Args:
        module: the extension (:func:`native_cfb_module`).
        factory: the pycryptodome ``new`` function.
        key: the cipher key.
        iv: kcp-go's fixed IV, cut to the block size (8 or 16 bytes).
        mode_ecb: the factory's ECB mode constant.

    Raises:
        TypeError, ValueError: the C helper refused the ECB object (it checks
            the block size and that its state encrypts as ``ecb.encrypt``).

    Attributes:
        ecb: the public ECB object whose block cipher the C code calls (kept
            alive by the C object as long as this one lives).
        encrypt: ``(packet) -> bytes``, kcp-go ``encrypt``.
        decrypt: ``(packet) -> bytes``, kcp-go ``decrypt``.
        encrypt_pair: ``(head, body) -> encrypt(head + body)``.
        seal_many: ``(nonces, heads, bodies) -> packets``: packet i is
            ``encrypt(nonce_i + crc32(head_i + body_i) + head_i + body_i)``
            (CRC u32 little-endian, ``nonce_i = nonces[16 i : 16 i + 16]``).
        seal_tagged: ``seal_many`` when it also takes FEC header tags as
            heads (an int: a data packet's seqid, or ``PARITY_TAG`` + a
            parity packet's seqid; see :meth:`kcpsock.fec.FECEncoder.frame_many_tagged`),
            else None (a helper built from older sources).
        open_packet: ``(packet) -> bytes | None``: decrypt, check the CRC,
            the bytes after the 20-byte header (None: bad CRC).
        open_packets: ``(packets, bad=None) -> list``: ``open_packet`` for
            each packet of a list, ``bad`` in place of None (a bad CRC).
    """

    __repr__ = cipher_repr

    encrypt: Callable[[BytesLike], bytes]
    decrypt: Callable[[BytesLike], bytes]
    encrypt_pair: Callable[[BytesLike, BytesLike], bytes]
    seal_many: Callable[[BytesLike, Sequence[BytesLike], Sequence[BytesLike]], list[bytes]]
    seal_tagged: Optional[
        Callable[[BytesLike, Sequence[Union[BytesLike, int]], Sequence[BytesLike]], list[bytes]]
    ]
    open_packet: Callable[[BytesLike], Optional[bytes]]
    open_packets: Callable[..., list[Any]]

    def __init__(
        self, module: ModuleType, factory: CipherFactory, key: bytes, iv: bytes, mode_ecb: int
    ) -> None:
        self.ecb = factory(key, mode_ecb)
        try:
            # the key lets the helper run AES itself (AES-NI; it checks that
            # its own cipher encrypts as self.ecb does, else calls self.ecb's)
            c = module.CFB(self.ecb, iv, bytes(key))
        except TypeError:  # a helper built from older sources (no key argument)
            c = module.CFB(self.ecb, iv)
        self._c = c
        self.encrypt = c.encrypt
        self.decrypt = c.decrypt
        self.encrypt_pair = c.encrypt_pair
        self.seal_many = c.seal
        self.seal_tagged = c.seal if getattr(module, "PARITY_TAG", None) == 1 << 32 else None
        self.open_packet = c.open
        self.open_packets = c.open_many


class RawSalsa20:
    """Salsa20/20 keystream XOR with direct C calls (kcp-go ``salsa20``).

    Args:
        key: the 32-byte key.

    Raises:
        RuntimeError: the C functions are unavailable or disabled.
    """

    def __init__(self, key: bytes) -> None:
        funcs = _functions("salsa20")
        if funcs is None:
            raise RuntimeError("pycryptodome's Salsa20 C functions are unavailable")
        self._init, self._enc, self._destroy = funcs
        self._key = key
        self._pool: list[tuple[ctypes.c_void_p, object, ctypes.Array[ctypes.c_char]]] = []

    def encrypt(self, packet: bytes) -> bytes:
        """XOR bytes 8.. with the keystream for nonce = bytes 0..7 (len >= 8)."""
        n = len(packet)
        head = packet[:8]
        try:
            entry = self._pool.pop()
        except IndexError:
            state = ctypes.c_void_p()
            entry = (state, ctypes.byref(state), ctypes.create_string_buffer(_BUF_SIZE))
        state, pstate, buf = entry
        if n > _BUF_SIZE:
            buf = ctypes.create_string_buffer(n)
        if self._init(self._key, _SZ[32], head, _SZ[8], pstate):
            raise ValueError("pycryptodome Salsa20 failed")  # pragma: no cover
        try:
            rc = self._enc(state, packet[8:], buf, _size(n - 8))
        finally:
            self._destroy(state)
        if rc:
            raise ValueError("pycryptodome Salsa20 failed")  # pragma: no cover
        out = head + buf.raw[: n - 8]
        self._pool.append(entry)
        return out


class RawXor:
    """XOR with a fixed pad through pycryptodome's C ``strxor``.

    Args:
        pad: the pad (at least as long as any packet given to :meth:`xor`).

    Raises:
        RuntimeError: the C function is unavailable or disabled.
    """

    def __init__(self, pad: bytes) -> None:
        funcs = _functions("strxor")
        if funcs is None:
            raise RuntimeError("pycryptodome's strxor C function is unavailable")
        (self._strxor,) = funcs
        self._pad = pad
        self._pool: list[ctypes.Array[ctypes.c_char]] = []

    def xor(self, packet: bytes) -> bytes:
        """``packet`` XOR the first ``len(packet)`` bytes of the pad."""
        n = len(packet)
        if n > len(self._pad):
            raise ValueError(f"packet of {n} bytes is longer than the {len(self._pad)}-byte pad")
        try:
            buf = self._pool.pop()
        except IndexError:
            buf = ctypes.create_string_buffer(_BUF_SIZE)
        if n > _BUF_SIZE:  # never written past its end
            buf = ctypes.create_string_buffer(n)
        self._strxor(packet, self._pad, buf, _size(n))
        out = buf.raw[:n]
        if len(buf) == _BUF_SIZE:
            self._pool.append(buf)
        return out


class RawGCM:
    """AES-GCM (96-bit nonce, 16-byte tag, no AAD) from pycryptodome's C parts.

    A pycryptodome GCM object costs some 80 us to build (per packet, since
    the nonce changes).  NIST SP 800-38D: one CTR pass from J0 = nonce || 1
    over 16 zero bytes + the body gives E(J0) (the tag mask) and the
    ciphertext, and one GHASH call over ciphertext || pad || lengths gives
    S; tag = S ^ E(J0).

    Args:
        key: 16, 24 or 32 bytes.

    Raises:
        RuntimeError: the C functions are unavailable or disabled.
    """

    def __init__(self, key: bytes) -> None:
        if not enabled():
            raise RuntimeError("the pycryptodome fast paths are disabled or unavailable")
        from Crypto.Cipher import AES, _mode_ctr, _mode_gcm

        ghash_c = _mode_gcm._ghash_clmul or _mode_gcm._ghash_portable
        ctr = _mode_ctr.raw_ctr_lib
        if AES._raw_aes_hw:
            aes_start, aes_stop = AES._raw_aes_hw
        else:
            aes_start = AES._raw_aes_lib.AES_start_operation
            aes_stop = AES._raw_aes_lib.AES_stop_operation
        h = AES.new(key, AES.MODE_ECB).encrypt(bytes(16))
        exp_key = ctypes.c_void_p()
        if ghash_c.ghash_expand(h, ctypes.byref(exp_key)) or not exp_key.value:
            raise RuntimeError("pycryptodome GHASH setup failed")
        weakref.finalize(self, ghash_c.ghash_destroy, exp_key)
        self._key = key
        self._exp_key = exp_key
        self._ghash: CFunc = ghash_c.ghash
        self._aes_start: CFunc = aes_start
        self._aes_stop: CFunc = aes_stop
        self._start: CFunc = ctr.CTR_start_operation
        self._encrypt: CFunc = ctr.CTR_encrypt
        self._stop: CFunc = ctr.CTR_stop_operation
        self._bufs: list[tuple[ctypes.Array[ctypes.c_char], ctypes.Array[ctypes.c_char]]] = []

    def _ctr_ghash(self, nonce: bytes, data: bytes, ct_of: int) -> tuple[bytes, bytes]:
        """CTR from J0 over 16 zero bytes + ``data``; GHASH over the ciphertext.

        ``ct_of`` = 0: ``data`` is the plaintext (the ciphertext is the CTR
        output); 1: ``data`` is the ciphertext.  Returns (CTR output after the
        mask block, tag).

        Ownership, as in pycryptodome's own CTR mode: ``CTR_start_operation``
        takes the AES key schedule over and ``CTR_stop_operation`` frees both,
        so each packet builds its own key schedule (one C call).
        """
        n = len(data)
        try:
            entry = self._bufs.pop()
        except IndexError:
            entry = (ctypes.create_string_buffer(_BUF_SIZE), ctypes.create_string_buffer(16))
        buf, y = entry
        if n + 16 > _BUF_SIZE:
            buf = ctypes.create_string_buffer(n + 16)
        key = self._key
        cipher = ctypes.c_void_p()
        if self._aes_start(key, _SZ[len(key)], ctypes.byref(cipher)):
            raise ValueError("pycryptodome AES failed")  # pragma: no cover
        state = ctypes.c_void_p()
        if self._start(
            cipher, nonce + b"\x00\x00\x00\x01", _SZ[16], _SZ[12], _U4, _U0, ctypes.byref(state)
        ):
            self._aes_stop(cipher)  # pragma: no cover - not taken over on failure
            raise ValueError("pycryptodome CTR failed")  # pragma: no cover
        try:
            rc = self._encrypt(state, _ZEROS + data, buf, _size(n + 16))
        finally:
            self._stop(state)  # frees the key schedule too
        if rc:
            raise ValueError("pycryptodome CTR failed")  # pragma: no cover
        raw = buf.raw
        mask, out = raw[:16], raw[16 : 16 + n]
        ct = data if ct_of else out
        blocks = b"".join((ct, _ZEROS[: -n % 16], struct.pack(">QQ", 0, 8 * n)))
        if self._ghash(y, blocks, _size(len(blocks)), _ZEROS, self._exp_key):
            raise ValueError("pycryptodome GHASH failed")  # pragma: no cover
        tag = (int.from_bytes(y.raw, "big") ^ int.from_bytes(mask, "big")).to_bytes(16, "big")
        self._bufs.append(entry)
        return out, tag

    def seal(self, packet: bytes, nonce_size: int) -> bytes:
        """``nonce + body`` -> ``nonce + ciphertext + tag``."""
        nonce = packet[:nonce_size]
        ct, tag = self._ctr_ghash(nonce, packet[nonce_size:], 0)
        return b"".join((nonce, ct, tag))

    def open(self, packet: bytes, nonce_size: int, tag_size: int) -> bytes:
        """``nonce + ciphertext + tag`` -> ``nonce + body``.

        Raises:
            PacketError: (``InCsumErrors``) the tag does not match.
        """
        nonce = packet[:nonce_size]
        body, tag = self._ctr_ghash(nonce, packet[nonce_size:-tag_size], 1)
        if not hmac.compare_digest(tag, packet[-tag_size:]):
            raise PacketError("bad AES-GCM tag", "InCsumErrors")
        return nonce + body
