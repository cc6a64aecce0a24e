/*
 * kcpsock._udpio: recvmmsg/sendmmsg batches for kcpsock._mmsg, in C.
 *
 * kcpsock._mmsg drives the same system calls through ctypes; its per-datagram
 * Python work (slicing the buffers, building the pairs, pointing iovecs)
 * costs a few thousand instructions a datagram, more than the kernel's own
 * loopback path.  This module does that work in C and keeps the semantics of
 * _mmsg's docstring exactly (its callers choose it when
 * kcpsock._accel.native("_udpio") is not None):
 *
 *     recv(fd, size, batch, want, keylen, out, peer, cache, resolve[, wait])
 *         reads up to ``want`` datagrams (``batch`` per recvmmsg) of at most
 *         ``size`` bytes (longer ones truncated, as recvfrom(size) does) and
 *         appends (bytes, address) to ``out``: ``peer`` when it is not None,
 *         else ``cache[key]`` or ``resolve(key)`` for the ``keylen`` bytes of
 *         the C sockaddr.  EAGAIN ends the read; any other error raises the
 *         OSError subclass recvfrom would, after appending what came before.
 *         With a true ``wait`` the first recvmmsg blocks (on a blocking
 *         socket) until a datagram arrives (MSG_WAITFORONE): a blocked
 *         recvfrom and the read-ahead after it in one system call.
 *     send(fd, packets, name)      -> (datagrams sent, bytes sent)
 *     send_now(fd, packet, name)   -> bytes sent, or -1 (would block),
 *         -2 (refused, as above), -3 (another error): one sendto with
 *         MSG_DONTWAIT and the GIL held (see u_send_now).
 *     send_to(fd, packets, remotes, cache, resolve) -> flags or None
 *         send_each to Python addresses: each one's C sockaddr is
 *         cache[remote] or resolve(remote) (None from it: nothing is sent,
 *         None is returned and the caller sends one by one).
 *     send_each(fd, packets, names) -> bytearray of flags (1: sent)
 *         sendmmsg ``packets`` (bytes-like) to the C sockaddr ``name`` (None:
 *         connected) or to ``names[i]`` each.  A datagram refused with EAGAIN,
 *         ECONNREFUSED or EINTR is skipped and the rest still go; any other
 *         error ends the call quietly (kcp-go ignores write errors).
 *
 *     gil_stats([reset]) -> dict or None
 *         diagnostics (KCPSOCK_UDPIO_GILSTAT=1 at import): see below.
 *
 * Both system calls run with the GIL released (payload buffers stay exported
 * and referenced meanwhile; receive buffers are this call's own: taken from
 * a small free list, kept by the GIL, and given back when the call ends).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef __linux__
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <stdlib.h>
#include <time.h>

#define CHUNK 64         /* datagrams per sendmmsg */
#define NAME_MAX_LEN 28  /* sizeof(struct sockaddr_in6) */
#define RECV_BATCH_MAX 1024
#define POOL_MAX 4       /* receive blocks kept for reuse */

/*
 * Diagnostics, switched on at import by KCPSOCK_UDPIO_GILSTAT=1: per kind of
 * call (a recv that waits, a read-ahead, a send), the time in the system
 * call and from its return to holding the GIL again (gil_stats()).  Off, they
 * cost one test of a static flag per system call.
 */
enum { K_WAIT, K_NOWAIT, K_SEND, K_KINDS };
typedef struct {
    long long n, call_ns, wait_ns, wait_max, over1, over5;
} gstat_t;
static gstat_t gstats[K_KINDS];
static int gstat_on = 0;

static inline long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void
gstat_note(int kind, long long t0, long long t1, long long t2)
{
    gstat_t *g = &gstats[kind];
    long long w = t2 - t1;
    g->n++;
    g->call_ns += t1 - t0;
    g->wait_ns += w;
    if (w > g->wait_max) {
        g->wait_max = w;
    }
    g->over1 += w > 1000000;
    g->over5 += w > 5000000;
}

PyDoc_STRVAR(gil_stats_doc, "gil_stats(reset=False, /) -> dict or None\n\n"
                            "Per kind (wait, nowait, send): [calls, ns in calls, ns to get\n"
                            "the GIL back, the longest of those, how many > 1 ms, > 5 ms];\n"
                            "None unless KCPSOCK_UDPIO_GILSTAT was set at import.");

