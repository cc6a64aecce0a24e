/*
 * kcpsock._gfsimd: GF(2^8) multiply-accumulate over whole buffers, for the
 * Reed-Solomon parity of kcpsock.gf256 / kcpsock.fec.
 *
 * The field is klauspost/reedsolomon's (and so kcp-go's): GF(2^8) reduced by
 * x^8 + x^4 + x^3 + x^2 + 1 (0x11D), generator 2.  kcpsock.gf256 holds the
 * same tables in Python; the tests compare this module with them byte for
 * byte.
 *
 * Multiplying a byte x by a constant c is linear over GF(2), so
 *     c * x = c * (x & 0x0F)  ^  c * (x & 0xF0)
 * and each half takes one of 16 values: two 16-entry tables per coefficient
 * (NIB[c], built once at import) and a byte shuffle (SSSE3 pshufb, AVX2
 * vpshufb) multiply 16 or 32 bytes at a time.  The kernel is chosen at import
 * from what the CPU supports (__builtin_cpu_supports); the scalar kernel (a
 * 64 KiB product table) runs anywhere and does the tails.  GFNI's gf2p8mulb
 * is not used: it reduces by the AES polynomial 0x11B.
 *
 * Functions (see _gfsimd.pyi for the Python signatures):
 *     mul_acc(dst, src, coef)            dst[:len(src)] ^= coef * src
 *     encode(shards, coefs, length, skip=0, sized=False)
 *                                        -> the p output shards of a group
 *     backend() / _set_backend(name)     which kernel runs (tests pin each)
 *
 * Nothing is written outside the buffers the caller hands in; every length
 * is checked before any byte is touched.  The GIL is held throughout (a
 * group's parity is microseconds of work, and the buffers stay exported, so
 * a bytearray cannot be resized under us anyway).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define GF_X86 1
#include <immintrin.h>
#else
#define GF_X86 0
#endif

#define GF_POLY 0x11D

/* MUL[c][x] = c * x. */
static uint8_t MUL[256][256];
/* NIB[c][0..15] = c * x, NIB[c][16..31] = c * (x << 4), for x in 0..15. */
static uint8_t NIB[256][32] __attribute__((aligned(32)));

static void
build_tables(void)
{
    uint8_t exp[510];
    uint8_t log[256];
    unsigned x = 1;
    for (int i = 0; i < 255; i++) {
        exp[i] = (uint8_t)x;
        log[x] = (uint8_t)i;
        x <<= 1;
        if (x & 0x100)
            x ^= GF_POLY;
    }
    for (int i = 255; i < 510; i++)
        exp[i] = exp[i - 255];
    log[0] = 0;
    for (int c = 0; c < 256; c++) {
        for (int v = 0; v < 256; v++)
            MUL[c][v] = (c == 0 || v == 0) ? 0 : exp[log[c] + log[v]];
        for (int v = 0; v < 16; v++) {
            NIB[c][v] = MUL[c][v];
            NIB[c][16 + v] = MUL[c][v << 4];
        }
    }
}

/*
 * A fold: dst[r][0..n) ^= coef[r] * src[0..n) for r in 0..rows, with every
 * coef[r] non-zero.  The rows are distinct buffers, none overlapping src
 * (the callers make sure of it).
 */
typedef void (*fold_fn)(uint8_t *const *dst, const uint8_t *coef, size_t rows,
                        const uint8_t *src, size_t n);

/* 8 bytes of src multiplied through table t, as a word in memory order
 * (byte k of the word comes from byte k of src, whatever the endianness:
 * the same shifts take it apart and put it together). */
static inline uint64_t
mul_word(const uint8_t *t, uint64_t s)
{
    return (uint64_t)t[s & 0xFF] | (uint64_t)t[(s >> 8) & 0xFF] << 8 |
           (uint64_t)t[(s >> 16) & 0xFF] << 16 | (uint64_t)t[(s >> 24) & 0xFF] << 24 |
           (uint64_t)t[(s >> 32) & 0xFF] << 32 | (uint64_t)t[(s >> 40) & 0xFF] << 40 |
           (uint64_t)t[(s >> 48) & 0xFF] << 48 | (uint64_t)t[s >> 56] << 56;
}

