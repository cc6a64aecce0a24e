"""kcpsock as a REPL user meets it: Ctrl-C, interpreter exit, leftovers, repr, help.

Each scenario runs in a fresh interpreter (``python -c``), so the global
updater and the counters of this test process play no part, and the thread
and descriptor counts the child prints are its own.  Real UDP on 127.0.0.1
only.  Every wait is bounded (``communicate(timeout=...)``); a child that
hangs is killed and the test fails.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import kcpsock

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses /proc/self/fd")

# The child's common prologue: a listener, a dialed session, the accepted one.
# Both sides have 4-segment windows, so a writer blocks soon when the peer
# does not read.
_PROLOGUE = """
import os, sys, threading, time, kcpsock
from kcpsock.session import drain_closing
def kthreads():
    # a closed session delivers what it still holds in the background (as
    # TCP): its threads end once that is done (bounded wait)
    drain_closing(5.0)
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("kcpsock"))
def nfds():
    return len(os.listdir("/proc/self/fd"))
FDS0 = nfds()
L = kcpsock.listen(("127.0.0.1", 0), sndwnd=4, rcvwnd=4)
c = kcpsock.dial(L.getsockname(), sndwnd=4, rcvwnd=4)
c.sendall(b"hello")
s, _ = L.accept()
assert s.recv(5) == b"hello"
"""

_BLOCKERS = {
    "recv": "print('ready', flush=True); c.recv(10)",
    # after round trips the reader reads the socket itself (the receive
    # role): Ctrl-C lands in its poll
    "recv-holding-role": (
        "def echo():\n"
        "    while True:\n"
        "        d = s.recv(10)\n"
        "        if not d: break\n"
        "        s.sendall(d)\n"
        "threading.Thread(target=echo, daemon=True).start()\n"
        "for _ in range(20):\n"
        "    c.sendall(b'p'); assert c.recv(10) == b'p'\n"
        "assert c.session.receive_role.lends\n"
        "print('ready', flush=True); c.recv(10)"
    ),
    "accept": "print('ready', flush=True); L.accept()",
    # fill the window until nothing moves (the peer does not read and its
    # receive window is 4 segments), then block in send
    "send": (
        "c.settimeout(0.5)\n"
        "try:\n"
        "    while True: c.send(b'x' * 1000)\n"
        "except TimeoutError:\n"
        "    pass\n"
        "c.settimeout(None)\n"
        "print('ready', flush=True); c.send(b'y' * 1000)"
    ),
    "sendall": "print('ready', flush=True); c.sendall(b'z' * 10_000_000)",
    "makefile-readline": "f = c.makefile('rb'); print('ready', flush=True); f.readline()",
}


def _run_child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 15.0) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child hung; stdout={out!r} stderr={err!r}")


@pytest.mark.parametrize("where", sorted(_BLOCKERS))
def test_ctrl_c_interrupts_blocking_call_and_leaves_objects_closable(where: str) -> None:
    code = _PROLOGUE + textwrap.dedent("""
        try:
        {body}
            print("returned", flush=True)
        except KeyboardInterrupt:
            t0 = time.monotonic()
            print("interrupted", flush=True)
        if "f" in globals():
            f.close()  # as with socket.socket, an open makefile() keeps it open
        for obj in (c, s, L):
            obj.close()
        print("threads", kthreads(), flush=True)
        print("fds", nfds() - FDS0, flush=True)
        """).replace("{body}", textwrap.indent(_BLOCKERS[where], "    "))
    proc = _run_child(code)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")
    time.sleep(0.2)  # not synchronisation: let the child enter the blocking call
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = _finish(proc)
    elapsed = time.monotonic() - t0
    lines = out.splitlines()
    assert lines[0] == "interrupted", (out, err)
    assert "threads []" in lines, (out, err)
    assert "fds 0" in lines, (out, err)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    # promptness: generous bound (only detects a call that ignores Ctrl-C
    # until some long internal timeout)
    assert elapsed < 5.0, elapsed


def test_interpreter_exit_with_sessions_open_does_not_hang() -> None:
    code = _PROLOGUE + textwrap.dedent("""
        s.sendall(b"unread data")                      # queued at the peer
        dead = kcpsock.dial(("127.0.0.1", 9))        # nobody there: unacked forever
        dead.send(b"lost")
        c2 = kcpsock.dial(L.getsockname())           # waits in the backlog
        c2.send(b"never accepted")
        L2 = kcpsock.listen(("127.0.0.1", 0))
        threading.Thread(target=lambda: s.recv(10), daemon=True).start()
        print("exiting", kthreads(), flush=True)
        """)
    t0 = time.monotonic()
    proc = _run_child(code)
    out, err = _finish(proc)
    assert out.startswith("exiting ['kcpsock-"), (out, err)
    assert proc.returncode == 0, err
    assert err == "", err
    assert time.monotonic() - t0 < 10.0


def test_daemon_threads_blocked_at_exit_stay_quiet() -> None:
    # as a TCP socket's: a daemon thread blocked in sendall or accept when
    # the interpreter exits is frozen silently, not woken with a traceback
    code = _PROLOGUE + textwrap.dedent("""
        L2 = kcpsock.listen(("127.0.0.1", 0))
        blocked = threading.Barrier(3, timeout=5)
        def writer():
            blocked.wait()
            c.sendall(b"x" * 1_000_000)                # the peer never reads
        def acceptor():
            blocked.wait()
            L2.accept()                                # nobody dials
        threading.Thread(target=writer, daemon=True).start()
        threading.Thread(target=acceptor, daemon=True).start()
        blocked.wait()   # (blocked by now, or about to be: quiet either way)
        print("exiting", flush=True)
        """)
    _exits_quietly(code)


def _exits_quietly(code: str, out_expected: str = "exiting\n") -> None:
    """Run ``code`` and check its output, its status and that stderr stays empty."""
    proc = _run_child(code)
    out, err = _finish(proc)
    assert out == out_expected, (out, err)
    assert proc.returncode == 0, err
    assert err == "", err


def test_daemon_threads_blocked_in_smux_streams_at_exit_stay_quiet() -> None:
    code = _PROLOGUE + textwrap.dedent("""
        from kcpsock import smux
        cs, ss = smux.client(c), smux.server(s)
        st = cs.open_stream()
        st.sendall(b"hi")
        sst = ss.accept_stream(timeout=5)
        assert sst.recv(2) == b"hi"
        blocked = threading.Barrier(4, timeout=5)
        def reader():
            blocked.wait(); sst.recv(10)               # nothing comes
        def writer():
            blocked.wait(); st.sendall(b"x" * 10_000_000)
        def acceptor():
            blocked.wait(); ss.accept_stream()         # nobody opens one
        for f in (reader, writer, acceptor):
            threading.Thread(target=f, daemon=True).start()
        # after kcpsock's exit handler (atexit runs the last registered
        # first): smux's own threads are not frozen (the reader ends the
        # session; a close joins both at once)
        import atexit, kcpsock.sock
        def ended():
            deadline = time.monotonic() + 5
            while cs.alive and time.monotonic() < deadline:
                threading.Event().wait(0.01)
            print("smux ended", not cs.alive, flush=True)
            cs.close()                                 # joins its reader and writer
            # both ended within close's bounded joins (a frozen thread would
            # outlive them); not a wall-clock bound a loaded machine can exceed
            ended = not cs._reader.is_alive() and not cs._writer.is_alive()
            print("closed at once", ended, flush=True)
        atexit.unregister(kcpsock.sock._close_everything)
        atexit.register(ended)
        atexit.register(kcpsock.sock._close_everything)
        blocked.wait()
        print("exiting", flush=True)
        """)
    _exits_quietly(code, "exiting\nsmux ended True\nclosed at once True\n")


def test_close_leaves_no_thread_and_no_descriptor() -> None:
    code = _PROLOGUE + textwrap.dedent("""
        c.fileno(); s.fileno(); L.fileno()           # readiness socketpairs too
        f = s.makefile("rb")
        assert kthreads(), "threads run while sessions are open"
        c.close(); L.close()
        assert kthreads(), "the accepted session still needs the listener's thread"
        s.close()                                    # deferred: the file is open
        assert not s.closed
        f.close()
        assert s.closed
        print("threads", kthreads(), flush=True)
        print("fds", nfds() - FDS0, flush=True)
        # and it all starts again on demand
        L = kcpsock.listen(("127.0.0.1", 0))
        with kcpsock.dial(L.getsockname()) as c:
            c.sendall(b"again")
            s, _ = L.accept()
            print("again", s.recv(10), flush=True)
            s.close()
        L.close()
        print("threads", kthreads(), flush=True)
        print("fds", nfds() - FDS0, flush=True)
        """)
    out, err = _finish(_run_child(code))
    assert out.splitlines() == ["threads []", "fds 0", "again b'again'", "threads []", "fds 0"], (
        out,
        err,
    )


def test_forgotten_objects_release_threads_and_descriptors() -> None:
    # a REPL user rebinding names: the finalizers close without joining
    # (they may run on any thread), the threads still end on their own
    code = _PROLOGUE + textwrap.dedent("""
        import gc
        c.fileno(); L.fileno()
        del c, s, L
        gc.collect()
        end = time.monotonic() + 5
        while kthreads() and time.monotonic() < end:
            threading.Event().wait(0.01)
        print("threads", kthreads(), flush=True)
        print("fds", nfds() - FDS0, flush=True)
        """)
    out, err = _finish(_run_child(code))
    assert out.splitlines() == ["threads []", "fds 0"], (out, err)
    assert err == "", err


def test_repr_shows_state_addresses_conv_and_srtt() -> None:
    with kcpsock.listen(("127.0.0.1", 0)) as lst:
        laddr = lst.getsockname()
        assert repr(lst) == f"<kcpsock.Listener laddr={laddr!r} sessions=0>"
        c = kcpsock.dial(laddr, conv=0x1234)
        try:
            fresh = repr(c)
            assert fresh.startswith("<kcpsock.KCPSocket state=open conv=0x00001234 ")
            assert f"laddr={c.getsockname()!r}" in fresh
            assert f"raddr={laddr!r}" in fresh
            assert "srtt=0ms" in fresh
            c.sendall(b"ping")
            s, _ = lst.accept()
            with s:
                s.settimeout(10)
                assert s.recv(4) == b"ping"
                assert f"raddr={c.getsockname()!r}" in repr(s)
                assert f"laddr={laddr!r}" in repr(s)
                assert "sessions=1" in repr(lst)
        finally:
            c.close()
        closed = repr(c)
        assert closed.startswith("<kcpsock.KCPSocket [closed]")
        assert "conv=0x00001234" in closed and "laddr=" not in closed
    assert repr(lst).startswith("<kcpsock.Listener [closed]")


def _help_text(obj: object) -> str:
    import pydoc

    out = io.StringIO()
    pydoc.Helper(output=out).help(obj)
    return out.getvalue()


@pytest.mark.parametrize(
    "obj",
    [
        kcpsock.dial,
        kcpsock.listen,
        kcpsock.create_connection,
        kcpsock.create_server,
        kcpsock.KCPSocket.recv,
        kcpsock.KCPSocket.recv_into,
        kcpsock.KCPSocket.send,
        kcpsock.KCPSocket.sendall,
        kcpsock.KCPSocket.settimeout,
        kcpsock.KCPSocket.makefile,
        kcpsock.KCPSocket.setsockopt,
        kcpsock.KCPSocket.getsockopt,
        kcpsock.KCPSocket.set_nodelay,
        kcpsock.KCPSocket.set_window_size,
        kcpsock.KCPSocket.set_mtu,
        kcpsock.KCPSocket.shutdown,
        kcpsock.KCPSocket.sendfile,
        kcpsock.KCPSocket.setblocking,
        kcpsock.KCPSocket.set_dup,
        kcpsock.Listener.accept,
        kcpsock.Listener.settimeout,
        kcpsock.Listener.set_read_buffer,
        kcpsock.Listener.setsockopt,
    ],
    ids=lambda o: o.__qualname__,
)
def test_help_has_args_returns_raises(obj: object) -> None:
    text = _help_text(obj)
    assert "Raises:" in text, text
    if "Args:" not in text:
        # only when the function takes nothing but self
        import inspect

        params = [
            p
            for p in inspect.signature(obj).parameters  # type: ignore[arg-type]
            if p != "self"
        ]
        assert not params, text


def test_dial_help_lists_every_session_option() -> None:
    import dataclasses

    text = _help_text(kcpsock.dial)
    listener_only = {
        "backlog",
        "max_sessions",
        "blacklist_ttl",
        "max_sessions_per_address",
        "backlog_per_address",
        "accept_timeout",
        "pending_rcvwnd",
        "conv_guard",
    }
    for field in dataclasses.fields(kcpsock.KCPConfig):
        if field.name not in listener_only:
            assert f"``{field.name}``" in text, field.name


def test_ctrl_c_during_close_leaks_no_descriptor() -> None:
    # close() joins the receiver thread; a Ctrl-C landing in that join must
    # neither leave the UDP socket open nor keep the updater thread (a second
    # close() is a no-op).  The Ctrl-C is delivered by the join itself, so the
    # outcome does not depend on whether the receiver thread already ended:
    # the join is always attempted (no is_alive() test before it).
    # c's "hello" must be acknowledged first: a close() with data in flight
    # delivers it in the background and joins nothing (on a loaded machine
    # the ACK may still be on its way when s.recv returns).
    code = _PROLOGUE + textwrap.dedent("""
        print("acknowledged", c.session.drain(time.monotonic() + 5), flush=True)
        s.close(); L.close()
        thread = c.session.receiver_thread
        udp = c.session.transport.sock
        def interrupted_join(timeout=None):
            raise KeyboardInterrupt
        thread.join = interrupted_join
        try:
            c.close()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("udp closed", udp.fileno() == -1, flush=True)
        c.close()
        del thread.join
        thread.join(5)
        end = time.monotonic() + 5
        while kthreads() and time.monotonic() < end:
            threading.Event().wait(0.01)
        print("threads", kthreads(), flush=True)
        print("fds", nfds() - FDS0, flush=True)
        """)
    out, err = _finish(_run_child(code))
    assert out.splitlines() == [
        "acknowledged True",
        "interrupted",
        "udp closed True",
        "threads []",
        "fds 0",
    ], (
        out,
        err,
    )


def test_close_while_the_updater_runs_the_sessions_timer_leaves_no_thread() -> None:
    # The race behind a flaky "threads ['kcpsock-updater']": the updater
    # thread runs the session's on_timer (which computes the next, keep-alive
    # deadline) while the user closes the session; the deadline must not
    # re-arm the closed session after close() released the updater.  The
    # timer is held until close() has released the thread (bounded wait).
    code = _PROLOGUE + textwrap.dedent("""
        from kcpsock.updater import now_ms, updater
        # nothing in flight, so close() finishes at once (no background close)
        print("acknowledged", c.session.drain(time.monotonic() + 5), flush=True)
        s.close(); L.close()
        sess = c.session
        entered = threading.Event()
        orig = sess.on_timer
        def on_timer(now):
            orig(now)
            entered.set()
            end = time.monotonic() + 5
            while updater.is_alive() and time.monotonic() < end:
                threading.Event().wait(0.001)
            return now + 60_000
        sess.on_timer = on_timer
        updater.schedule(sess, now_ms())
        print("timer running", entered.wait(5), flush=True)
        c.close()
        print("threads", kthreads(), flush=True)
        print("scheduled", updater.scheduled(), flush=True)
        """)
    out, err = _finish(_run_child(code))
    assert out.splitlines() == [
        "acknowledged True",
        "timer running True",
        "threads []",
        "scheduled 0",
    ], (out, err)
