"""Build and drive kcpsock's Go interop peer (tests/interop/peer/main.go).

The peer is built offline against Debian's golang-github-xtaci-kcp-dev
(sources under /usr/share/gocode/src) with Debian's golang-go, in GOPATH
mode: the peer's folder (main.go + go.mod) is copied to
``tests/interop/.build/gopath/src/kcppeer`` and built with
``GOPATH=<that gopath>:/usr/share/gocode GO111MODULE=off``.  Go's "minimal
module compatibility" then resolves the ``github.com/xtaci/kcp-go/v5``
import to Debian's ``github.com/xtaci/kcp-go`` tree, because the importing
package sits in a GOPATH folder that has a go.mod.  Nothing is downloaded
(``GOPROXY=off``).

Used by tests/interop/conftest.py (a session-scoped fixture) and by
tools/bench.py.  Every wait here is bounded.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO, Any, Optional

HERE = Path(__file__).resolve().parent
PEER_SRC = HERE / "peer"
BUILD_DIR = HERE / ".build"
BINARY = BUILD_DIR / "kcppeer"
GOCODE = Path(os.environ.get("KCPSOCK_GOCODE", "/usr/share/gocode"))
KCP_GO = GOCODE / "src" / "github.com" / "xtaci" / "kcp-go"

#: kcptun's cipher names, as the peer's -crypt flag takes them.
CIPHERS = (
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
#: Length of the repeating period of the test pattern (as in main.go).
PATTERN_PERIOD = 1000003
DEFAULT_KEY = "it's a secrect"


class PeerUnavailable(Exception):
    """Go or Debian's kcp-go is missing: the interop peer cannot be built."""


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    gopath = BUILD_DIR / "gopath"
    env.update(
        GO111MODULE="off",
        GOPATH=f"{gopath}{os.pathsep}{GOCODE}",
        GOCACHE=str(BUILD_DIR / "cache"),
        GOPROXY="off",
        GOFLAGS="",
        GOENV="off",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
    )
    return env


def toolchain() -> str:
    """Return the path of the ``go`` command.

    Raises:
        PeerUnavailable: Go or Debian's kcp-go sources are not installed.
    """
    go = shutil.which("go")
    if go is None:
        for candidate in sorted(Path("/usr/lib").glob("go-1.*/bin/go")):
            go = str(candidate)
        if go is None:
            raise PeerUnavailable("Go is not installed (apt-get install golang-go)")
    if not (KCP_GO / "sess.go").is_file():
        raise PeerUnavailable(
            f"kcp-go sources not found at {KCP_GO} (apt-get install golang-github-xtaci-kcp-dev)"
        )
    return go


