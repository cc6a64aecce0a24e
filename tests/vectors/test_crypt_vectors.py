"""kcp-go's ciphers, byte for byte, both directions (tests/vectors/data/crypt.json).

Every raw vector and every packet vector of every cipher is encrypted and
decrypted; each object is used twice in a row so a cipher that leaks state
from one packet into the next (kcp-go restarts at the fixed IV) fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from kcpsock import _accel, _fastcrypt
from kcpsock.crypt import CIPHERS, IV, derive_key, new_block_crypt
from tests.conftest import load_vectors

_CRYPT = load_vectors("crypt")
_CASES = [pytest.param(cipher, id=cipher["name"]) for cipher in _CRYPT["ciphers"]]


def _pairs(cipher: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    pairs = [
        (bytes.fromhex(r["plaintext_hex"]), bytes.fromhex(r["ciphertext_hex"]))
        for r in cipher["raw"]
    ]
    pairs += [
        (bytes.fromhex(p["packet_hex"]), bytes.fromhex(p["encrypted_hex"]))
        for p in cipher["packets"]
    ]
    return pairs


def test_every_kcptun_cipher_has_vectors() -> None:
    names = {c["name"] for c in _CRYPT["ciphers"]}
    assert names == set(CIPHERS) - {"aes-gcm", "aes-128-gcm"}


@pytest.mark.parametrize("vector", _CRYPT["kdf_vectors"], ids=lambda v: repr(v["password"]))
def test_derive_key(vector: dict[str, str]) -> None:
    assert derive_key(vector["password"]).hex() == vector["derived_key_hex"]
    assert derive_key(vector["password"].encode()).hex() == vector["derived_key_hex"]


def test_fixed_iv() -> None:
    assert IV.hex() == _CRYPT["iv_hex"]


@pytest.mark.parametrize("cipher", _CASES)
def test_key_is_kcptun_slice_of_derived_key(cipher: dict[str, Any]) -> None:
    derived = derive_key(_CRYPT["password"])
    assert bytes.fromhex(cipher["key_hex"]) == derived[: cipher["key_len"]]


@pytest.mark.parametrize("cipher", _CASES)
def test_encrypt_matches_kcp_go(cipher: dict[str, Any]) -> None:
    block = new_block_crypt(cipher["name"], bytes.fromhex(cipher["key_hex"]))
    for plain, enc in _pairs(cipher):
        for _ in range(2):
            assert block.encrypt(plain).hex() == enc.hex(), len(plain)


@pytest.mark.parametrize("cipher", _CASES)
def test_decrypt_matches_kcp_go(cipher: dict[str, Any]) -> None:
    block = new_block_crypt(cipher["name"], bytes.fromhex(cipher["key_hex"]))
    for plain, enc in _pairs(cipher):
        for _ in range(2):
            assert block.decrypt(enc).hex() == plain.hex(), len(plain)


@pytest.mark.parametrize("cipher", _CASES)
def test_batch_paths_match_kcp_go(cipher: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # The sender's and receiver's batch paths of the direct-C CFB (encrypt_pair,
    # encrypt_pairs: the chain restarted by writing the IV; decrypt_many), on
    # every vector length (short and odd ones included), each cut into head + body.
    # (The ctypes CFB: the C helper kcpsock._cfbc is turned off here.)
    monkeypatch.setattr(_accel, "native", lambda name: None)
    block = new_block_crypt(cipher["name"], bytes.fromhex(cipher["key_hex"]))
    pair = getattr(block, "encrypt_pair", None)
    pairs_ = getattr(block, "encrypt_pairs", None)
    many = getattr(block, "decrypt_many", None)
    if pair is None or pairs_ is None or many is None:
        pytest.skip("no direct-C batch paths for this cipher here")
    vectors = _pairs(cipher)
    expected = [enc for _, enc in vectors]
    for cut in (0, 1, 7, 20, 28):
        heads = [plain[:cut] for plain, _ in vectors]
        bodies = [plain[cut:] for plain, _ in vectors]
        assert [pair(h, b) for h, b in zip(heads, bodies)] == expected, cut
        assert pairs_(heads, bodies) == expected, cut
    got = many(
        expected,
        lambda view, offsets: [
            view[o : o + len(enc)].tobytes() for o, enc in zip(offsets, expected)
        ],
    )
    assert got == [plain for plain, _ in vectors]


@pytest.mark.parametrize("cipher", _CASES)
def test_c_helper_matches_kcp_go(cipher: dict[str, Any]) -> None:
    # The C helper kcpsock._cfbc (NativeCFB): one packet at a time, head + body,
    # and kcp-go's real packets (nonce + CRC-32 + body) sealed as one batch and
    # opened again, batch and alone.
    block = new_block_crypt(cipher["name"], bytes.fromhex(cipher["key_hex"]))
    if not isinstance(block, _fastcrypt.NativeCFB):
        pytest.skip("the C helper does not serve this cipher here")
    vectors = _pairs(cipher)
    for plain, enc in vectors:
        assert block.encrypt(plain) == enc
        assert block.decrypt(enc) == plain
        for cut in (0, 1, 7, 20, 28):
            assert block.encrypt_pair(plain[:cut], plain[cut:]) == enc
    packets = [bytes.fromhex(p["packet_hex"]) for p in cipher["packets"]]
    expected = [bytes.fromhex(p["encrypted_hex"]) for p in cipher["packets"]]
    assert packets, "no packet vectors"
    nonces = b"".join(p[:16] for p in packets)
    for cut in (0, 3, 8):
        heads = [p[20 : 20 + cut] for p in packets]
        bodies = [p[20 + cut :] for p in packets]
        assert block.seal_many(nonces, heads, bodies) == expected
    assert block.open_packets(expected) == [p[20:] for p in packets]
    assert [block.open_packet(e) for e in expected] == [p[20:] for p in packets]


@pytest.mark.parametrize("cipher", _CASES)
def test_derived_key_gives_the_same_cipher(cipher: dict[str, Any]) -> None:
    # kcptun hands the whole 32-byte derived key; new_block_crypt slices it.
    block = new_block_crypt(cipher["name"], derive_key(_CRYPT["password"]))
    plain, enc = _pairs(cipher)[-1]
    assert block.encrypt(plain) == enc


@pytest.mark.parametrize("cipher", _CASES)
def test_packet_vectors_header(cipher: dict[str, Any]) -> None:
    # The packet vectors are laid out nonce(16) + CRC32 LE of bytes 20.. + body.
    import zlib

    for p in cipher["packets"]:
        packet = bytes.fromhex(p["packet_hex"])
        assert packet[:16].hex() == p["nonce_hex"]
        assert zlib.crc32(packet[20:]) == p["crc32"]
        assert packet[16:20] == p["crc32"].to_bytes(4, "little")


# docs/CRYPTO.md §6: the one AEAD vector (kcp-go HEAD layout, AES-128-GCM).
_GCM_PACKET = bytes.fromhex(
    "000102030405060708090a0b3be869ab654065aab460daff3d56a74129da74aa7804942b"
    "a99416e82fd81f40b033434333c326b41dae1637082a776461a337"
)
_BODY = b"hello, kcp! 0123456789abcdefghijklm"


@pytest.mark.parametrize("name", ["aes-gcm", "aes-128-gcm"])
def test_aes_gcm_vector(name: str) -> None:
    key = derive_key(_CRYPT["password"])[:16]
    block = new_block_crypt(name, key)
    assert block.encrypt(bytes(range(12)) + _BODY) == _GCM_PACKET
    assert block.decrypt(_GCM_PACKET) == bytes(range(12)) + _BODY


def test_aes_128_gcm_slices_the_derived_key() -> None:
    block = new_block_crypt("aes-128-gcm", derive_key(_CRYPT["password"]))
    assert block.decrypt(_GCM_PACKET)[12:] == _BODY


_SPEC_PLAIN = bytes.fromhex(
    "000102030405060708090a0b0c0d0e0f6ff5250f68656c6c6f2c206b637021203031323334"
    "35363738396162636465666768696a6b6c6d"
)
_SPEC_TABLE = {  # docs/CRYPTO.md §6, a second source besides crypt.json
    "aes-128": "ddd7e0a7981ba3e2a7f6d51f2a2663183ad5df58827da4bfa168cb2b37f1649c4aad1e4adbb0dbd80076da78a8ba68a6007509a36450cb",
    "twofish": "79a0668add94e7387471af7514bb10657d9e7339a9cd18a05c937fb8c89920d753ed776b466c30b629189f083d285c3060fdb8605cc63f",
    "tea": "fc9c4eb4a8e9502bde3d3c8b0679084de9dff1a3b610e16044f953a5c159f3c4f1b651154eea3638a06ff4c3d3a4015e491e50e5c92559",
    "xtea": "09256989438dfb5af0f2a323dfd1ac2ce51376d0e8bff98530a4c3acafe1f88a573d9fb50e0474cbee8a6f0347887cfc0a78131d43dd86",
    "sm4": "0340e44fd923bb2259e375a7ab6ee54d9658977fd05823cfc8e560fa05b7b3c1379a8af573e4fea5e8b911b275ab1bf896c2dab656cfd6",
    "salsa20": "00010203040506079aaa6e7faf75365c3f404106700b9e3f1dbf7b6f1d88aa755ad812cdbe1f25f6554e1dc815880f2cd6ca7e1297b440",
    "xor": "0fff8b84a99173765c7011c3f60cb823043b2409daf02c7fa27e1fd77c0a8dacc09e540c73ae25791d99b195fd4b5f6488d7b72998624d",
}


@pytest.mark.parametrize("name", sorted(_SPEC_TABLE))
def test_spec_table(name: str) -> None:
    block = new_block_crypt(name, derive_key(_CRYPT["password"]))
    assert block.encrypt(_SPEC_PLAIN).hex() == _SPEC_TABLE[name]
    assert block.decrypt(bytes.fromhex(_SPEC_TABLE[name])) == _SPEC_PLAIN


# --- the whole pipeline (kcpsock.codec) against kcp-go's bytes --------------


def _fixed_nonces(nonces: list[bytes]) -> Any:
    it = iter(nonces)

    def random_bytes(n: int) -> bytes:
        nonce = next(it)
        assert len(nonce) == n
        return nonce

    return random_bytes


@pytest.mark.parametrize("cipher", _CASES)
def test_codec_packets_match_kcp_go(cipher: dict[str, Any]) -> None:
    from kcpsock.codec import PacketCodec

    block = new_block_crypt(cipher["name"], bytes.fromhex(cipher["key_hex"]))
    for p in cipher["packets"]:
        nonce = bytes.fromhex(p["nonce_hex"])
        codec = PacketCodec(block, random_bytes=_fixed_nonces([nonce]))
        payload = bytes.fromhex(p["payload_hex"])
        assert codec.encode(payload) == [bytes.fromhex(p["encrypted_hex"])]
        assert codec.open(bytes.fromhex(p["encrypted_hex"])) == payload


def _fullstack() -> dict[str, Any]:
    (exchange,) = [
        e for e in load_vectors("kcp")["exchanges"] if e["name"] == "fullstack_aes_fec_3_2"
    ]
    return exchange  # type: ignore[no-any-return]


def test_fullstack_aes_fec_decodes_and_recovers() -> None:
    """kcp.json fullstack_aes_fec_3_2: both sides' datagrams through PacketCodec.

    The client's second datagram was dropped on the way; the server side must
    recover that 300-byte message from the two parity packets.
    """
    from kcpsock.codec import PacketCodec

    ex = _fullstack()
    settings = ex["settings"]
    assert settings["crypt"] == "aes"
    key = bytes.fromhex(settings["key_hex"])
    assert derive_key(settings["password"]) == key
    d, p = settings["fec_data_shards"], settings["fec_parity_shards"]
    codecs = {
        "c2s": PacketCodec(new_block_crypt("aes", key), d, p),
        "s2c": PacketCodec(new_block_crypt("aes", key), d, p),
    }
    regular: dict[str, list[bytes]] = {"c2s": [], "s2c": []}
    recovered: dict[str, list[bytes]] = {"c2s": [], "s2c": []}
    for dg in ex["datagrams"]:
        if dg.get("dropped"):
            continue
        codec = codecs[dg["dir"]]
        payload = codec.open(bytes.fromhex(dg["hex"]))
        assert payload == bytes.fromhex(dg["decrypted_hex"])[20:]
        conv = codec.peek_conv(payload)
        assert conv == (None if dg["fec"] == "parity" else ex["conv"])
        reg, rec = codec.decode_payload(payload)
        assert (reg is None) == (dg["fec"] == "parity")
        if reg is not None:
            regular[dg["dir"]].append(reg)
        recovered[dg["dir"]].extend(rec)
    # the dropped datagram is exactly the one recovered
    (dropped,) = [dg for dg in ex["datagrams"] if dg.get("dropped")]
    lost_kcp = bytes.fromhex(dropped["decrypted_hex"])[20 + 8 :]
    assert recovered["c2s"] == [lost_kcp]
    assert recovered["s2c"] == []
    assert codecs["c2s"].fec_recovered == ex["snmp_delta"]["FECRecovered"] == 1
    assert codecs["c2s"].fec_parity_shards == ex["snmp_delta"]["FECParityShards"] == 2
    # the recovered datagram carries the client's second 300-byte write
    writes = [
        bytes.fromhex(a["hex"]) for a in ex["app"] if a["side"] == "client" and a["op"] == "write"
    ]
    assert lost_kcp[24:] == writes[1]
    # and the regular ones carry the first and third
    pushes = [r[24:] for r in regular["c2s"] if r[4] == 81]
    assert pushes == [writes[0], writes[2]]


def test_fullstack_aes_fec_encode_reproduces_client_bytes() -> None:
    """With kcp-go's nonces, our encoder produces the client's wire bytes exactly,
    including both Reed-Solomon parity packets.
    """
    from kcpsock.codec import PacketCodec

    ex = _fullstack()
    settings = ex["settings"]
    key = bytes.fromhex(settings["key_hex"])
    sent = [dg for dg in ex["datagrams"] if dg["dir"] == "c2s"]
    nonces = [bytes.fromhex(dg["decrypted_hex"])[:16] for dg in sent]
    codec = PacketCodec(
        new_block_crypt("aes", key),
        settings["fec_data_shards"],
        settings["fec_parity_shards"],
        random_bytes=_fixed_nonces(nonces),
    )
    out: list[bytes] = []
    for dg in sent:
        if dg["fec"] == "data":
            out.extend(codec.encode(bytes.fromhex(dg["decrypted_hex"])[28:]))
    assert [o.hex() for o in out] == [dg["hex"] for dg in sent]