/* The portable kernel (and every kernel's tail): one table lookup per byte,
 * a word of 8 bytes read, added and written at a time. */
static void
fold_range_scalar(uint8_t *const *dst, const uint8_t *coef, size_t rows,
                  const uint8_t *src, size_t start, size_t n)
{
    for (size_t r = 0; r < rows; r++) {
        uint8_t *d = dst[r];
        const uint8_t *t = MUL[coef[r]];
        size_t i = start;
        for (; i + 8 <= n; i += 8) {
            uint64_t w, x;
            memcpy(&w, src + i, 8);
            memcpy(&x, d + i, 8);
            x ^= coef[r] == 1 ? w : mul_word(t, w);
            memcpy(d + i, &x, 8);
        }
        for (; i < n; i++)
            d[i] ^= t[src[i]];
    }
}

static void
fold_scalar(uint8_t *const *dst, const uint8_t *coef, size_t rows, const uint8_t *src,
            size_t n)
{
    fold_range_scalar(dst, coef, rows, src, 0, n);
}

#if GF_X86

/* Up to 4 rows per pass over src: the nibbles of each 16/32 source bytes are
 * split once and multiplied into every row (the tables stay in registers). */
#define GF_BLOCK 4

__attribute__((target("ssse3"))) static inline void
fold_block_ssse3(uint8_t *const *dst, const uint8_t *coef, size_t k, const uint8_t *src,
                 size_t n)
{
    const __m128i mask = _mm_set1_epi8(0x0F);
    __m128i lo[GF_BLOCK], hi[GF_BLOCK];
    for (size_t j = 0; j < k; j++) {
        lo[j] = _mm_load_si128((const __m128i *)NIB[coef[j]]);
        hi[j] = _mm_load_si128((const __m128i *)(NIB[coef[j]] + 16));
    }
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i s = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i l = _mm_and_si128(s, mask);
        __m128i h = _mm_and_si128(_mm_srli_epi64(s, 4), mask);
        for (size_t j = 0; j < k; j++) {
            __m128i p = _mm_xor_si128(_mm_shuffle_epi8(lo[j], l), _mm_shuffle_epi8(hi[j], h));
            __m128i *d = (__m128i *)(dst[j] + i);
            _mm_storeu_si128(d, _mm_xor_si128(_mm_loadu_si128(d), p));
        }
    }
    if (i < n)
        fold_range_scalar(dst, coef, k, src, i, n);
}

__attribute__((target("ssse3"))) static void
fold_ssse3(uint8_t *const *dst, const uint8_t *coef, size_t rows, const uint8_t *src,
           size_t n)
{
    size_t r = 0;
    /* constant block sizes let the compiler keep the tables in registers */
    for (; r + GF_BLOCK <= rows; r += GF_BLOCK)
        fold_block_ssse3(dst + r, coef + r, GF_BLOCK, src, n);
    switch (rows - r) {
    case 3:
        fold_block_ssse3(dst + r, coef + r, 3, src, n);
        break;
    case 2:
        fold_block_ssse3(dst + r, coef + r, 2, src, n);
        break;
    case 1:
        fold_block_ssse3(dst + r, coef + r, 1, src, n);
        break;
    default:
        break;
    }
}

