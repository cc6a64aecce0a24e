"""The whole datagram pipeline between KCP and the UDP socket, in one place.

kcp-go writes this pipeline twice (``UDPSession.packetInput``/``kcpInput``
and ``Listener.packetInput`` in sess.go, plus ``output`` for sending); here
it is one pure object, :class:`PacketCodec`.

Wire layout of one UDP payload (integers little-endian)::

    block cipher / salsa20 / xor / none (kcp-go cryptHeaderSize = 20):

    0              16       20       24     26     28
    +--------------+--------+--------+------+------+----------------------+
    | nonce (16)   | crc32  | seqid  | flag | size | KCP datagram         |
    +--------------+--------+--------+------+------+----------------------+
    |<----------------- encrypted as a whole (CFB, fixed IV) ------------>|
                            |<-- crc32 covers bytes 20..end (plaintext) ->|
                            |<-- FEC header, only with FEC: 6 + 2 ------->|
                                                    (size = 2 + KCP length)

    parity packet: same crypto header, then seqid | 0xF2 | parity shard.

    aes-gcm (kcp-go HEAD AEAD, opt-in):

    +-----------+----------------------------------------+----------+
    | nonce(12) | GCM ciphertext of (FEC header +) KCP   | tag (16) |
    +-----------+----------------------------------------+----------+

    no cipher: the crypto header is absent; the payload starts at the FEC
    header (FEC on) or is the KCP datagram itself.

Sending: KCP datagram -> FEC framing (kcpsock.fec; parity packets follow
when a group completes) -> per packet: fresh random nonce + CRC-32 ->
encryption.  Receiving: decrypt -> CRC (or tag) check -> strip the crypto
header (:meth:`PacketCodec.open`, stateless) -> classify by the u16 at
offset 4 and FEC-decode (:meth:`PacketCodec.decode_payload`, stateful).

Batches (the session layer's paths, same bytes as one by one):
:meth:`PacketCodec.encode_many` frames a flush's datagrams in one call
(:meth:`~kcpsock.fec.FECEncoder.frame_many`, parity at C speed), takes the
batch's nonces in one slice, and has the cipher write crypto header, FEC
header and datagram straight into its C buffer for the whole batch
(``encrypt_pairs``: one copy of the datagram per packet, CRC-32 over the
parts);
:meth:`PacketCodec.open_many` decrypts a receiver batch with two C calls
(CFB decryption has no chaining) and checks each CRC in place.
With the C helper kcpsock._cfbc (a cipher with ``seal_many``,
:class:`kcpsock._fastcrypt.NativeCFB`) every encode frames its datagrams
and makes one call for nonce, CRC-32 and encryption of all their packets,
and ``open``/``open_many`` one call that decrypts and checks the CRC.

Invariants:
    * Pure: no sockets, threads or clock; the nonces come from the
      ``random_bytes`` callable given to the constructor.
    * Every malformed input raises :class:`~kcpsock.errors.PacketError` whose
      ``counter`` is the kcp-go SNMP counter the drop belongs under, and the
      codec is left exactly as before the call:
      shorter than the crypto header or longer than 1500 bytes (kcp-go
      ``mtuLimit``) -> ``InErrs``; bad CRC or AEAD tag -> ``InCsumErrors``;
      payload shorter than a KCP header (24) or a bad FEC packet ->
      ``InErrs``.
    * Classification follows kcp-go ``kcpInput``: a payload whose bytes 4..5
      are f1 00 or f2 00 is an FEC packet whether or not FEC was configured
      (a KCP header has cmd 81..84 there, so the two never collide); an
      unconfigured codec then creates a (1, 1) decoder on first use, which
      the decoder's autotune adapts to the peer.  Anything else goes to KCP
      whole, even with FEC configured.
    * :meth:`PacketCodec.open` is stateless and thread-safe (a listener can
      open packets for every session); ``encode`` and ``decode_payload`` are
      stateful and must be serialised by the caller (the session lock).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Callable, Final, NoReturn, Optional, Protocol, Union

from .config import MTU_LIMIT, check_block, check_int
from .crypt import CRYPT_HEADER_SIZE, NONCE_SIZE, BlockCrypt
from .errors import PacketError
from .fec import FEC_HEADER_SIZE_PLUS2, TYPE_DATA, TYPE_PARITY, FECDecoder, FECEncoder
from .segment import OVERHEAD

__all__ = ["MTU_LIMIT", "Codec", "PacketCodec"]

#: Smallest KCP MTU kcp-go accepts (``SetMtu``: mtu < 50 is refused).
_MIN_KCP_MTU: Final = 50

#: What the decoding methods accept.
BytesLike = Union[bytes, bytearray, memoryview]

_crc32: Final = zlib.crc32
_u16_at: Final = struct.Struct("<H").unpack_from
_u32_at: Final = struct.Struct("<I").unpack_from
_pack_u32: Final = struct.Struct("<I").pack
#: open_many's placeholder for a packet whose CRC did not match (replaced when it does).
_BAD_CRC: Final = PacketError("bad CRC32 (wrong key or cipher, or corrupted)", "InCsumErrors")


def _prefix(nonce: bytes, crc: int, head: bytes) -> bytes:
    """nonce + CRC-32 (u32 little-endian) + FEC header: what precedes the body."""
    return nonce + _pack_u32(crc) + head


#: open_many decrypts at most this many packets per pair of C calls.
_OPEN_CHUNK: Final = 64
#: encode_many's batch path from this many datagrams on (fewer: one by one,
#: which costs less for the lone datagram of an interactive exchange).
_BATCH_MIN: Final = 4
#: Nonces are sliced from os.urandom reads of this size (one system call per ~250).
_NONCE_BATCH: Final = 4096


def _as_bytes(name: str, value: object) -> bytes:
    """bytes(value) for bytes-like values; TypeError naming ``name`` otherwise."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