static PyObject *
u_gil_stats(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "gil_stats expects at most 1 argument, got %zd", nargs);
        return NULL;
    }
    int reset = nargs > 0 ? PyObject_IsTrue(args[0]) : 0;
    if (reset < 0) {
        return NULL;
    }
    if (!gstat_on) {
        Py_RETURN_NONE;
    }
    static const char *names[K_KINDS] = {"wait", "nowait", "send"};
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    for (int k = 0; k < K_KINDS; k++) {
        gstat_t *g = &gstats[k];
        PyObject *v = Py_BuildValue("[LLLLLL]", g->n, g->call_ns, g->wait_ns,
                                    g->wait_max, g->over1, g->over5);
        if (v == NULL || PyDict_SetItemString(d, names[k], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    if (reset) {
        memset(gstats, 0, sizeof(gstats));
    }
    return d;
}

/*
 * One recv call's memory, in one block: the message headers, the iovecs,
 * the source addresses, then the datagram buffers.  Freed blocks go to a
 * free list of POOL_MAX (changed only with the GIL held), so a read-ahead
 * that finds nothing (most of an idle receiver's calls) allocates nothing.
 */
typedef struct {
    void *mem;
    size_t cap;
} block_t;

static block_t pool[POOL_MAX];
static int pool_len = 0;

static void *
block_take(size_t need, size_t *cap)
{
    for (int i = pool_len - 1; i >= 0; i--) {
        if (pool[i].cap >= need) {
            void *mem = pool[i].mem;
            *cap = pool[i].cap;
            pool[i] = pool[--pool_len];
            return mem;
        }
    }
    *cap = need;
    return PyMem_Malloc(need);
}

static void
block_give(void *mem, size_t cap)
{
    if (mem == NULL) {
        return;
    }
    if (pool_len < POOL_MAX) {
        pool[pool_len].mem = mem;
        pool[pool_len].cap = cap;
        pool_len++;
        return;
    }
    /* full: keep the larger blocks (a reader's usual size stays served) */
    int small = 0;
    for (int i = 1; i < POOL_MAX; i++) {
        if (pool[i].cap < pool[small].cap) {
            small = i;
        }
    }
    if (pool[small].cap < cap) {
        PyMem_Free(pool[small].mem);
        pool[small].mem = mem;
        pool[small].cap = cap;
    } else {
        PyMem_Free(mem);
    }
}

static PyObject *
raise_errno(int err)
{
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int
as_fd(PyObject *obj, int *fd)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < -0x7fffffffL || v > 0x7fffffffL) { /* -1 (a closed socket): the call says EBADF */
        PyErr_Format(PyExc_ValueError, "fd must be a file descriptor, not %ld", v);
        return -1;
    }
    *fd = (int)v;
    return 0;
}

PyDoc_STRVAR(recv_doc,
             "recv(fd, size, batch, want, keylen, out, peer, cache, resolve, wait=0, /) -> None\n\n"
             "Append up to want (datagram, address) pairs read with recvmmsg to out;\n"
             "with a true wait the first read blocks until a datagram arrives.");

static PyObject *
u_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 9 && nargs != 10) {
        PyErr_Format(PyExc_TypeError, "recv expects 9 or 10 arguments, got %zd", nargs);
        return NULL;
    }
    int wait = 0;
    if (nargs == 10) {
        wait = PyObject_IsTrue(args[9]);
        if (wait < 0) {
            return NULL;
        }
    }
    int fd;
    if (as_fd(args[0], &fd) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    Py_ssize_t batch = PyLong_AsSsize_t(args[2]);
    Py_ssize_t want = PyLong_AsSsize_t(args[3]);
    Py_ssize_t keylen = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (size < 1 || size > (1 << 20)) {
        PyErr_Format(PyExc_ValueError, "size must be 1 to 1048576, not %zd", size);
        return NULL;
    }
    if (batch < 1 || batch > RECV_BATCH_MAX) {
        PyErr_Format(PyExc_ValueError, "batch must be 1 to 1024, not %zd", batch);
        return NULL;
    }
    if (keylen < 0 || keylen > NAME_MAX_LEN) {
        PyErr_Format(PyExc_ValueError, "keylen must be 0 to 28, not %zd", keylen);
        return NULL;
    }
    PyObject *out = args[5], *peer = args[6], *cache = args[7], *resolve = args[8];
    if (peer == Py_None) {
        if (!PyDict_Check(cache)) {
            PyErr_SetString(PyExc_TypeError, "cache must be a dict");
            return NULL;
        }
        if (!PyCallable_Check(resolve)) {
            PyErr_SetString(PyExc_TypeError, "resolve must be callable");
            return NULL;
        }
        if (keylen == 0) {
            PyErr_SetString(PyExc_ValueError, "keylen must be positive when peer is None");
            return NULL;
        }
    }
    if (want <= 0) {
        Py_RETURN_NONE;
    }
    PyObject *append = NULL;
    int is_list = PyList_CheckExact(out);
    if (!is_list) {
        append = PyObject_GetAttrString(out, "append");
        if (append == NULL) {
            return NULL;
        }
    }
    Py_ssize_t most = batch < want ? batch : want;
    /* headers, iovecs and names first (each a multiple of 4 bytes per
       datagram, the first two of 8), the datagram buffers last */
    size_t cap, need = (size_t)most * (sizeof(struct mmsghdr) + sizeof(struct iovec) +
                                      NAME_MAX_LEN + (size_t)size);
    char *mem = block_take(need, &cap);
    PyObject *result = NULL;
    PyObject *last_addr = NULL; /* (see last_name below) */
    if (mem == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    struct mmsghdr *msgs = (struct mmsghdr *)mem; /* set below */
    struct iovec *iovs = (struct iovec *)(msgs + most);
    char *names = (char *)(iovs + most);
    char *buf = names + (size_t)most * NAME_MAX_LEN;
    int flags = wait ? MSG_WAITFORONE : MSG_DONTWAIT;
    /* the last source and its address object: a burst from one peer (a
       session's window) looks its address up once, not once per datagram */
    char last_name[NAME_MAX_LEN];
    for (;;) {
        int n = (int)(most < want ? most : want);
        for (int i = 0; i < n; i++) {
            iovs[i].iov_base = buf + (size_t)i * (size_t)size;
            iovs[i].iov_len = (size_t)size;
            memset(&msgs[i].msg_hdr, 0, sizeof(struct msghdr));
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (peer == Py_None) {
                msgs[i].msg_hdr.msg_name = names + (size_t)i * NAME_MAX_LEN;
                msgs[i].msg_hdr.msg_namelen = NAME_MAX_LEN;
            }
        }
        int r, err = 0;
        PyThreadState *save = PyEval_SaveThread();
        long long t0 = gstat_on ? now_ns() : 0, t1 = 0;
        r = recvmmsg(fd, msgs, (unsigned)n, flags, NULL);
        if (r < 0) {
            err = errno;
        }
        if (gstat_on) {
            t1 = now_ns();
        }
        PyEval_RestoreThread(save);
        if (gstat_on) {
            gstat_note((flags & MSG_WAITFORONE) ? K_WAIT : K_NOWAIT, t0, t1, now_ns());
        }
        if (r <= 0) {
            if (r == 0 || err == EAGAIN || err == EWOULDBLOCK) {
                break;
            }
            raise_errno(err);
            goto done;
        }
        for (int i = 0; i < r; i++) {
            PyObject *data = PyBytes_FromStringAndSize(iovs[i].iov_base, msgs[i].msg_len);
            if (data == NULL) {
                goto done;
            }
            PyObject *addr;
            if (peer != Py_None) {
                addr = peer;
                Py_INCREF(addr);
            } else if (last_addr != NULL &&
                       memcmp(names + (size_t)i * NAME_MAX_LEN, last_name, (size_t)keylen) == 0) {
                addr = last_addr; /* what the cache gave for the same source just before */
                Py_INCREF(addr);
            } else {
                PyObject *key = PyBytes_FromStringAndSize(names + (size_t)i * NAME_MAX_LEN,
                                                          keylen);
                if (key == NULL) {
                    Py_DECREF(data);
                    goto done;
                }
                addr = PyDict_GetItemWithError(cache, key); /* borrowed */
                if (addr != NULL) {
                    Py_INCREF(addr);
                } else if (PyErr_Occurred()) {
                    addr = NULL;
                } else {
                    addr = PyObject_CallOneArg(resolve, key);
                }
                Py_DECREF(key);
                if (addr == NULL) {
                    Py_DECREF(data);
                    goto done;
                }
                memcpy(last_name, names + (size_t)i * NAME_MAX_LEN, (size_t)keylen);
                Py_INCREF(addr);
                Py_XSETREF(last_addr, addr);
            }
            PyObject *pair = PyTuple_New(2);
            if (pair == NULL) {
                Py_DECREF(data);
                Py_DECREF(addr);
                goto done;
            }
            PyTuple_SET_ITEM(pair, 0, data);
            PyTuple_SET_ITEM(pair, 1, addr);
            int bad;
            if (is_list) {
                bad = PyList_Append(out, pair);
            } else {
                PyObject *ok = PyObject_CallOneArg(append, pair);
                bad = ok == NULL;
                Py_XDECREF(ok);
            }
            Py_DECREF(pair);
            if (bad) {
                goto done;
            }
        }
        if (r < n || r >= want) {
            break; /* the kernel had no more, or out is full */
        }
        want -= r;
        flags = MSG_DONTWAIT; /* only the first read waits */
    }
    result = Py_None;
    Py_INCREF(result);
done:
    block_give(mem, cap);
    Py_XDECREF(append);
    Py_XDECREF(last_addr);
    return result;
}

static int
skip_errno(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == ECONNREFUSED || err == EINTR;
}

/* Point a C sockaddr at the bytes ``name`` (checked), or NULL for None. */
static int
name_of(PyObject *name, void **ptr, socklen_t *len, int none_ok)
{
    if (name == Py_None && none_ok) {
        *ptr = NULL;
        *len = 0;
        return 0;
    }
    if (!PyBytes_Check(name) || PyBytes_GET_SIZE(name) < 16 ||
        PyBytes_GET_SIZE(name) > NAME_MAX_LEN) {
        PyErr_SetString(PyExc_TypeError, none_ok ? "name must be None or a C sockaddr of 16 to 28 bytes"
                                : "names must hold C sockaddrs of 16 to 28 bytes");
        return -1;
    }
    *ptr = PyBytes_AS_STRING(name);
    *len = (socklen_t)PyBytes_GET_SIZE(name);
    return 0;
}

/*
 * The shared sender: packets to name (names NULL) or to names[i].  Sets
 * flags[i] when flags is not NULL; counts what went in *sent / *nbytes.
 * Returns -1 with an exception set on bad arguments, else 0.
 */
static int
send_all(int fd, PyObject *packets, PyObject *name, PyObject *names, char *flags,
         Py_ssize_t *sent, Py_ssize_t *nbytes)
{
    struct mmsghdr msgs[CHUNK];
    struct iovec iovs[CHUNK];
    Py_buffer views[CHUNK];
    Py_ssize_t total = PySequence_Fast_GET_SIZE(packets);
    PyObject **items = PySequence_Fast_ITEMS(packets);
    PyObject **dests = names != NULL ? PySequence_Fast_ITEMS(names) : NULL;
    void *one = NULL;
    socklen_t onelen = 0;
    if (dests == NULL && name_of(name, &one, &onelen, 1) < 0) {
        return -1;
    }
    for (Py_ssize_t start = 0; start < total; start += CHUNK) {
        if (start > 0) {
            /* the GIL was released for the chunk before: another thread may
               have resized a list passed in; never read past its new end */
            if (PySequence_Fast_GET_SIZE(packets) < total) {
                total = PySequence_Fast_GET_SIZE(packets);
            }
            if (names != NULL && PySequence_Fast_GET_SIZE(names) < total) {
                total = PySequence_Fast_GET_SIZE(names);
            }
            if (start >= total) {
                break;
            }
            items = PySequence_Fast_ITEMS(packets);
            dests = names != NULL ? PySequence_Fast_ITEMS(names) : NULL;
        }
        int n = (int)(total - start < CHUNK ? total - start : CHUNK);
        int held = 0, bad = 0;
        for (int i = 0; i < n; i++) {
            memset(&msgs[i], 0, sizeof(msgs[i]));
            if (PyObject_GetBuffer(items[start + i], &views[i], PyBUF_SIMPLE) < 0) {
                bad = 1;
                break;
            }
            held++;
            iovs[i].iov_base = views[i].buf;
            iovs[i].iov_len = (size_t)views[i].len;
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (dests != NULL) {
                if (name_of(dests[start + i], &msgs[i].msg_hdr.msg_name,
                            &msgs[i].msg_hdr.msg_namelen, 0) < 0) {
                    bad = 1;
                    break;
                }
            } else {
                msgs[i].msg_hdr.msg_name = one;
                msgs[i].msg_hdr.msg_namelen = onelen;
            }
        }
        if (bad) {
            for (int i = 0; i < held; i++) {
                PyBuffer_Release(&views[i]);
            }
            return -1;
        }
        int done = 0, quit = 0;
        PyThreadState *save = PyEval_SaveThread();
        long long t0 = gstat_on ? now_ns() : 0;
        while (done < n) {
            int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            if (r > 0) {
                for (int i = done; i < done + r; i++) {
                    *nbytes += (Py_ssize_t)iovs[i].iov_len;
                    if (flags != NULL) {
                        flags[start + i] = 1;
                    }
                }
                *sent += r;
                done += r;
            } else if (r < 0 && skip_errno(errno)) {
                done++; /* this datagram was refused: kcp-go ignores it */
            } else {
                quit = 1; /* socket closed under us, or worse: give up */
                break;
            }
        }
        long long t1 = gstat_on ? now_ns() : 0;
        PyEval_RestoreThread(save);
        if (gstat_on) {
            gstat_note(K_SEND, t0, t1, now_ns());
        }
        for (int i = 0; i < n; i++) {
            PyBuffer_Release(&views[i]);
        }
        if (quit) {
            break;
        }
    }
    return 0;
}

PyDoc_STRVAR(send_doc, "send(fd, packets, name, /) -> (datagrams sent, bytes sent)\n\n"
                       "sendmmsg packets to the C sockaddr name (None: the connected peer).");

/* The two senders' shared arguments: fd and packets (a new reference to a
   fast sequence).  Returns -1 with an exception set. */
static int
send_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, int *fd,
          PyObject **packets)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s expects 3 arguments, got %zd", fname, nargs);
        return -1;
    }
    if (as_fd(args[0], fd) < 0) {
        return -1;
    }
    *packets = PySequence_Fast(args[1], "packets must be a sequence of bytes");
    return *packets == NULL ? -1 : 0;
}