__attribute__((target("avx2"))) static inline void
fold_block_avx2(uint8_t *const *dst, const uint8_t *coef, size_t k, const uint8_t *src,
                size_t n)
{
    const __m256i mask = _mm256_set1_epi8(0x0F);
    __m256i lo[GF_BLOCK], hi[GF_BLOCK];
    for (size_t j = 0; j < k; j++) {
        lo[j] = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)NIB[coef[j]]));
        hi[j] = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)(NIB[coef[j]] + 16)));
    }
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i s = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i l = _mm256_and_si256(s, mask);
        __m256i h = _mm256_and_si256(_mm256_srli_epi64(s, 4), mask);
        for (size_t j = 0; j < k; j++) {
            __m256i p = _mm256_xor_si256(_mm256_shuffle_epi8(lo[j], l),
                                         _mm256_shuffle_epi8(hi[j], h));
            __m256i *d = (__m256i *)(dst[j] + i);
            _mm256_storeu_si256(d, _mm256_xor_si256(_mm256_loadu_si256(d), p));
        }
    }
    if (i + 16 <= n) { /* one 16-byte step, then the scalar tail */
        const __m128i m = _mm_set1_epi8(0x0F);
        __m128i s = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i l = _mm_and_si128(s, m);
        __m128i h = _mm_and_si128(_mm_srli_epi64(s, 4), m);
        for (size_t j = 0; j < k; j++) {
            __m128i p = _mm_xor_si128(_mm_shuffle_epi8(_mm256_castsi256_si128(lo[j]), l),
                                      _mm_shuffle_epi8(_mm256_castsi256_si128(hi[j]), h));
            __m128i *d = (__m128i *)(dst[j] + i);
            _mm_storeu_si128(d, _mm_xor_si128(_mm_loadu_si128(d), p));
        }
        i += 16;
    }
    if (i < n)
        fold_range_scalar(dst, coef, k, src, i, n);
}

__attribute__((target("avx2"))) static void
fold_avx2(uint8_t *const *dst, const uint8_t *coef, size_t rows, const uint8_t *src,
          size_t n)
{
    size_t r = 0;
    /* constant block sizes let the compiler keep the tables in registers */
    for (; r + GF_BLOCK <= rows; r += GF_BLOCK)
        fold_block_avx2(dst + r, coef + r, GF_BLOCK, src, n);
    switch (rows - r) {
    case 3:
        fold_block_avx2(dst + r, coef + r, 3, src, n);
        break;
    case 2:
        fold_block_avx2(dst + r, coef + r, 2, src, n);
        break;
    case 1:
        fold_block_avx2(dst + r, coef + r, 1, src, n);
        break;
    default:
        break;
    }
}

#endif /* GF_X86 */

struct backend {
    const char *name;
    fold_fn fold;
};

static const struct backend BACKENDS[] = {
#if GF_X86
    {"avx2", fold_avx2},
    {"ssse3", fold_ssse3},
#endif
    {"scalar", fold_scalar},
};
#define N_BACKENDS (sizeof(BACKENDS) / sizeof(BACKENDS[0]))

static const struct backend *current = &BACKENDS[N_BACKENDS - 1];

static int
backend_supported(const struct backend *b)
{
#if GF_X86
    if (strcmp(b->name, "avx2") == 0)
        return __builtin_cpu_supports("avx2");
    if (strcmp(b->name, "ssse3") == 0)
        return __builtin_cpu_supports("ssse3");
#endif
    (void)b;
    return 1;
}

/* ------------------------------------------------------------------ */
/* argument helpers                                                    */

/* An int in [lo, hi] for argument `name`; -1 with an exception set if not. */
static Py_ssize_t
int_arg(PyObject *obj, const char *name, Py_ssize_t lo, Py_ssize_t hi)
{
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t v = PyLong_AsSsize_t(obj);
    if (v == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        v = lo - 1; /* out of range either way */
    }
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s must be in %zd..%zd, got %R", name, lo, hi, obj);
        return -1;
    }
    return v;
}

static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a %sbytes-like object, got %.100s", name,
                     writable ? "writable " : "", Py_TYPE(obj)->tp_name);
        return -1;
    }
    return 0;
}