def build_peer(timeout: float = 240.0) -> Path:
    """Build the peer if its sources or the toolchain changed; return its path.

    Args:
        timeout: the longest the build may take, in seconds.

    Returns:
        The path of the executable.

    Raises:
        PeerUnavailable: Go or kcp-go is missing.
        RuntimeError: the build failed (the message holds go's output).
    """
    go = toolchain()
    sources = sorted(PEER_SRC.iterdir())
    digest = hashlib.sha256()
    version = subprocess.run(
        [go, "version"], capture_output=True, text=True, timeout=30, env=_go_env()
    ).stdout
    digest.update(version.encode())
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    stamp = BUILD_DIR / "kcppeer.stamp"
    if BINARY.is_file() and stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return BINARY
    pkg = BUILD_DIR / "gopath" / "src" / "kcppeer"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    for src in sources:
        if src.is_file():
            shutil.copy2(src, pkg / src.name)
    tmp = BUILD_DIR / f"kcppeer.{os.getpid()}.tmp"
    proc = subprocess.run(
        [go, "build", "-o", str(tmp), "."],
        cwd=pkg,
        env=_go_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the Go peer failed:\n{proc.stdout}{proc.stderr}")
    os.replace(tmp, BINARY)
    stamp.write_text(digest.hexdigest())
    return BINARY


def pattern(seed: int, n: int) -> bytes:
    """The peer's test stream: SHA-256("<seed>:<k>") blocks, period PATTERN_PERIOD.

    Args:
        seed: the stream's seed (the peer's -seed flag).
        n: bytes wanted.

    Returns:
        The first n bytes of the stream.
    """
    m = min(n, PATTERN_PERIOD)
    blocks = []
    size = 0
    k = 0
    while size < m:
        h = hashlib.sha256(f"{seed}:{k}".encode()).digest()
        blocks.append(h)
        size += len(h)
        k += 1
    period = b"".join(blocks)[:m]
    if n <= m:
        return period
    reps, rest = divmod(n, m)
    return period * reps + period[:rest]


def peer_flags(
    *,
    crypt: str = "null",
    key: str = DEFAULT_KEY,
    ds: int = 0,
    ps: int = 0,
    stream: bool = False,
    nodelay: tuple[int, int, int, int] = (1, 10, 2, 1),
    wnd: tuple[int, int] = (1024, 1024),
    mtu: int = 1400,
    ack_nodelay: bool = False,
    **extra: Any,
) -> list[str]:
    """Build the peer's command-line flags.

    Args:
        crypt: kcptun cipher name or "null" (no crypto layer).
        key: the password (the peer derives the key as kcptun does).
        ds: FEC data shards.
        ps: FEC parity shards.
        stream: stream mode.
        nodelay: (nodelay, interval, resend, nc).
        wnd: (send, receive) windows.
        mtu: UDP payload size.
        ack_nodelay: flush ACKs after each input.
        **extra: other flags, name=value (e.g. bytes=1000, seed=3).

    Returns:
        The list of "-flag=value" arguments.
    """
    flags = [
        f"-crypt={crypt}",
        f"-key={key}",
        f"-ds={ds}",
        f"-ps={ps}",
        f"-stream={'true' if stream else 'false'}",
        f"-nodelay={nodelay[0]}",
        f"-interval={nodelay[1]}",
        f"-resend={nodelay[2]}",
        f"-nc={nodelay[3]}",
        f"-sndwnd={wnd[0]}",
        f"-rcvwnd={wnd[1]}",
        f"-mtu={mtu}",
        f"-acknodelay={'true' if ack_nodelay else 'false'}",
    ]
    flags += [f"-{k}={v}" for k, v in extra.items()]
    return flags


def parse_result(line: str) -> dict[str, str]:
    """Parse an "OK k=v k=v" (or "SINK ...") line into a dict (with "status")."""
    words = line.split()
    out = {"status": words[0] if words else ""}
    for w in words[1:]:
        k, _, v = w.partition("=")
        out[k] = v
    return out


class GoServer:
    """A running peer server (echo-server or sink-server), as a context manager.

    The server exits when its stdin closes, so it never outlives the test.

    Args:
        binary: the peer executable.
        mode: "echo-server" or "sink-server".
        flags: other flags (see :func:`peer_flags`).
        listen: the address to listen on.
        timeout: seconds the server may live at most.
        argv: a whole command line instead (any program speaking the same
            READY/SINK protocol on stdout and exiting when stdin closes).
    """

    def __init__(
        self,
        binary: Path,
        mode: str = "echo-server",
        flags: Optional[list[str]] = None,
        listen: str = "127.0.0.1:0",
        timeout: float = 120.0,
        *,
        argv: Optional[list[str]] = None,
    ) -> None:
        # argv replaces the whole command line: tools/bench.py runs its own
        # Python servers, which speak the same READY/SINK protocol.
        self.args = (
            argv
            if argv is not None
            else [
                str(binary),
                f"-mode={mode}",
                f"-listen={listen}",
                f"-timeout={int(timeout)}s",
                *(flags or []),
            ]
        )
        self.proc: Optional[subprocess.Popen[str]] = None
        self.address: tuple[str, int] = ("", 0)
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader: Optional[threading.Thread] = None

    def start(self, ready_timeout: float = 10.0) -> GoServer:
        """Start the server and wait for its READY line.

        Returns:
            self, with :attr:`address` set.

        Raises:
            RuntimeError: the server did not become ready.
        """
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        stdout = self.proc.stdout
        assert stdout is not None
        self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._reader.start()
        try:
            line = self.lines.get(timeout=ready_timeout)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"Go peer not ready: {self.args}") from None
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"Go peer failed: {line}")
        host, _, port = line.split()[1].rpartition(":")
        self.address = (host.strip("[]"), int(port))
        return self

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 30.0) -> str:
        """The server's next output line (e.g. a SINK result).

        Raises:
            queue.Empty: nothing within the timeout.
        """
        return self.lines.get(timeout=timeout)

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def close(self) -> None:
        """Stop the server (closes its stdin, kills it if it lingers)."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> GoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_client(
    binary: Path, mode: str, connect: tuple[str, int], flags: list[str], timeout: float = 60.0
) -> dict[str, str]:
    """Run a peer client to completion and return its parsed result line.

    Args:
        binary: the peer executable.
        mode: "echo-client", "send" or "ping".
        connect: the server (or relay) address.
        flags: other flags (see :func:`peer_flags`).
        timeout: seconds the client may take.

    Returns:
        The parsed "OK ..." line (see :func:`parse_result`).

    Raises:
        AssertionError: the client failed; the message holds its output.
    """
    host, port = connect[0], connect[1]
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return run_argv(
        [str(binary), f"-mode={mode}", f"-connect={target}", f"-timeout={int(timeout)}s", *flags],
        timeout,
        f"Go peer {mode}",
    )


def run_argv(argv: list[str], timeout: float = 60.0, what: str = "client") -> dict[str, str]:
    """Run a client command line that prints an "OK k=v ..." line; parse that line.

    Args:
        argv: the command line.
        timeout: seconds it may take (plus 10 s of slack before it is killed).
        what: a name for the error message.

    Returns:
        The parsed last line (see :func:`parse_result`).

    Raises:
        AssertionError: the client failed; the message holds its output.
    """
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout + 10,
        stdin=subprocess.DEVNULL,
    )
    lines = proc.stdout.strip().splitlines()
    last = lines[-1] if lines else ""
    if proc.returncode != 0 or not last.startswith("OK"):
        raise AssertionError(f"{what} failed (rc {proc.returncode}): {proc.stdout}{proc.stderr}")
    return parse_result(last)