static PyObject *
u_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    int fd;
    PyObject *packets;
    if (send_args("send", args, nargs, &fd, &packets) < 0) {
        return NULL;
    }
    Py_ssize_t sent = 0, nbytes = 0;
    int rc = send_all(fd, packets, args[2], NULL, NULL, &sent, &nbytes);
    Py_DECREF(packets);
    if (rc < 0) {
        return NULL;
    }
    return Py_BuildValue("(nn)", sent, nbytes);
}

PyDoc_STRVAR(send_each_doc,
             "send_each(fd, packets, names, /) -> bytearray\n\n"
             "sendmmsg packets[i] to the C sockaddr names[i] (names None: connected);\n"
             "one flag per datagram back (1: sent).");

static PyObject *
u_send_each(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    int fd;
    PyObject *packets;
    if (send_args("send_each", args, nargs, &fd, &packets) < 0) {
        return NULL;
    }
    PyObject *names = NULL;
    if (args[2] != Py_None) {
        names = PySequence_Fast(args[2], "names must be a sequence of C sockaddrs");
        if (names == NULL) {
            Py_DECREF(packets);
            return NULL;
        }
        if (PySequence_Fast_GET_SIZE(names) != PySequence_Fast_GET_SIZE(packets)) {
            PyErr_SetString(PyExc_ValueError, "names must be as long as packets");
            Py_DECREF(packets);
            Py_DECREF(names);
            return NULL;
        }
    }
    PyObject *flags = PyByteArray_FromStringAndSize(NULL, PySequence_Fast_GET_SIZE(packets));
    Py_ssize_t sent = 0, nbytes = 0;
    int rc = -1;
    if (flags != NULL) {
        memset(PyByteArray_AS_STRING(flags), 0, (size_t)PyByteArray_GET_SIZE(flags));
        rc = send_all(fd, packets, Py_None, names, PyByteArray_AS_STRING(flags), &sent,
                      &nbytes);
    }
    Py_DECREF(packets);
    Py_XDECREF(names);
    if (rc < 0) {
        Py_XDECREF(flags);
        return NULL;
    }
    return flags;
}