static int
check_nargs(const char *fname, Py_ssize_t nargs, Py_ssize_t lo, Py_ssize_t hi)
{
    if (nargs < lo || nargs > hi) {
        if (lo == hi)
            PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fname, lo,
                         nargs);
        else
            PyErr_Format(PyExc_TypeError, "%s() takes %zd to %zd arguments (%zd given)", fname,
                         lo, hi, nargs);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* mul_acc(dst, src, coef)                                             */

PyDoc_STRVAR(mul_acc_doc,
             "mul_acc(dst, src, coef, /)\n--\n\n"
             "Add coef * src to the start of dst, bytewise in GF(2^8) (0x11D):\n"
             "dst[i] ^= coef * src[i] for i < len(src).\n\n"
             "dst: a writable bytes-like object at least as long as src.\n"
             "src: a bytes-like object (it may be dst itself).\n"
             "coef: the field element, 0..255.\n\n"
             "Raises TypeError (not bytes-like, dst read-only, coef not an int) or\n"
             "ValueError (dst shorter than src, coef out of range).");

static PyObject *
gf_mul_acc(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (check_nargs("mul_acc", nargs, 3, 3) < 0)
        return NULL;
    Py_ssize_t coef = int_arg(args[2], "coef", 0, 255);
    if (coef < 0)
        return NULL;
    Py_buffer dst, src;
    if (get_buffer(args[0], &dst, 1, "dst") < 0)
        return NULL;
    if (get_buffer(args[1], &src, 0, "src") < 0) {
        PyBuffer_Release(&dst);
        return NULL;
    }
    PyObject *result = NULL;
    if (dst.len < src.len) {
        PyErr_Format(PyExc_ValueError, "dst must be at least as long as src (%zd < %zd bytes)",
                     dst.len, src.len);
        goto done;
    }
    if (coef != 0 && src.len > 0) {
        uint8_t *d = (uint8_t *)dst.buf;
        const uint8_t *s = (const uint8_t *)src.buf;
        uint8_t *copy = NULL;
        size_t n = (size_t)src.len;
        if (s != d && s < d + n && d < s + n) {
            /* partial overlap: multiply a copy, as if src were read first */
            copy = (uint8_t *)PyMem_Malloc(n);
            if (copy == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            memcpy(copy, s, n);
            s = copy;
        }
        uint8_t c = (uint8_t)coef;
        current->fold(&d, &c, 1, s, n);
        PyMem_Free(copy);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

/* ------------------------------------------------------------------ */
/* encode(shards, coefs, length, skip=0, sized=False)                  */

PyDoc_STRVAR(
    encode_doc,
    "encode(shards, coefs, length, skip=0, sized=False, /)\n--\n\n"
    "The p output shards of a linear code over GF(2^8) (0x11D) in one call:\n"
    "out[j] = XOR over i of coefs[j * d + i] * shard[i], d = len(shards),\n"
    "p = len(coefs) // d, every shard zero-padded to `length` bytes.\n\n"
    "shards: a list or tuple of d >= 1 bytes-like objects.\n"
    "coefs: bytes-like, p * d coefficients, row j (output j) after row j - 1.\n"
    "length: the output length; every shard must fit in it.\n"
    "skip: leading bytes of every buffer that are not part of its shard\n"
    "    (e.g. a packet header); each buffer must be at least that long.\n"
    "sized: if true, shard i is kcp-go's FEC data shard of buffer i: the\n"
    "    2-byte little-endian size field (2 + its length) and then the buffer.\n\n"
    "Returns a list of p bytes objects of `length` bytes.\n\n"
    "Raises TypeError (wrong types) or ValueError (coefs not a multiple of d,\n"
    "a shard longer than length or shorter than skip, a size over 65535).");

/* Most shards per call held on the stack (more: heap). */
#define STACK_SHARDS 32

static PyObject *
gf_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (check_nargs("encode", nargs, 3, 5) < 0)
        return NULL;
    if (PyObject_CheckBuffer(args[0]) || PyUnicode_Check(args[0])) {
        PyErr_Format(PyExc_TypeError,
                     "shards must be a sequence of bytes-like objects, got %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    Py_ssize_t length = int_arg(args[2], "length", 0, PY_SSIZE_T_MAX);
    if (length < 0)
        return NULL;
    Py_ssize_t skip = 0;
    if (nargs > 3) {
        skip = int_arg(args[3], "skip", 0, PY_SSIZE_T_MAX);
        if (skip < 0)
            return NULL;
    }
    int sized = 0;
    if (nargs > 4) {
        if (!PyBool_Check(args[4])) {
            PyErr_Format(PyExc_TypeError, "sized must be a bool, got %.100s",
                         Py_TYPE(args[4])->tp_name);
            return NULL;
        }
        sized = args[4] == Py_True;
    }
    /* a tuple of the shards (a list's own tuple copy: taking a buffer may run
     * code that changes a list) */
    PyObject *shards = PySequence_Tuple(args[0]);
    if (shards == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         "shards must be a sequence of bytes-like objects, got %.100s",
                         Py_TYPE(args[0])->tp_name);
        }
        return NULL;
    }
    Py_ssize_t d = PyTuple_GET_SIZE(shards);
    if (d < 1) {
        PyErr_SetString(PyExc_ValueError, "shards must hold at least one shard");
        Py_DECREF(shards);
        return NULL;
    }
    Py_buffer coefs;
    if (get_buffer(args[1], &coefs, 0, "coefs") < 0) {
        Py_DECREF(shards);
        return NULL;
    }
    Py_ssize_t p = coefs.len / d;
    if (p < 1 || coefs.len % d != 0) {
        PyErr_Format(PyExc_ValueError,
                     "coefs must hold p * len(shards) bytes with p >= 1 (len(shards) = %zd, "
                     "got %zd bytes)",
                     d, coefs.len);
        PyBuffer_Release(&coefs);
        Py_DECREF(shards);
        return NULL;
    }

    Py_buffer stack_views[STACK_SHARDS];
    Py_buffer *views = stack_views;
    uint8_t *rows_dst_stack[STACK_SHARDS];
    uint8_t **outs = rows_dst_stack; /* p output pointers */
    uint8_t **dst = NULL;            /* the non-zero rows of one column */
    uint8_t *col = NULL;
    Py_ssize_t got = 0; /* buffers acquired */
    PyObject *result = NULL;
    const uint8_t *cf = (const uint8_t *)coefs.buf;

    if (d > STACK_SHARDS) {
        views = (Py_buffer *)PyMem_Malloc(sizeof(Py_buffer) * (size_t)d);
        if (views == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    if (p > STACK_SHARDS) {
        outs = (uint8_t **)PyMem_Malloc(sizeof(uint8_t *) * (size_t)p);
        if (outs == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    dst = (uint8_t **)PyMem_Malloc(sizeof(uint8_t *) * (size_t)p);
    col = (uint8_t *)PyMem_Malloc((size_t)p);
    if (dst == NULL || col == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    /* every check before any output exists */
    for (; got < d; got++) {
        PyObject *item = PyTuple_GET_ITEM(shards, got);
        if (PyObject_GetBuffer(item, &views[got], PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "shards[%zd] must be a bytes-like object, got %.100s",
                         got, Py_TYPE(item)->tp_name);
            goto fail;
        }
        Py_ssize_t n = views[got].len;
        if (n < skip) {
            PyErr_Format(PyExc_ValueError, "shards[%zd] is shorter than skip (%zd < %zd bytes)",
                         got, n, skip);
            got++;
            goto fail;
        }
        Py_ssize_t shard_len = n - skip + (sized ? 2 : 0);
        if (sized && shard_len > 0xFFFF) {
            PyErr_Format(PyExc_ValueError,
                         "shards[%zd] is too long for the size field (%zd > 65535 bytes)", got,
                         shard_len);
            got++;
            goto fail;
        }
        if (shard_len > length) {
            PyErr_Format(PyExc_ValueError, "shards[%zd] is longer than length (%zd > %zd bytes)",
                         got, shard_len, length);
            got++;
            goto fail;
        }
    }
    result = PyList_New(p);
    if (result == NULL)
        goto fail;
    for (Py_ssize_t j = 0; j < p; j++) {
        PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
        if (out == NULL)
            goto fail;
        PyList_SET_ITEM(result, j, out);
        outs[j] = (uint8_t *)PyBytes_AS_STRING(out);
        memset(outs[j], 0, (size_t)length);
    }
    fold_fn fold = current->fold;
    size_t off = sized ? 2 : 0;
    for (Py_ssize_t i = 0; i < d; i++) {
        size_t rows = 0;
        for (Py_ssize_t j = 0; j < p; j++) {
            uint8_t c = cf[j * d + i];
            if (c) {
                dst[rows] = outs[j] + off;
                col[rows] = c;
                rows++;
            }
        }
        if (rows == 0)
            continue;
        size_t n = (size_t)(views[i].len - skip);
        if (sized) {
            size_t size = n + 2;
            uint8_t field[2] = {(uint8_t)(size & 0xFF), (uint8_t)(size >> 8)};
            for (size_t r = 0; r < rows; r++)
                dst[r] -= 2;
            fold_scalar(dst, col, rows, field, 2);
            for (size_t r = 0; r < rows; r++)
                dst[r] += 2;
        }
        if (n)
            fold(dst, col, rows, (const uint8_t *)views[i].buf + skip, n);
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    if (views != stack_views)
        PyMem_Free(views);
    if (outs != rows_dst_stack)
        PyMem_Free(outs);
    PyMem_Free(dst);
    PyMem_Free(col);
    PyBuffer_Release(&coefs);
    Py_DECREF(shards);
    return result;
}

/* ------------------------------------------------------------------ */
/* backend() / _set_backend(name)                                      */

PyDoc_STRVAR(backend_doc, "backend()\n--\n\n"
                          "The kernel in use: 'avx2', 'ssse3' or 'scalar'.");

static PyObject *
gf_backend(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyUnicode_FromString(current->name);
}

PyDoc_STRVAR(backends_doc, "backends()\n--\n\n"
                           "The kernels this CPU can run, fastest first (tests run each).");

static PyObject *
gf_backends(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (!backend_supported(&BACKENDS[i]))
            continue;
        PyObject *name = PyUnicode_FromString(BACKENDS[i].name);
        if (name == NULL || PyList_Append(out, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(name);
    }
    PyObject *tuple = PyList_AsTuple(out);
    Py_DECREF(out);
    return tuple;
}

PyDoc_STRVAR(set_backend_doc,
             "_set_backend(name, /)\n--\n\n"
             "Use kernel `name` (one of backends()) from now on; returns the previous\n"
             "name.  For tests: every kernel gives the same bytes.");

static PyObject *
gf_set_backend(PyObject *module, PyObject *name)
{
    (void)module;
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be a str, got %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (strcmp(BACKENDS[i].name, s) == 0) {
            if (!backend_supported(&BACKENDS[i])) {
                PyErr_Format(PyExc_ValueError, "name: this CPU cannot run the %s kernel", s);
                return NULL;
            }
            PyObject *old = PyUnicode_FromString(current->name);
            if (old != NULL)
                current = &BACKENDS[i];
            return old;
        }
    }
    PyErr_Format(PyExc_ValueError, "name must be one of backends(), got %R", name);
    return NULL;
}

static PyMethodDef gf_methods[] = {
    {"mul_acc", (PyCFunction)(void (*)(void))gf_mul_acc, METH_FASTCALL, mul_acc_doc},
    {"encode", (PyCFunction)(void (*)(void))gf_encode, METH_FASTCALL, encode_doc},
    {"backend", gf_backend, METH_NOARGS, backend_doc},
    {"backends", gf_backends, METH_NOARGS, backends_doc},
    {"_set_backend", gf_set_backend, METH_O, set_backend_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
             "GF(2^8) multiply-accumulate (polynomial 0x11D) over whole buffers, with\n"
             "SSSE3/AVX2 byte shuffles where the CPU has them: the Reed-Solomon parity\n"
             "of kcpsock.gf256 and kcpsock.fec.  Optional: kcpsock falls back to\n"
             "bytearray.translate when this extension is missing.");

static struct PyModuleDef gf_module = {
    PyModuleDef_HEAD_INIT, "kcpsock._gfsimd", module_doc, 0, gf_methods,
    NULL,                  NULL,              NULL,       NULL,
};

PyMODINIT_FUNC
PyInit__gfsimd(void)
{
    build_tables();
#if GF_X86
    __builtin_cpu_init();
#endif
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (backend_supported(&BACKENDS[i])) {
            current = &BACKENDS[i];
            break;
        }
    }
    return PyModule_Create(&gf_module);
}
