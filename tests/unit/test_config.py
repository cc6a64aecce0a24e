"""kcpsock.config: KCPConfig defaults, kcptun presets and validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kcpsock.config import PRESETS, KCPConfig


def test_defaults_are_the_tcp_like_profile() -> None:
    c = KCPConfig()
    assert (c.nodelay, c.interval, c.resend, c.nc) == (1, 10, 2, True)
    assert (c.sndwnd, c.rcvwnd, c.mtu) == (1024, 1024, 1400)
    assert c.stream and not c.ack_nodelay and not c.write_delay
    assert c.dup == 0 and c.dead_link == 20 and c.rto_ordered
    assert (c.backlog, c.max_sessions, c.blacklist_ttl) == (128, 4096, 600.0)


def test_kcp_go_defaults_are_kcp_go_defaults() -> None:
    c = KCPConfig.kcp_go()
    assert (c.nodelay, c.interval, c.resend, c.nc) == (0, 100, 0, False)
    assert (c.sndwnd, c.rcvwnd, c.mtu) == (32, 32, 1400)
    assert not c.stream and not c.ack_nodelay and not c.write_delay
    assert c.dup == 0 and c.dead_link == 20 and not c.rto_ordered
    assert KCPConfig.kcp_go(stream=True).stream
    assert KCPConfig.kcp_go(sndwnd=64).rcvwnd == 32


@pytest.mark.parametrize(
    ("mode", "quad"),
    [
        ("normal", (0, 40, 2, 1)),
        ("fast", (0, 30, 2, 1)),
        ("fast2", (1, 20, 2, 1)),
        ("fast3", (1, 10, 2, 1)),
    ],
)
def test_kcptun_presets(mode: str, quad: tuple[int, int, int, int]) -> None:
    c = KCPConfig.preset(mode)
    assert c.nodelay_args == quad
    assert getattr(KCPConfig, mode)().nodelay_args == quad
    assert PRESETS[mode][:3] == quad[:3]


def test_preset_overrides_and_replace() -> None:
    c = KCPConfig.fast3(sndwnd=1024, rcvwnd=1024)
    assert (c.sndwnd, c.rcvwnd, c.interval) == (1024, 1024, 10)
    d = c.replace(stream=False)
    assert c.stream and not d.stream
    assert d.interval == 10


def test_frozen() -> None:
    c = KCPConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.mtu = 1000  # type: ignore[misc]


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="mode"):
        KCPConfig.preset("turbo")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval", 9),
        ("interval", 5001),
        ("sndwnd", 0),
        ("rcvwnd", 65536),
        ("mtu", 49),
        ("mtu", 1501),
        ("nodelay", -1),
        ("resend", -1),
        ("dup", -1),
        ("dead_link", 0),
        ("dscp", 64),
        ("read_buffer", 0),
        ("write_buffer", -5),
        ("backlog", 0),
        ("max_sessions", 0),
        ("blacklist_ttl", -1.0),
        ("blacklist_ttl", float("nan")),
        ("linger", -1),
        ("linger", float("inf")),
    ],
)
def test_out_of_range_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        KCPConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval", 10.5),
        ("sndwnd", "32"),
        ("nc", 1.0),
        ("stream", "yes"),
        ("ack_nodelay", None),
        ("mtu", True),
        ("blacklist_ttl", "600"),
        ("linger", "1"),
    ],
)
def test_wrong_type_names_the_field(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=field):
        KCPConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_field_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        KCPConfig(bogus=1)  # type: ignore[call-arg]


def test_blacklist_zero_disables_and_is_valid() -> None:
    assert KCPConfig(blacklist_ttl=0).blacklist_ttl == 0
    assert KCPConfig(dscp=None, read_buffer=None).read_buffer is None


def test_flags_take_kcp_go_0_and_1_and_store_bools() -> None:
    # kcp-go's SetNoDelay(nodelay, interval, resend, nc int): nc=1 as written there
    flags: dict[str, Any] = {"nc": 1, "stream": 0, "ack_nodelay": 1}  # ints, as kcp-go's
    c = KCPConfig(nodelay=1, interval=10, resend=2, **flags)
    assert c.nc is True and c.stream is False and c.ack_nodelay is True
    assert c == KCPConfig(nodelay=1, interval=10, resend=2, nc=True, stream=False, ack_nodelay=True)
    assert c.nodelay_args == (1, 10, 2, 1)
    assert KCPConfig().replace(**{"write_delay": 1, **flags}).write_delay is True
    with pytest.raises(ValueError, match="nc"):
        KCPConfig(**{**flags, "nc": 2})


def test_config_fields_typed_dict_lists_every_field() -> None:
    """ConfigFields (the type of **changes) names exactly the dataclass fields."""
    from kcpsock.config import ConfigFields

    assert set(ConfigFields.__annotations__) == {f.name for f in dataclasses.fields(KCPConfig)}