PyDoc_STRVAR(send_now_doc,
             "send_now(fd, packet, name, /) -> int\n\n"
             "Send one datagram without waiting and without releasing the GIL: bytes sent,\n"
             "-1 if it would block, -2 if refused (ECONNREFUSED, EINTR), -3 on another error.");

static PyObject *
u_send_now(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "send_now expects 3 arguments, got %zd", nargs);
        return NULL;
    }
    int fd;
    if (as_fd(args[0], &fd) < 0) {
        return NULL;
    }
    void *name;
    socklen_t namelen;
    if (name_of(args[2], &name, &namelen, 1) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    /* MSG_DONTWAIT: a datagram the kernel takes at once costs a few
       microseconds, less than handing the GIL to another thread and waiting
       to get it back; one that would wait is left to the caller's
       GIL-releasing send */
    ssize_t r = sendto(fd, view.buf, (size_t)view.len, MSG_DONTWAIT, name, namelen);
    int err = r < 0 ? errno : 0;
    PyBuffer_Release(&view);
    if (r >= 0) {
        return PyLong_FromSsize_t((Py_ssize_t)r);
    }
    if (err == EAGAIN || err == EWOULDBLOCK) {
        return PyLong_FromLong(-1);
    }
    return PyLong_FromLong(skip_errno(err) ? -2 : -3);
}