class Codec(Protocol):
    """What the session layer uses of a codec (:class:`PacketCodec` implements it).

    Attributes:
        overhead: bytes the codec adds to every KCP datagram.
    """

    overhead: int

    def kcp_mtu(self, mtu: object = 1400) -> int:
        """The KCP MTU that keeps UDP payloads within ``mtu`` bytes."""
        ...  # pragma: no cover

    def encode(self, datagram: BytesLike, now_ms: Optional[int] = None) -> list[bytes]:
        """One KCP datagram to wire packets (data, then any parity)."""
        ...  # pragma: no cover

    def open(self, packet: BytesLike) -> bytes:
        """Decrypt, check and strip the crypto header (stateless, thread-safe)."""
        ...  # pragma: no cover

    def encode_many(
        self, datagrams: Iterable[BytesLike], now_ms: Optional[int] = None
    ) -> list[bytes]:
        """:meth:`encode` for several datagrams: all their wire packets, in order."""
        ...  # pragma: no cover

    def peek_conv(self, payload: BytesLike) -> Optional[int]:
        """The conv of an opened payload; None for parity."""
        ...  # pragma: no cover

    def decode_payload(self, payload: BytesLike) -> tuple[Optional[bytes], list[bytes]]:
        """The FEC stage: (regular datagram or None, recovered datagrams)."""
        ...  # pragma: no cover

    def fec_counters(self) -> dict[str, int]:
        """The FEC decoder's counters under kcp-go's SNMP names."""
        ...  # pragma: no cover

    @property
    def fec_parity_shards(self) -> int:
        """Parity packets received (kcp-go ``FECParityShards``)."""
        ...  # pragma: no cover

    @property
    def fec_full_shard_sets(self) -> int:
        """Groups complete without recovery (kcp-go ``FECFullShardSet``)."""
        ...  # pragma: no cover

    @property
    def fec_recovered(self) -> int:
        """Datagrams recovered from parity (kcp-go ``FECRecovered``)."""
        ...  # pragma: no cover

    @property
    def fec_errors(self) -> int:
        """Recovered shards failing the size check (kcp-go ``FECErrs``)."""
        ...  # pragma: no cover


