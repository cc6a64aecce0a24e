"""kcp-go's FEC layer byte for byte: tests/vectors/data/fec.json.

Every encode case is replayed through FECEncoder and must give the captured
datagrams exactly; every decode case is replayed through FECDecoder and each
step must return exactly the datagrams kcp-go's decoder recovered there.
Both with the C helper (kcpsock._gfsimd, when built) and without it (the
translate paths, ``kcpsock._accel.native`` patched to return None).
"""

from __future__ import annotations

from typing import Any

import pytest

from kcpsock.fec import TYPE_DATA, TYPE_PARITY, FECDecoder, FECEncoder, paws_for
from kcpsock.gf256 import ReedSolomon
from tests.conftest import load_vectors

FEC = load_vectors("fec")
ENCODE = {case["name"]: case for case in FEC["encode"]}
DECODE = {case["name"]: case for case in FEC["decode"]}


def _check_path(path: str, coder: Any) -> None:
    assert (coder._native is not None) == (path == "native")


@pytest.mark.parametrize("key", sorted(FEC["parity_matrix"]))
def test_parity_matrix(key: str) -> None:
    d, p = (int(x) for x in key.split("/"))
    assert [list(r) for r in ReedSolomon(d, p).parity_rows] == FEC["parity_matrix"][key]


@pytest.mark.parametrize("name", sorted(ENCODE))
def test_encode(name: str, gf_path: str) -> None:
    case = ENCODE[name]
    d, p = case["data_shards"], case["parity_shards"]
    assert paws_for(d + p) == case["paws"]
    enc = FECEncoder(d, p, start_seqid=case["start_seqid"])
    _check_path(gf_path, enc)
    got: list[bytes] = []
    for hx in case["inputs"]:
        got.extend(enc.encode(bytes.fromhex(hx)))
    want = case["outputs"]
    batch = FECEncoder(d, p, start_seqid=case["start_seqid"])
    heads, bodies = batch.frame_many([bytes.fromhex(hx) for hx in case["inputs"]])
    assert [h + b for h, b in zip(heads, bodies)] == got
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.hex() == w["hex"], f"{name}: output {i} ({w['type']} seqid {w['seqid']}) differs"
        assert int.from_bytes(g[:4], "little") == w["seqid"]
        kind = TYPE_DATA if w["type"] == "data" else TYPE_PARITY
        assert int.from_bytes(g[4:6], "little") == kind


def test_wrap_case_really_wraps() -> None:
    seqids = [o["seqid"] for o in ENCODE["wrap_10_3"]["outputs"]]
    assert seqids[12] == ENCODE["wrap_10_3"]["paws"] - 1 and seqids[13] == 0


def _recovered(step: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(r["kcp_packet_hex"]) for r in step["recovered"]]


@pytest.mark.parametrize("name", sorted(DECODE))
def test_decode(name: str, gf_path: str) -> None:
    case = DECODE[name]
    sent = [bytes.fromhex(s["hex"]) for s in case["sent"]]
    dec = FECDecoder(case["data_shards"], case["parity_shards"])
    _check_path(gf_path, dec)
    total = 0
    for step in case["steps"]:
        packet = sent[step["input"]]
        regular, recovered = dec.decode_parts(packet)
        if case["sent"][step["input"]]["type"] == "data":
            assert regular == packet[8:]
        else:
            assert regular is None
        assert recovered == _recovered(step), f"{name}: step with input {step['input']}"
        total += len(recovered)
        for r in step["recovered"]:
            # The recovered datagram is the dropped data packet's KCP datagram.
            assert sent[r["equals_sent_index"]][8:].hex() == r["kcp_packet_hex"]
    assert dec.recovered == total
    assert dec.errors == 0


@pytest.mark.parametrize("name", sorted(DECODE))
def test_decode_via_decode(name: str, gf_path: str) -> None:
    """decode() = regular datagram first, then the recovered ones."""
    case = DECODE[name]
    sent = [bytes.fromhex(s["hex"]) for s in case["sent"]]
    dec = FECDecoder(case["data_shards"], case["parity_shards"])
    _check_path(gf_path, dec)
    for step in case["steps"]:
        packet = sent[step["input"]]
        want = [packet[8:]] if case["sent"][step["input"]]["type"] == "data" else []
        assert dec.decode(packet) == want + _recovered(step)


def test_reconstruct_data_gives_the_vector_shards() -> None:
    """gf256.ReedSolomon.reconstruct_data returns kcp-go's full padded shards."""
    for case in FEC["decode"]:
        d, p = case["data_shards"], case["parity_shards"]
        sent = [bytes.fromhex(s["hex"]) for s in case["sent"]]
        shards: list[bytes | None] = [s[6:] for s in sent]
        for i in case["dropped"]:
            shards[i] = None
        want = [r for step in case["steps"] for r in step["recovered"]]
        if len(case["dropped"]) > p:
            with pytest.raises(ValueError, match="too few shards"):
                ReedSolomon(d, p).reconstruct_data(shards)
            continue
        got = ReedSolomon(d, p).reconstruct_data(shards)
        missing_data = [i for i in case["dropped"] if i < d]
        assert sorted(got) == missing_data
        assert [got[i].hex() for i in missing_data] == [r["shard_hex"] for r in want]