PyDoc_STRVAR(send_to_doc,
             "send_to(fd, packets, remotes, cache, resolve, /) -> bytearray or None\n\n"
             "send_each to addresses: remotes[i]'s C sockaddr is cache[remotes[i]] or\n"
             "resolve(remotes[i]); None (nothing sent) if one resolves to None.");

static PyObject *
u_send_to(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "send_to expects 5 arguments, got %zd", nargs);
        return NULL;
    }
    int fd;
    PyObject *packets;
    if (send_args("send_to", args, 3, &fd, &packets) < 0) {
        return NULL;
    }
    PyObject *cache = args[3], *resolve = args[4];
    if (!PyDict_Check(cache)) {
        PyErr_SetString(PyExc_TypeError, "cache must be a dict");
        Py_DECREF(packets);
        return NULL;
    }
    PyObject *remotes = PySequence_Fast(args[2], "remotes must be a sequence of addresses");
    if (remotes == NULL) {
        Py_DECREF(packets);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(packets);
    PyObject *result = NULL, *names = NULL;
    if (PySequence_Fast_GET_SIZE(remotes) != n) {
        PyErr_SetString(PyExc_ValueError, "remotes must be as long as packets");
        goto done;
    }
    /* the names, each a new reference (resolve may empty the cache) */
    names = PyList_New(n);
    if (names == NULL) {
        goto done;
    }
    PyObject *last = NULL, *name = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* (resolve runs Python code: read the item again each time) */
        if (i >= PySequence_Fast_GET_SIZE(remotes)) {
            PyErr_SetString(PyExc_ValueError, "remotes changed size");
            goto done;
        }
        PyObject *remote = PySequence_Fast_ITEMS(remotes)[i];
        if (remote != last || name == NULL) { /* a gather's runs share one address */
            name = PyDict_GetItemWithError(cache, remote); /* borrowed */
            if (name != NULL) {
                Py_INCREF(name);
            } else if (PyErr_Occurred()) {
                goto done;
            } else {
                Py_INCREF(remote);
                name = PyObject_CallOneArg(resolve, remote);
                Py_DECREF(remote);
                if (name == NULL) {
                    goto done;
                }
            }
            if (name == Py_None) {
                Py_DECREF(name);
                result = Py_None; /* not a numeric address: the caller's loop sends */
                Py_INCREF(result);
                goto done;
            }
            PyList_SET_ITEM(names, i, name); /* takes the new reference */
            last = remote;
        } else {
            Py_INCREF(name);
            PyList_SET_ITEM(names, i, name);
        }
    }
    PyObject *flags = PyByteArray_FromStringAndSize(NULL, n);
    if (flags == NULL) {
        goto done;
    }
    memset(PyByteArray_AS_STRING(flags), 0, (size_t)n);
    Py_ssize_t sent = 0, nbytes = 0;
    if (send_all(fd, packets, Py_None, names, PyByteArray_AS_STRING(flags), &sent, &nbytes) < 0) {
        Py_DECREF(flags);
        goto done;
    }
    result = flags;