class PacketCodec:
    """KCP datagrams <-> UDP payloads: FEC, nonce + CRC, encryption.

    Args:
        block: a :class:`~kcpsock.crypt.BlockCrypt` (see
            :func:`kcpsock.new_block_crypt`), or None for no crypto header.
            A block with a positive ``tag_size`` attribute (``aes-gcm``) uses
            kcp-go HEAD's AEAD layout.
        data_shards: FEC data shards (0 together with ``parity_shards`` 0:
            FEC off).
        parity_shards: FEC parity shards.
        random_bytes: ``n -> n random bytes``, the nonce source (default
            :func:`os.urandom`).

    Raises:
        TypeError: ``block`` lacks encrypt/decrypt, ``random_bytes`` is not
            callable, or a shard count is not an int.
        ValueError: invalid shard counts (negative, a zero/non-zero mix, or
            a sum above 255).

    Attributes:
        block: the cipher (or None).
        data_shards, parity_shards: the configured FEC shard counts.
        crypto_header: bytes in front for crypto (20, 12 for AEAD, or 0).
        tag_size: bytes behind for the AEAD tag (16) or 0.
        nonce_size: bytes of the per-packet random nonce at the front of
            every wire packet (16 classic, 12 AEAD, 0 without a cipher); for
            a fixed key the wire prefix of this length identifies the nonce
            (:mod:`kcpsock.replay`).
        overhead: crypto header + FEC header (8 when on) + tag.
        encoder: the :class:`~kcpsock.fec.FECEncoder`.
        decoder: the :class:`~kcpsock.fec.FECDecoder` (None until an FEC
            packet arrives if FEC is not configured).
    """

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # live protocol state: copy.copy/deepcopy/pickle raise, in both forms
        # (compiled, mypyc's classes could not be copied anyway)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: create a new one")

    def __init__(
        self,
        block: Optional[BlockCrypt] = None,
        data_shards: object = 0,
        parity_shards: object = 0,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        block = check_block(block)
        if not callable(random_bytes):
            raise TypeError("random_bytes must be callable")
        # FECEncoder/FECDecoder validate the shard counts (TypeError/ValueError).
        self.encoder = FECEncoder(data_shards, parity_shards)
        self.decoder: Optional[FECDecoder] = (
            FECDecoder(data_shards, parity_shards) if self.encoder.data_shards else None
        )
        self.block = block
        # object-typed above so that, compiled, the error still names the argument
        self.data_shards: int = self.encoder.data_shards
        self.parity_shards: int = self.encoder.parity_shards
        self._random_bytes = random_bytes
        self._fec = self.data_shards > 0
        tag = int(getattr(block, "tag_size", 0) or 0) if block is not None else 0
        self._aead = tag > 0
        self.tag_size = tag
        if block is None:
            self.crypto_header = 0
        elif self._aead:
            self.crypto_header = int(getattr(block, "nonce_size", 12))
        else:
            self.crypto_header = CRYPT_HEADER_SIZE
        self.nonce_size = 0 if block is None else (self.crypto_header if self._aead else NONCE_SIZE)
        self.overhead = (
            self.crypto_header + (FEC_HEADER_SIZE_PLUS2 if self._fec else 0) + self.tag_size
        )
        self._min_wire = self.crypto_header + self.tag_size
        self._nonce_buf = b""
        self._nonce_off = 0
        # the one-buffer sender (classic layout, a cipher with encrypt_pair)
        self._pair: Optional[Callable[[bytes, bytes], bytes]] = (
            getattr(block, "encrypt_pair", None) if block is not None and not self._aead else None
        )
        # the batch sender (classic layout, a cipher with encrypt_pairs)
        self._pairs: Optional[Callable[[list[bytes], list[bytes]], list[bytes]]] = (
            getattr(block, "encrypt_pairs", None) if self._pair is not None else None
        )
        # the batch opener (classic layout, a cipher with decrypt_many)
        self._decrypt_many = (
            getattr(block, "decrypt_many", None) if block is not None and not self._aead else None
        )
        # the C helper's paths (classic layout, kcpsock._fastcrypt.NativeCFB): a
        # whole batch sealed (nonce + CRC-32 + encryption) or opened in one call
        classic = block is not None and not self._aead
        self._seal: Optional[
            Callable[[bytes, Sequence[Union[bytes, int]], list[bytes]], list[bytes]]
        ] = getattr(block, "seal_many", None) if classic else None
        # with FEC, the sealer writes the FEC headers too: the encoder hands
        # it their tags (FECEncoder.frame_many_tagged), no header is packed
        self._tagged = (
            self._seal is not None
            and getattr(block, "seal_tagged", None) is not None
            and self.encoder.taggable
        )
        self._open_packet: Optional[Callable[[bytes], Optional[bytes]]] = (
            getattr(block, "open_packet", None) if classic else None
        )
        # (packets, bad) -> list: each payload, ``bad`` for a bad CRC
        self._open_packets: Optional[
            Callable[[Sequence[BytesLike], PacketError], list[Union[bytes, PacketError]]]
        ] = getattr(block, "open_packets", None) if classic else None

    def __repr__(self) -> str:
        name = type(self.block).__name__ if self.block is not None else None
        return (
            f"PacketCodec(block={name}, data_shards={self.data_shards}, "
            f"parity_shards={self.parity_shards}, overhead={self.overhead})"
        )

    # --- MTU bookkeeping -------------------------------------------------------

    def kcp_mtu(self, mtu: object = 1400) -> int:
        """The KCP MTU that keeps UDP payloads within ``mtu`` bytes.

        kcp-go sets KCP's MTU to ``1400 - headerSize`` (minus the AEAD tag)
        at session creation, and ``SetMtu(mtu)`` to ``mtu - headerSize``.

        Args:
            mtu: the largest UDP payload wanted, at most 1500 (kcp-go
                ``mtuLimit``).

        Returns:
            ``mtu - overhead``.

        Raises:
            TypeError: if ``mtu`` is not an int.
            ValueError: if ``mtu`` exceeds 1500 or leaves a KCP MTU below 50.
        """
        mtu = check_int("mtu", mtu, None, MTU_LIMIT)
        kcp_mtu = mtu - self.overhead
        if kcp_mtu < _MIN_KCP_MTU:
            raise ValueError(
                f"mtu {mtu} too small: the KCP MTU would be {kcp_mtu} "
                f"(< {_MIN_KCP_MTU}) after {self.overhead} bytes of overhead"
            )
        return kcp_mtu

    # --- sending ---------------------------------------------------------------

    def encode(self, datagram: BytesLike, now_ms: Optional[int] = None) -> list[bytes]:
        """Turn one KCP datagram into wire packets (kcp-go ``output``).

        Args:
            datagram: one datagram from KCP.
            now_ms: the current time in ms, optional; passed to the FEC
                encoder (kcp-go HEAD skips the parity of a group spread over
                500 ms or more).

        Returns:
            The data packet, then the group's parity packets if this
            datagram completed an FEC group.

        Raises:
            TypeError: if ``datagram`` is not bytes-like.
            ValueError: if ``random_bytes`` returns the wrong length or the
                datagram is too long for FEC framing.
        """
        if self._pair is not None or self._seal is not None:
            return self.encode_many((datagram,), now_ms)  # the one-buffer path
        if self._fec:
            packets = self.encoder.encode(datagram, now_ms)
        else:
            packets = [datagram if isinstance(datagram, bytes) else _as_bytes("datagram", datagram)]
        block = self.block
        if block is None:
            return packets
        rand = self._random_bytes
        if rand is os.urandom:
            rand = self._urandom_batched
        if self._aead:
            size = self.crypto_header
            out = []
            for p in packets:
                nonce = rand(size)
                if len(nonce) != size:
                    raise ValueError(f"random_bytes({size}) returned {len(nonce)} bytes")
                out.append(block.encrypt(nonce + p))
            return out
        crc32 = _crc32
        pack_crc = _pack_u32
        join = b"".join
        encrypt = block.encrypt
        out = []
        if rand == self._urandom_batched and self._nonce_off + NONCE_SIZE * len(packets) <= len(
            self._nonce_buf
        ):
            # the common case, inlined: nonces sliced from the urandom batch
            buf, off = self._nonce_buf, self._nonce_off
            for p in packets:
                end = off + NONCE_SIZE
                # kcp-go output: nonce, then CRC-32 (IEEE) of the body, little-endian
                out.append(encrypt(join((buf[off:end], pack_crc(crc32(p)), p))))
                off = end
            self._nonce_off = off
            return out
        for p in packets:
            nonce = rand(NONCE_SIZE)
            if len(nonce) != NONCE_SIZE:
                raise ValueError(f"random_bytes({NONCE_SIZE}) returned {len(nonce)} bytes")
            out.append(encrypt(join((nonce, pack_crc(crc32(p)), p))))
        return out

    def encode_many(
        self, datagrams: Iterable[BytesLike], now_ms: Optional[int] = None
    ) -> list[bytes]:
        """:meth:`encode` for several datagrams: every wire packet, in order.

        The packets are the same as from one :meth:`encode` call per
        datagram.  With the C helper (``kcpsock._cfbc``, classic CFB
        ciphers) the batch is framed, then sealed by one call: nonce, CRC-32,
        headers and body written and encrypted in C.  Without it, with a
        classic cipher that supports it
        (``encrypt_pair``, kcpsock's direct-C CFB) the crypto header, FEC
        header and datagram go straight into the cipher's buffer: one copy
        of the datagram per packet, CRC-32 over its parts; from four
        datagrams on (``encrypt_pairs``) the whole batch is framed first and
        encrypted by one call.

        Args:
            datagrams: KCP datagrams.
            now_ms: as for :meth:`encode`.

        Returns:
            The wire packets: each datagram's data packet, followed by the
            group's parity packets after the datagram completing a group.

        Raises:
            TypeError, ValueError: as :meth:`encode`.
        """
        seal = self._seal
        if seal is not None:
            # The C helper: frame the batch, then one call writes nonce, CRC-32,
            # FEC header and body of every packet and encrypts them.
            if self._tagged:
                tags, bodies = self.encoder.frame_many_tagged(datagrams, now_ms)
                return seal(self._nonces(len(bodies)), tags, bodies)
            heads, bodies = self._frame_batch(datagrams, now_ms)
            return seal(self._nonces(len(bodies)), heads, bodies)
        pair = self._pair
        if pair is None:
            out: list[bytes] = []
            for dg in datagrams:
                out += self.encode(dg, now_ms)
            return out
        pairs = self._pairs
        if not isinstance(datagrams, (list, tuple)):
            datagrams = list(datagrams)
        if pairs is not None and len(datagrams) >= _BATCH_MIN:
            # The batch path: frame the whole batch, then nonce + CRC-32 of
            # every packet, then one cipher call for all of them.
            heads, bodies = self._frame_batch(datagrams, now_ms)
            nonces = self._nonces(len(bodies))
            crc32 = _crc32
            pack_crc = _pack_u32
            # kcp-go output: nonce, then CRC-32 (IEEE) of the body, little-endian
            prefixes = [
                nonces[i : i + NONCE_SIZE] + pack_crc(crc32(body, crc32(head))) + head
                for i, head, body in zip(range(0, len(nonces), NONCE_SIZE), heads, bodies)
            ]
            return pairs(prefixes, bodies)
        crc32 = _crc32
        frame = self.encoder.frame if self._fec else None
        if self._random_bytes is not os.urandom:
            nonce = self._nonce
            out = []
            for dg in datagrams:
                if not isinstance(dg, bytes):
                    dg = _as_bytes("datagram", dg)
                if frame is None:
                    append_pair = [(b"", dg)]
                else:
                    header, parity = frame(dg, now_ms)
                    append_pair = [(header, dg), *parity]
                for head, body in append_pair:
                    # kcp-go output: nonce, then CRC-32 (IEEE) of the body, little-endian
                    out.append(pair(_prefix(nonce(), crc32(body, crc32(head)), head), body))
            return out
        # The common case, inlined: nonces sliced from one os.urandom read
        # (refilled when fewer than four are left: a data packet and its
        # group's parity take at most 1 + p of them, refilled in between).
        out = []
        append = out.append
        pack_crc = _pack_u32
        buf, off = self._nonce_buf, self._nonce_off
        for dg in datagrams:
            if not isinstance(dg, bytes):
                dg = _as_bytes("datagram", dg)
            end = off + NONCE_SIZE
            if end > len(buf):
                buf, off, end = os.urandom(_NONCE_BATCH), 0, NONCE_SIZE
            if frame is None:
                append(pair(buf[off:end] + pack_crc(crc32(dg)), dg))
                off = end
                continue
            header, parity = frame(dg, now_ms)
            append(pair(buf[off:end] + pack_crc(crc32(dg, crc32(header))) + header, dg))
            off = end
            for head, shard in parity:
                end = off + NONCE_SIZE
                if end > len(buf):
                    buf, off, end = os.urandom(_NONCE_BATCH), 0, NONCE_SIZE
                append(pair(buf[off:end] + pack_crc(crc32(shard, crc32(head))) + head, shard))
                off = end
        self._nonce_buf, self._nonce_off = buf, off
        return out

    def _frame_batch(
        self, datagrams: Iterable[BytesLike], now_ms: Optional[int]
    ) -> tuple[list[bytes], list[bytes]]:
        """A batch's wire packets before the crypto header: (FEC headers, bodies).

        With FEC, each datagram's data packet and its groups' parity packets
        (:meth:`FECEncoder.frame_many`); without, each datagram as bytes with
        an empty header.
        """
        if self._fec:
            return self.encoder.frame_many(datagrams, now_ms)
        bodies = [dg if isinstance(dg, bytes) else _as_bytes("datagram", dg) for dg in datagrams]
        return [b""] * len(bodies), bodies

    def _nonces(self, count: int) -> bytes:
        """``count`` nonces, one after the other (urandom batch, or ``random_bytes`` per nonce)."""
        if self._random_bytes is os.urandom:
            size = NONCE_SIZE * count
            off = self._nonce_off
            end = off + size
            if end > len(self._nonce_buf):
                self._nonce_buf = os.urandom(max(_NONCE_BATCH, size))
                off, end = 0, size
            self._nonce_off = end
            return self._nonce_buf[off:end]
        return b"".join([self._nonce() for _ in range(count)])

    def _nonce(self) -> bytes:
        """The next nonce (from the urandom batch, or ``random_bytes``, length checked)."""
        rand = self._random_bytes
        if rand is os.urandom:
            off = self._nonce_off
            end = off + NONCE_SIZE
            if end > len(self._nonce_buf):
                self._nonce_buf = os.urandom(_NONCE_BATCH)
                off, end = 0, NONCE_SIZE
            self._nonce_off = end
            return self._nonce_buf[off:end]
        nonce = rand(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"random_bytes({NONCE_SIZE}) returned {len(nonce)} bytes")
        return nonce

    def _urandom_batched(self, n: int) -> bytes:
        """os.urandom in 4 KiB batches: one system call per ~250 nonces.

        kcp-go HEAD also avoids a system call per nonce (an AES-based PRNG
        re-seeded from the OS); slices of one os.urandom read are as good as
        separate reads.  Only used when ``random_bytes`` is the default.
        """
        off = self._nonce_off
        if off + n > len(self._nonce_buf):
            self._nonce_buf = os.urandom(max(_NONCE_BATCH, n))
            off = 0
        self._nonce_off = off + n
        return self._nonce_buf[off : off + n]

    # --- receiving -------------------------------------------------------------

    def open(self, packet: BytesLike) -> bytes:
        """Decrypt, check and strip the crypto header (kcp-go ``packetInput``).

        Stateless and thread-safe.

        Args:
            packet: one UDP payload as received.

        Returns:
            The payload after the crypto header: the FEC packet or the KCP
            datagram.  Without a cipher, the packet itself.

        Raises:
            PacketError: longer than 1500 bytes or shorter than the crypto
                header (``InErrs``); bad CRC or AEAD tag (``InCsumErrors``).
            TypeError: if ``packet`` is not bytes-like.
        """
        if not isinstance(packet, bytes):
            packet = _as_bytes("packet", packet)
        n = len(packet)
        if n > MTU_LIMIT:
            # kcp-go reads into 1500-byte buffers: anything longer is
            # truncated and then fails the CRC; we say why instead.
            raise PacketError(f"packet too long ({n} > {MTU_LIMIT} bytes)", "InErrs")
        block = self.block
        if block is None:
            return packet
        if n < self._min_wire:
            raise PacketError(f"packet too short for the crypto header ({n} bytes)", "InErrs")
        if self._aead:
            # the AEAD raises PacketError("bad ... tag", "InCsumErrors") itself
            return block.decrypt(packet)[self.crypto_header :]
        open_packet = self._open_packet
        if open_packet is not None:
            payload = open_packet(packet)
            if payload is None:
                raise PacketError("bad CRC32 (wrong key or cipher, or corrupted)", "InCsumErrors")
            return payload
        plain = block.decrypt(packet)
        if _crc32(memoryview(plain)[CRYPT_HEADER_SIZE:]) != _u32_at(plain, NONCE_SIZE)[0]:
            raise PacketError("bad CRC32 (wrong key or cipher, or corrupted)", "InCsumErrors")
        return plain[CRYPT_HEADER_SIZE:]

    def open_many(self, packets: Sequence[BytesLike]) -> list[Union[bytes, PacketError]]:
        """:meth:`open` for a batch: each packet's payload, or the PacketError it raised.

        Stateless and thread-safe, as :meth:`open`.  With a classic cipher
        that supports it (``decrypt_many``, kcpsock's direct-C CFB) a batch
        of two or more is decrypted by two C calls; then each CRC is checked
        in the decrypted buffer and each payload copied out once.  A lone
        packet goes through :meth:`open`.

        Args:
            packets: UDP payloads as received (bytes).

        Returns:
            One entry per packet, in order: the payload :meth:`open` would
            return, or the :class:`~kcpsock.errors.PacketError` it would raise.

        Raises:
            TypeError: if a packet is not bytes-like.
        """
        open_packets = self._open_packets
        many = self._decrypt_many
        if (many is None and open_packets is None) or len(packets) == 1:
            # (a lone packet, the interactive case: open() costs less than
            # the batch set-up, and decrypts a short packet with one C call)
            results: list[Union[bytes, PacketError]] = []
            for p in packets:
                try:
                    results.append(self.open(p))
                except PacketError as exc:
                    results.append(exc)
            return results
        low = self._min_wire
        if open_packets is not None:
            # the common batch: every packet bytes of a length open() takes;
            # then one C call opens the whole list as it is
            for p in packets:
                if not isinstance(p, bytes) or not low <= len(p) <= MTU_LIMIT:
                    break
            else:
                return open_packets(packets, _BAD_CRC)
        todo: list[bytes] = []
        where: list[int] = []
        results = []
        for i, item in enumerate(packets):
            p = item if isinstance(item, bytes) else _as_bytes("packet", item)
            n = len(p)
            if n > MTU_LIMIT:
                results.append(PacketError(f"packet too long ({n} > {MTU_LIMIT} bytes)", "InErrs"))
            elif n < low:
                results.append(
                    PacketError(f"packet too short for the crypto header ({n} bytes)", "InErrs")
                )
            else:
                results.append(_BAD_CRC)  # replaced below when the CRC matches
                todo.append(p)
                where.append(i)
        if not todo:
            return results
        if open_packets is not None:
            # the C helper: decrypt and CRC check in one call
            for i, payload in zip(where, open_packets(todo, _BAD_CRC)):
                results[i] = payload
            return results
        assert many is not None

        chunk: list[int] = []  # indexes of the chunk being decrypted

        def check(view: memoryview, offsets: list[int]) -> None:
            crc32 = _crc32
            u32 = _u32_at
            for i, off in zip(chunk, offsets):
                body = view[off + CRYPT_HEADER_SIZE : off + len(todo[i])]
                if crc32(body) == u32(view, off + NONCE_SIZE)[0]:
                    results[where[i]] = body.tobytes()
                body.release()

        # chunks of a receiver batch (64): a listener's larger batches stay
        # in the cipher's pooled buffer and in the CPU cache
        for start in range(0, len(todo), _OPEN_CHUNK):
            chunk[:] = range(start, min(start + _OPEN_CHUNK, len(todo)))
            many(todo[start : start + _OPEN_CHUNK], check)
        return results

    def peek_conv(self, payload: BytesLike) -> Optional[int]:
        """The KCP conversation id of an opened payload (kcp-go Listener).

        Args:
            payload: the result of :meth:`open`.

        Returns:
            The conv (u32 at offset 0, or at offset 8 for an FEC data
            packet); None for a parity packet, or an FEC data packet too
            short to hold a KCP header (kcp-go recovers no conv from either:
            they go to an existing session, never create one).

        Raises:
            PacketError: (``InErrs``) payload shorter than a KCP header.
        """
        if len(payload) < OVERHEAD:
            raise PacketError(f"payload too short ({len(payload)} bytes)", "InErrs")
        flag = _u16_at(payload, 4)[0]
        if flag == TYPE_DATA:
            if len(payload) < FEC_HEADER_SIZE_PLUS2 + OVERHEAD:
                return None
            return int(_u32_at(payload, FEC_HEADER_SIZE_PLUS2)[0])
        if flag == TYPE_PARITY:
            return None
        return int(_u32_at(payload, 0)[0])

    def decode_payload(self, payload: BytesLike) -> tuple[Optional[bytes], list[bytes]]:
        """The FEC stage (kcp-go ``kcpInput``): classify, decode, recover.

        Args:
            payload: the result of :meth:`open`.

        Returns:
            ``(regular, recovered)``: the KCP datagram to feed as a regular
            packet (None for a parity packet) and the datagrams recovered
            from parity (to feed with ``regular=False``).

        Raises:
            PacketError: (``InErrs``) payload shorter than a KCP header, or a
                malformed FEC packet; the codec's state is unchanged.
            TypeError: if ``payload`` is not bytes-like.
        """
        regular, skip, recovered = self.decode_framed(payload)
        if skip and regular is not None:
            regular = regular[skip:]
        return regular, recovered

    def decode_framed(self, payload: BytesLike) -> tuple[Optional[bytes], int, list[bytes]]:
        """:meth:`decode_payload` without copying a data packet's KCP datagram out.

        Args:
            payload: the result of :meth:`open`.

        Returns:
            ``(regular, skip, recovered)``: as :meth:`decode_payload`, but
            the KCP datagram is ``regular[skip:]``: an FEC data packet comes
            back whole (``skip`` 8, its FEC header; feed it with
            ``KCP.input(regular, ..., offset=skip)``), anything else with
            ``skip`` 0.  ``regular`` is kept by the FEC decoder as a shard:
            it must not change.

        Raises:
            As :meth:`decode_payload`.
        """
        if not isinstance(payload, bytes):
            payload = _as_bytes("payload", payload)
        if len(payload) < OVERHEAD:
            # kcp-go packetInput: len(data) >= OVERHEAD before kcpInput
            raise PacketError(f"payload too short ({len(payload)} bytes)", "InErrs")
        # bytes 4..5: f1 00 / f2 00 (byte reads: compiled, no struct call and
        # no tuple per packet)
        kind = payload[4]
        if payload[5] or (kind != TYPE_DATA and kind != TYPE_PARITY):
            return payload, 0, []
        decoder = self.decoder
        if decoder is not None:
            # header parsed and checked here (payload >= 24 bytes): no second
            # pass; a codec's decoder is always enabled (d >= 1, autotune too)
            seqid = payload[0] | payload[1] << 8 | payload[2] << 16 | payload[3] << 24
            if kind == TYPE_DATA:
                return payload, FEC_HEADER_SIZE_PLUS2, decoder.collect(payload, seqid, True)
            return None, 0, decoder.collect(payload, seqid, False)
        # kcp-go kcpInput: "if fecDecoder is not initialized, create one
        # with default parameter" (1, 1); kept only if the packet decodes.
        decoder = FECDecoder(1, 1)
        regular, recovered = decoder.decode_parts(payload)
        self.decoder = decoder
        return regular, 0, recovered

    def decode(self, packet: BytesLike) -> tuple[Optional[bytes], list[bytes]]:
        """``decode_payload(open(packet))``: one UDP payload to KCP datagrams.

        Args:
            packet: one UDP payload as received.

        Returns:
            ``(regular, recovered)`` as :meth:`decode_payload`.

        Raises:
            PacketError: as :meth:`open` and :meth:`decode_payload`.
        """
        return self.decode_payload(self.open(packet))

    # --- counters ----------------------------------------------------------------

    def fec_counters(self) -> dict[str, int]:
        """The FEC decoder's cumulative counters under kcp-go's SNMP names.

        Returns:
            ``FECParityShards``, ``FECFullShardSet``, ``FECRecovered``,
            ``FECErrs`` (all 0 before any FEC packet) and the gauge
            ``FECShardSet`` (shard sets held now).
        """
        d = self.decoder
        if d is None:
            return {
                "FECParityShards": 0,
                "FECFullShardSet": 0,
                "FECRecovered": 0,
                "FECErrs": 0,
                "FECShardSet": 0,
            }
        return {
            "FECParityShards": d.parity_shards,
            "FECFullShardSet": d.full_shard_sets,
            "FECRecovered": d.recovered,
            "FECErrs": d.errors,
            "FECShardSet": d.shard_sets,
        }

    @property
    def fec_parity_shards(self) -> int:
        """Parity packets received (kcp-go ``FECParityShards``)."""
        return self.decoder.parity_shards if self.decoder is not None else 0

    @property
    def fec_full_shard_sets(self) -> int:
        """Groups complete without recovery (kcp-go ``FECFullShardSet``)."""
        return self.decoder.full_shard_sets if self.decoder is not None else 0

    @property
    def fec_recovered(self) -> int:
        """Datagrams recovered from parity (kcp-go ``FECRecovered``)."""
        return self.decoder.recovered if self.decoder is not None else 0

    @property
    def fec_errors(self) -> int:
        """Recovered shards failing the size check (kcp-go ``FECErrs``)."""
        return self.decoder.errors if self.decoder is not None else 0