done:
    Py_DECREF(packets);
    Py_DECREF(remotes);
    Py_XDECREF(names);
    return result;
}

PyDoc_STRVAR(gather_doc,
             "gather(buffer, pos, parts, skip, drop, /) -> bool\n\n"
             "Copy parts (a bytes object, or a list of them) one after the other into\n"
             "buffer from offset pos on, the first from its byte skip on, without the\n"
             "last drop bytes of the last.  False (nothing written) when buffer is\n"
             "not a writable C-contiguous buffer (a strided view: the caller copies).");

static PyObject *
u_gather(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "gather(buffer, pos, parts, skip, drop)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t skip = PyLong_AsSsize_t(args[3]);
    Py_ssize_t drop = PyLong_AsSsize_t(args[4]);
    if ((pos == -1 || skip == -1 || drop == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (pos < 0 || skip < 0 || drop < 0) {
        PyErr_SetString(PyExc_ValueError, "gather: negative pos, skip or drop");
        return NULL;
    }
    PyObject *parts = args[2];
    PyObject *const *items;
    Py_ssize_t count;
    if (PyList_Check(parts)) {
        items = ((PyListObject *)parts)->ob_item;
        count = PyList_GET_SIZE(parts);
    } else if (PyBytes_CheckExact(parts)) {
        items = &args[2];
        count = 1;
    } else {
        PyErr_SetString(PyExc_TypeError, "gather: parts must be bytes or a list of bytes");
        return NULL;
    }
    /* the size first: nothing is written unless everything fits */
    Py_ssize_t n = -skip - drop;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyBytes_CheckExact(items[i])) {
            PyErr_SetString(PyExc_TypeError, "gather: parts must be bytes");
            return NULL;
        }
        n += PyBytes_GET_SIZE(items[i]);
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "gather: skip and drop exceed the parts");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
            return NULL;
        }
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    if (pos > view.len || n > view.len - pos) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "gather: the buffer is too small");
        return NULL;
    }
    char *out = (char *)view.buf + pos;
    Py_ssize_t left = n;
    for (Py_ssize_t i = 0; i < count && left > 0; i++) {
        const char *src = PyBytes_AS_STRING(items[i]);
        Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
        if (skip) {
            Py_ssize_t s = skip < len ? skip : len;
            src += s;
            len -= s;
            skip -= s;
        }
        if (len > left) {
            len = left;
        }
        memcpy(out, src, (size_t)len);
        out += len;
        left -= len;
    }
    PyBuffer_Release(&view);
    Py_RETURN_TRUE;
}

static PyMethodDef u_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))u_recv, METH_FASTCALL, recv_doc},
    {"send_now", (PyCFunction)(void (*)(void))u_send_now, METH_FASTCALL, send_now_doc},
    {"send", (PyCFunction)(void (*)(void))u_send, METH_FASTCALL, send_doc},
    {"send_each", (PyCFunction)(void (*)(void))u_send_each, METH_FASTCALL, send_each_doc},
    {"send_to", (PyCFunction)(void (*)(void))u_send_to, METH_FASTCALL, send_to_doc},
    {"gather", (PyCFunction)(void (*)(void))u_gather, METH_FASTCALL, gather_doc},
    {"gil_stats", (PyCFunction)(void (*)(void))u_gil_stats, METH_FASTCALL, gil_stats_doc},
    {NULL, NULL, 0, NULL},
};
#else
static PyMethodDef u_methods[] = {
    {NULL, NULL, 0, NULL},
};
#endif

PyDoc_STRVAR(module_doc, "recvmmsg/sendmmsg batches for kcpsock._mmsg (Linux), and gather:\n"
                          "received payloads copied into a reader's buffer (kcpsock.session).");

static struct PyModuleDef u_module = {
    PyModuleDef_HEAD_INIT, "kcpsock._udpio", module_doc, 0, u_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__udpio(void)
{
#ifdef __linux__
    const char *e = getenv("KCPSOCK_UDPIO_GILSTAT");
    gstat_on = e != NULL && *e && strcmp(e, "0") != 0;
    return PyModule_Create(&u_module);
#else
    PyErr_SetString(PyExc_ImportError, "kcpsock._udpio is Linux only");
    return NULL;
#endif
}
