/*
 * kcpsock._cfbc: kcp-go's packet CFB (fixed IV, restarted per packet) and the
 * classic crypto header (16-byte nonce + CRC-32), in C.
 *
 * The block cipher is pycryptodome's own: the object keeps a reference to a
 * pycryptodome ECB cipher object and calls the encrypt function of the
 * BlockBase structure that object owns (pycryptodome src/block_base.h: the
 * first members are the encrypt and decrypt function pointers, a destructor
 * and the block length; an ECB object's state *is* that structure).  Only the
 * encryption direction is used (CFB needs no other).  The one exception: AES
 * CFB encryption on a CPU with AES-NI, given the key, runs on this file's own
 * AES-NI rounds (section "AES-NI": eight packets' chains in registers), after
 * checking at construction that they encrypt as the ECB object does.
 *
 * What this file adds over pycryptodome's raw_cfb.c:
 *   - the XOR is done 16 bytes at a time (SSE2; else a word of 8), not a byte at a time;
 *   - open() XORs the payload straight into the result bytes (no copy of it);
 *   - E(IV), the first keystream block of every packet, is computed once;
 *   - a batch encrypts up to LANES packets side by side: the next block of
 *     every packet of a group goes to the block cipher in one call, so the
 *     serial CFB chains of different packets share a call (and AES-NI's
 *     pipeline);
 *   - decryption has no chain: all keystream blocks of a packet are E(the
 *     previous ciphertext block), one call for the whole packet;
 *   - seal() writes nonce + CRC-32 (zlib) + head + body of each packet into
 *     the result bytes and encrypts it there: one copy per packet, one call
 *     per batch; open()/open_many() decrypt and check the CRC.
 *
 * Safety: every argument is checked (TypeError/ValueError naming it), every
 * write stays within a buffer this code allocated with the size it computed.
 * The BlockBase pointer is read from the ECB object given at construction,
 * whose reference is kept for the life of this object, and the construction
 * checks it: block_len equal to the IV's length (8 or 16) and E(IV) through
 * the pointer equal to the object's own ecb.encrypt(IV).  The Python side
 * (kcpsock.crypt) then compares whole packets with its other paths before it
 * uses this object at all.
 *
 * The GIL is held throughout (each call is a few microseconds per packet; see
 * kcpsock/_fastcrypt.py on why handing it over would cost more).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

/* pycryptodome's BlockBase (src/block_base.h), 3.x and 4.x. */
struct BlockBase;
typedef int (*CipherOp)(const struct BlockBase *state, const uint8_t *in, uint8_t *out,
                        size_t data_len);
typedef struct BlockBase {
    CipherOp encrypt;
    CipherOp decrypt;
    int (*destructor)(struct BlockBase *state);
    size_t block_len;
} BlockBase;

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

#define MAX_BLOCK 16
#define LANES 16
#define NONCE_SIZE 16
#define CRC_SIZE 4
#define HEADER_SIZE (NONCE_SIZE + CRC_SIZE)
/* FEC headers that seal() writes itself (an int head: fec_head) */
#define PARITY_TAG (1ULL << 32)
#define FEC_TYPE_DATA 0xF1
#define FEC_TYPE_PARITY 0xF2
#define FEC_DATA_HEAD 8
#define FEC_PARITY_HEAD 6
/* open()'s keystream buffer holds a packet of up to this size (+ MAX_BLOCK); larger
 * packets get a heap buffer */
#define STACK_PACKET 2048
#define MAX_ROUNDS 14

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* the pycryptodome ECB object whose state bb is */
    const BlockBase *bb;
    size_t b;
    uint8_t iv[MAX_BLOCK];
    uint8_t k0[MAX_BLOCK]; /* E(iv): the first keystream block of every packet */
    /* AES through this file's own AES-NI code (see "AES-NI" below): the rounds
     * (10, 12 or 14) and the expanded key; rounds 0: pycryptodome's cipher */
    int rounds;
    uint8_t rk[(MAX_ROUNDS + 1) * 16];
} CFBObject;

/* ---- small helpers ------------------------------------------------------ */

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline void
xor_into(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(dst + i));
        __m128i k = _mm_loadu_si128((const __m128i *)(src + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t a, k;
        memcpy(&a, dst + i, 8);
        memcpy(&k, src + i, 8);
        a ^= k;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++)
        dst[i] ^= src[i];
}

/* dst = a ^ b over n bytes (dst may be a or b) */
static inline void
xor3(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 32 <= n; i += 32) {
        __m128i x0 = _mm_loadu_si128((const __m128i *)(a + i));
        __m128i x1 = _mm_loadu_si128((const __m128i *)(a + i + 16));
        __m128i y0 = _mm_loadu_si128((const __m128i *)(b + i));
        __m128i y1 = _mm_loadu_si128((const __m128i *)(b + i + 16));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(x0, y0));
        _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(x1, y1));
    }
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(a + i));
        __m128i y = _mm_loadu_si128((const __m128i *)(b + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(x, y));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        x ^= y;
        memcpy(dst + i, &x, 8);
    }
    for (; i < n; i++)
        dst[i] = a[i] ^ b[i];
}

/* ---- CRC-32 (IEEE, zlib's) ------------------------------------------------ */

static uint32_t
crc_zlib(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n > 0) {
        uInt chunk = n > 0x40000000u ? 0x40000000u : (uInt)n;
        crc = (uint32_t)crc32((uLong)crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CLMUL_CRC 1
#include <immintrin.h>

/*
 * CRC-32 by carry-less multiplication (x86 PCLMULQDQ), for 32 bytes and more.
 *
 * The message is a polynomial over GF(2) (bit-reflected: byte 0's low bit is
 * the highest power).  A 128-bit block X followed by D more bits is
 * congruent, modulo the CRC polynomial P, to X_lo * (x^(D+64) mod P) +
 * X_hi * (x^D mod P) at the position of the block D bits further on (each
 * product at most 96 bits), so XORing that into the later block "folds" X
 * away without changing the remainder.  Four registers fold 64 bytes at a
 * time (D = 512), are combined into one (D = 128), which folds the rest of
 * the whole blocks.  The last 128-bit value plus the tail bytes (< 16) is a
 * short message with the same remainder as the whole one; zlib finishes it.
 * zlib's pre- and post-inversion: ~crc is XORed into the first 4 bytes, and
 * zlib, started from 0xFFFFFFFF (register 0), inverts the result.
 *
 * The constants are x^n mod P, bit-reflected and shifted left by one bit (the
 * reflected product of two 64-bit values is one bit short): n = 512 + 32 and
 * 512 - 32 for the four-way fold, 128 + 32 and 128 - 32 for the single one.
 */
__attribute__((target("pclmul,sse2"))) static uint32_t
crc_clmul(uint32_t crc, const uint8_t *p, size_t n)
{
    const __m128i k512 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
    const __m128i k128 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
    __m128i x0, x1, x2, x3;
    uint8_t last[32];
    size_t tail;

#define FOLD(x, k, next)                                                                      \
    _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128((x), (k), 0x00),                        \
                                _mm_clmulepi64_si128((x), (k), 0x11)),                       \
                  (next))

    x0 = _mm_loadu_si128((const __m128i *)p);
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
    if (n >= 64) {
        x1 = _mm_loadu_si128((const __m128i *)(p + 16));
        x2 = _mm_loadu_si128((const __m128i *)(p + 32));
        x3 = _mm_loadu_si128((const __m128i *)(p + 48));
        p += 64;
        n -= 64;
        while (n >= 64) {
            x0 = FOLD(x0, k512, _mm_loadu_si128((const __m128i *)p));
            x1 = FOLD(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
            x2 = FOLD(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
            x3 = FOLD(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
            p += 64;
            n -= 64;
        }
        x0 = FOLD(x0, k128, x1);
        x0 = FOLD(x0, k128, x2);
        x0 = FOLD(x0, k128, x3);
    } else {
        p += 16;
        n -= 16;
    }
    while (n >= 16) {
        x0 = FOLD(x0, k128, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
#undef FOLD
    tail = n;
    _mm_storeu_si128((__m128i *)last, x0);
    memcpy(last + 16, p, tail);
    return (uint32_t)crc32(0xFFFFFFFFuL, last, (uInt)(16 + tail));
}

static int have_clmul;
#endif

/* zlib's crc32(crc, p, n) */
static uint32_t
crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
#ifdef HAVE_CLMUL_CRC
    if (have_clmul && n >= 32)
        return crc_clmul(crc, p, n);
#endif
    return crc_zlib(crc, p, n);
}

static inline void
put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t
get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static int
cipher_failed(int rc)
{
    PyErr_Format(PyExc_ValueError, "pycryptodome's block cipher failed (error %d)", rc);
    return -1;
}

/*
 * A read-only view of a bytes-like object.  bytes are read directly; any
 * other object goes through the buffer protocol (C-contiguous).  On failure
 * a TypeError names `what` (and `index` when >= 0).
 */
typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
    Py_buffer view;
    int has_view;
} ByteView;

static int
view_get(PyObject *obj, ByteView *v, const char *what, Py_ssize_t index)
{
    v->has_view = 0;
    if (PyBytes_CheckExact(obj)) {
        v->p = (const uint8_t *)PyBytes_AS_STRING(obj);
        v->n = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, &v->view, PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        if (index >= 0)
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be a contiguous bytes-like object, not %.100s",
                         what, index, Py_TYPE(obj)->tp_name);
        else
            PyErr_Format(PyExc_TypeError, "%s must be a contiguous bytes-like object, not %.100s",
                         what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    v->has_view = 1;
    v->p = (const uint8_t *)v->view.buf;
    v->n = v->view.len;
    return 0;
}

static void
view_release(ByteView *v)
{
    if (v->has_view) {
        PyBuffer_Release(&v->view);
        v->has_view = 0;
    }
}

/* ---- AES-NI ------------------------------------------------------------------
 *
 * For AES (the cipher of nearly every kcp-go deployment) this file can run the
 * block cipher itself: the key is expanded here (FIPS-197's schedule; SubWord
 * is AESENCLAST of the word in all four columns, where ShiftRows changes
 * nothing) and each block is AESENC'd in registers.  That lets CFB encryption
 * run 8 packets' chains interleaved with no call and no copy per block, and
 * decryption XOR each keystream block straight into its output.  Used only
 * when the CPU has AES-NI and the expanded key encrypts several blocks exactly
 * as pycryptodome's ECB object does (checked at construction; otherwise the
 * object keeps calling pycryptodome).
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AESNI 1
#include <wmmintrin.h>
#define AESNI_FN __attribute__((target("aes,sse2")))

static int have_aesni;

AESNI_FN static uint32_t
aes_sub_word(uint32_t w)
{
    __m128i x = _mm_aesenclast_si128(_mm_set1_epi32((int)w), _mm_setzero_si128());
    return (uint32_t)_mm_cvtsi128_si32(x);
}

/* FIPS-197 KeyExpansion of an nk-word key (4, 6 or 8) into rk; returns the rounds. */
AESNI_FN static int
aes_expand(const uint8_t *key, int nk, uint8_t *rk)
{
    uint32_t w[4 * (MAX_ROUNDS + 1)];
    int nr = nk + 6, total = 4 * (nr + 1), i;
    uint32_t rcon = 1;

    for (i = 0; i < nk; i++)
        w[i] = get_u32le(key + 4 * i);
    for (i = nk; i < total; i++) {
        uint32_t t = w[i - 1];
        if (i % nk == 0) {
            /* RotWord (bytes 1 2 3 0), SubWord, Rcon into byte 0 */
            t = aes_sub_word((t >> 8) | (t << 24)) ^ rcon;
            rcon = (rcon << 1) ^ ((rcon & 0x80) ? 0x11b : 0);
        }
        else if (nk > 6 && i % nk == 4)
            t = aes_sub_word(t);
        w[i] = w[i - nk] ^ t;
    }
    for (i = 0; i < total; i++)
        put_u32le(rk + 4 * i, w[i]);
    return nr;
}

#define RK(r) _mm_loadu_si128((const __m128i *)(self->rk + 16 * (r)))

/*
 * CFB encryption of W chains side by side (W a constant: 1, 2, 4 or 8), for
 * `rounds` whole blocks each: lane i's next block at data[i] + pos[i] is
 * XORed with E(the block before it), in place, and pos[i] moves past them.
 * The W running blocks stay in registers; the rounds are unrolled (nr is 10,
 * 12 or 14), each round key read once per round for all W.
 */
AESNI_FN static ALWAYS_INLINE void
aes_cfb_w(const CFBObject *self, uint8_t *const *data, size_t *pos, size_t rounds, const int W)
{
    const int nr = self->rounds;
    __m128i c[8];
    uint8_t *p[8];
    size_t n;
    int i, r;

    for (i = 0; i < W; i++) {
        p[i] = data[i] + pos[i];
        pos[i] += 16 * rounds;
        c[i] = _mm_loadu_si128((const __m128i *)(p[i] - 16));
    }
    for (n = 0; n < rounds; n++) {
        __m128i key = RK(0);
        for (i = 0; i < W; i++)
            c[i] = _mm_xor_si128(c[i], key);
#pragma GCC unroll 14
        for (r = 1; r < MAX_ROUNDS; r++) {
            if (r < nr) {
                key = RK(r);
                for (i = 0; i < W; i++)
                    c[i] = _mm_aesenc_si128(c[i], key);
            }
        }
        key = RK(nr);
        for (i = 0; i < W; i++) {
            c[i] = _mm_xor_si128(_mm_aesenclast_si128(c[i], key),
                                 _mm_loadu_si128((const __m128i *)p[i]));
            _mm_storeu_si128((__m128i *)p[i], c[i]);
            p[i] += 16;
        }
    }
}

AESNI_FN static void
aes_cfb8(const CFBObject *self, uint8_t *const *data, size_t *pos, size_t rounds)
{
    aes_cfb_w(self, data, pos, rounds, 8);
}

AESNI_FN static void
aes_cfb4(const CFBObject *self, uint8_t *const *data, size_t *pos, size_t rounds)
{
    aes_cfb_w(self, data, pos, rounds, 4);
}

AESNI_FN static void
aes_cfb2(const CFBObject *self, uint8_t *const *data, size_t *pos, size_t rounds)
{
    aes_cfb_w(self, data, pos, rounds, 2);
}

AESNI_FN static void
aes_cfb1(const CFBObject *self, uint8_t *const *data, size_t *pos, size_t rounds)
{
    aes_cfb_w(self, data, pos, rounds, 1);
}

/* k lanes (k <= LANES) in groups of 8, then 4, 2, 1: no lane computed for nothing. */
AESNI_FN static void
aes_cfb_lanes(const CFBObject *self, uint8_t *const *data, size_t *pos, int k, size_t rounds)
{
    int i = 0;
    for (; k - i >= 8; i += 8)
        aes_cfb8(self, data + i, pos + i, rounds);
    if (k - i >= 4) {
        aes_cfb4(self, data + i, pos + i, rounds);
        i += 4;
    }
    if (k - i >= 2) {
        aes_cfb2(self, data + i, pos + i, rounds);
        i += 2;
    }
    if (k - i >= 1)
        aes_cfb1(self, data + i, pos + i, rounds);
}
#undef RK
#endif

/*
 * pycryptodome's block cipher over `len` bytes (whole blocks) of `in` into
 * `out` (ECB).  (For whole-packet ECB runs it is as fast as aes_ecb: only the
 * CFB chains of encryption run on this file's AES.)
 */
static int
block_encrypt(const CFBObject *self, const uint8_t *in, uint8_t *out, size_t len)
{
    int rc = self->bb->encrypt(self->bb, in, out, len);
    return rc != 0 ? cipher_failed(rc) : 0;
}

/* ---- the CFB cores -------------------------------------------------------- */

/*
 * The rounds in which all k lanes have a whole block left: one block cipher
 * call for the k blocks (inputs: each lane's previous ciphertext block, kept
 * in fb), then each block XORed a word at a time and copied to fb for the
 * next round.  B is a constant (8 or 16) in each inlined copy.
 */
static ALWAYS_INLINE int
full_rounds(const BlockBase *bb, uint8_t *const *data, size_t *pos, int k, size_t rounds,
            uint8_t *fb, uint8_t *ks, const size_t B)
{
    size_t r;
    int i, rc;
    for (i = 0; i < k; i++)
        memcpy(fb + (size_t)i * B, data[i] + pos[i] - B, B);
    for (r = 0; r < rounds; r++) {
        rc = bb->encrypt(bb, fb, ks, (size_t)k * B);
        if (rc != 0)
            return cipher_failed(rc);
        for (i = 0; i < k; i++) {
            uint8_t *p = data[i] + pos[i];
            uint8_t *f = fb + (size_t)i * B;
            const uint8_t *key = ks + (size_t)i * B;
#if defined(__SSE2__)
            if (B == 16) {
                __m128i c = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p),
                                          _mm_loadu_si128((const __m128i *)key));
                _mm_storeu_si128((__m128i *)p, c);
                _mm_storeu_si128((__m128i *)f, c);
                pos[i] += B;
                continue;
            }
#endif
            {
                uint64_t a, x;
                memcpy(&a, p, 8);
                memcpy(&x, key, 8);
                a ^= x;
                memcpy(p, &a, 8);
                memcpy(f, &a, 8);
                if (B == 16) {
                    memcpy(&a, p + 8, 8);
                    memcpy(&x, key + 8, 8);
                    a ^= x;
                    memcpy(p + 8, &a, 8);
                    memcpy(f + 8, &a, 8);
                }
            }
            pos[i] += B;
        }
    }
    return 0;
}

/*
 * Encrypt k packets in place (k <= LANES), kcp-go's CFB with the chain
 * restarted at the IV for each: block 0 is XORed with E(IV), block j with
 * E(ciphertext block j-1); a trailing partial block uses the keystream
 * block's first bytes.  The next block of every unfinished packet goes to
 * the block cipher in one call: first in the rounds where every packet has
 * a whole block left (full_rounds), then packet by packet as they end.
 */
static int
encrypt_lanes(const CFBObject *self, uint8_t *const *data, const size_t *len, int k)
{
    const size_t b = self->b;
    const BlockBase *bb = self->bb;
    uint8_t gather[LANES * MAX_BLOCK];
    uint8_t ks[LANES * MAX_BLOCK];
    size_t pos[LANES];
    size_t rounds = (size_t)-1;
    int idx[LANES];
    int i;

    if (k <= 0)
        return 0;
    if (k > LANES) {
        PyErr_SetString(PyExc_SystemError, "kcpsock._cfbc: more packets than lanes");
        return -1;
    }
    for (i = 0; i < k; i++) {
        size_t r = len[i] < b ? len[i] : b;
        size_t whole;
        xor_into(data[i], self->k0, r);
        pos[i] = r;
        whole = (len[i] - r) / b;
        if (whole < rounds)
            rounds = whole;
    }
    if (rounds > 0) {
        int rc;
#ifdef HAVE_AESNI
        if (self->rounds) {
            aes_cfb_lanes(self, data, pos, k, rounds);
            rc = 0;
        }
        else
#endif
            rc = b == 16 ? full_rounds(bb, data, pos, k, rounds, gather, ks, 16)
                         : full_rounds(bb, data, pos, k, rounds, gather, ks, 8);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        int m = 0, j, rc;
        for (i = 0; i < k; i++) {
            if (pos[i] < len[i]) {
                /* the previous (whole) ciphertext block is the cipher input */
                memcpy(gather + (size_t)m * b, data[i] + pos[i] - b, b);
                idx[m++] = i;
            }
        }
        if (m == 0)
            return 0;
        if (m == 1)
            rc = block_encrypt(self, data[idx[0]] + pos[idx[0]] - b, ks, b);
        else
            rc = block_encrypt(self, gather, ks, (size_t)m * b);
        if (rc != 0)
            return rc;
        for (j = 0; j < m; j++) {
            size_t r;
            i = idx[j];
            r = len[i] - pos[i];
            if (r > b)
                r = b;
            xor_into(data[i] + pos[i], ks + (size_t)j * b, r);
            pos[i] += r;
        }
    }
}

/*
 * Decrypt n bytes of `in` into `out` (distinct buffers, out of n bytes).
 * Keystream block 0 is E(IV); block j >= 1 is E(in block j-1): one call for
 * all the whole blocks, one more for the keystream of a trailing partial one.
 */
static int
decrypt_into(const CFBObject *self, const uint8_t *in, uint8_t *out, size_t n)
{
    const size_t b = self->b;
    size_t whole = n / b; /* whole blocks */
    size_t tail = n - whole * b;
    int rc;

    if (n <= b) {
        xor3(out, in, self->k0, n);
        return 0;
    }
    /* out[b .. whole*b) = E(in[0 .. (whole-1)*b)) */
    if (whole > 1) {
        rc = block_encrypt(self, in, out + b, (whole - 1) * b);
        if (rc != 0)
            return rc;
    }
    memcpy(out, self->k0, b);
    xor_into(out, in, whole * b);
    if (tail) {
        uint8_t ks[MAX_BLOCK];
        rc = block_encrypt(self, in + (whole - 1) * b, ks, b);
        if (rc != 0)
            return rc;
        xor3(out + whole * b, in + whole * b, ks, tail);
    }
    return 0;
}

/* ---- the type --------------------------------------------------------------- */

static PyObject *
CFB_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ecb", "iv", "key", NULL};
    PyObject *ecb = NULL, *state_obj = NULL, *ptr_obj = NULL, *expected = NULL;
    Py_buffer iv = {0}, key = {0};
    CFBObject *self = NULL;
    const BlockBase *bb;
    void *ptr;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oy*|y*:CFB", kwlist, &ecb, &iv, &key))
        return NULL;
    if (iv.len != 8 && iv.len != 16) {
        PyErr_Format(PyExc_ValueError, "iv must be 8 or 16 bytes (the block size), not %zd",
                     iv.len);
        goto fail;
    }
    /* ecb._state.get().value: the BlockBase pointer the ECB object owns */
    state_obj = PyObject_GetAttrString(ecb, "_state");
    if (state_obj != NULL) {
        PyObject *got = PyObject_CallMethod(state_obj, "get", NULL);
        Py_DECREF(state_obj);
        state_obj = got;
    }
    if (state_obj != NULL)
        ptr_obj = PyObject_GetAttrString(state_obj, "value");
    if (ptr_obj == NULL || !PyLong_Check(ptr_obj)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "ecb must be a pycryptodome ECB cipher object (ctypes backend), not %.100s",
                     Py_TYPE(ecb)->tp_name);
        goto fail;
    }
    ptr = PyLong_AsVoidPtr(ptr_obj);
    if (ptr == NULL) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "ecb has no cipher state (NULL pointer)");
        goto fail;
    }
    bb = (const BlockBase *)ptr;
    if (bb->block_len != (size_t)iv.len || bb->encrypt == NULL) {
        PyErr_Format(PyExc_ValueError,
                     "ecb's block size does not match the %zd-byte iv (or its state is not a"
                     " pycryptodome BlockBase)",
                     iv.len);
        goto fail;
    }
    self = (CFBObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto fail;
    Py_INCREF(ecb);
    self->owner = ecb;
    self->bb = bb;
    self->b = (size_t)iv.len;
    memcpy(self->iv, iv.buf, self->b);
    {
        int rc = bb->encrypt(bb, self->iv, self->k0, self->b);
        if (rc != 0) {
            cipher_failed(rc);
            goto fail;
        }
    }
    /* the pointer must act as the object's own public encrypt does */
    expected = PyObject_CallMethod(ecb, "encrypt", "y#", (const char *)self->iv,
                                   (Py_ssize_t)self->b);
    if (expected == NULL)
        goto fail;
    if (!PyBytes_Check(expected) || PyBytes_GET_SIZE(expected) != (Py_ssize_t)self->b ||
        memcmp(PyBytes_AS_STRING(expected), self->k0, self->b) != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "ecb's state pointer does not encrypt as ecb.encrypt does");
        goto fail;
    }
    Py_CLEAR(expected);
#ifdef HAVE_AESNI
    if (have_aesni && self->b == 16 && key.buf != NULL &&
        (key.len == 16 || key.len == 24 || key.len == 32)) {
        /* this file's AES, if its CFB encrypts as through the ECB object's cipher */
        uint8_t mine[8 * 64], theirs[8 * 64];
        uint8_t *pm[8], *pt[8];
        size_t len[8], i;
        int rounds, rc;
        for (i = 0; i < sizeof(mine); i++)
            mine[i] = theirs[i] = (uint8_t)(i * 29 + 11);
        for (i = 0; i < 8; i++) {
            pm[i] = mine + 64 * i;
            pt[i] = theirs + 64 * i;
            len[i] = 40 + 3 * i; /* whole rounds for all, then tails of every lane */
        }
        rounds = aes_expand((const uint8_t *)key.buf, (int)(key.len / 4), self->rk);
        rc = encrypt_lanes(self, pt, len, 8); /* self->rounds is 0: pycryptodome's */
        if (rc < 0)
            goto fail;
        self->rounds = rounds;
        rc = encrypt_lanes(self, pm, len, 8);
        if (rc < 0 || memcmp(mine, theirs, sizeof(mine)) != 0) {
            PyErr_Clear();
            self->rounds = 0;
            memset(self->rk, 0, sizeof(self->rk));
        }
    }
#endif
    Py_XDECREF(state_obj);
    Py_XDECREF(ptr_obj);
    PyBuffer_Release(&iv);
    if (key.obj != NULL)
        PyBuffer_Release(&key);
    return (PyObject *)self;

fail:
    Py_XDECREF(expected);
    Py_XDECREF(state_obj);
    Py_XDECREF(ptr_obj);
    Py_XDECREF(self);
    PyBuffer_Release(&iv);
    if (key.obj != NULL)
        PyBuffer_Release(&key);
    return NULL;
}

static void
CFB_dealloc(CFBObject *self)
{
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
one_arg(Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd argument%s (%zd given)", name, want,
                     want == 1 ? "" : "s", nargs);
        return -1;
    }
    return 0;
}

/* encrypt(data) -> bytes: one packet, kcp-go encrypt */
static PyObject *
CFB_encrypt(CFBObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ByteView v;
    PyObject *out;
    uint8_t *p;
    size_t n;

    if (one_arg(nargs, 1, "encrypt") < 0 || view_get(args[0], &v, "data", -1) < 0)
        return NULL;
    /* allocated empty, then filled: CPython shares the 1-byte bytes objects it
     * makes from data, and this one is written to */
    out = PyBytes_FromStringAndSize(NULL, v.n);
    if (out != NULL)
        memcpy(PyBytes_AS_STRING(out), v.p, (size_t)v.n);
    view_release(&v);
    if (out == NULL)
        return NULL;
    p = (uint8_t *)PyBytes_AS_STRING(out);
    n = (size_t)PyBytes_GET_SIZE(out);
    if (encrypt_lanes(self, &p, &n, 1) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* encrypt_pair(head, body) -> bytes: encrypt(head + body) without the join */
static PyObject *
CFB_encrypt_pair(CFBObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ByteView h, v;
    PyObject *out;
    uint8_t *p;
    size_t n;

    if (one_arg(nargs, 2, "encrypt_pair") < 0 || view_get(args[0], &h, "head", -1) < 0)
        return NULL;
    if (view_get(args[1], &v, "body", -1) < 0) {
        view_release(&h);
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, h.n + v.n);
    if (out != NULL) {
        p = (uint8_t *)PyBytes_AS_STRING(out);
        memcpy(p, h.p, (size_t)h.n);
        memcpy(p + h.n, v.p, (size_t)v.n);
    }
    view_release(&h);
    view_release(&v);
    if (out == NULL)
        return NULL;
    n = (size_t)PyBytes_GET_SIZE(out);
    if (encrypt_lanes(self, &p, &n, 1) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* decrypt(data) -> bytes: one packet, kcp-go decrypt */
static PyObject *
CFB_decrypt(CFBObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ByteView v;
    PyObject *out;

    if (one_arg(nargs, 1, "decrypt") < 0 || view_get(args[0], &v, "data", -1) < 0)
        return NULL;
    out = PyBytes_FromStringAndSize(NULL, v.n);
    if (out != NULL &&
        decrypt_into(self, v.p, (uint8_t *)PyBytes_AS_STRING(out), (size_t)v.n) < 0)
        Py_CLEAR(out);
    view_release(&v);
    return out;
}

/*
 * A tuple of the items of `obj` (named `name` in errors), or TypeError.  A
 * tuple, not the caller's list: it holds a reference to every item while the
 * bytes are read, whatever code a garbage collection might run meanwhile.
 */
static PyObject *
fast_seq(PyObject *obj, const char *name)
{
    PyObject *seq;
    if (PyTuple_CheckExact(obj)) {
        Py_INCREF(obj);
        return obj;
    }
    if (PyList_CheckExact(obj))
        return PyList_AsTuple(obj);
    if (PyBytes_Check(obj) || PyByteArray_Check(obj) || PyUnicode_Check(obj) ||
        PyMemoryView_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of bytes-like objects, not %.100s",
                     name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    seq = PySequence_Tuple(obj);
    if (seq == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of bytes-like objects, not %.100s",
                     name, Py_TYPE(obj)->tp_name);
    }
    return seq;
}

/*
 * An FEC header from its tag (an int head of seal): tag < 2**32 is a data
 * packet's 8-byte header (seqid = tag, type 0xF1, size = 2 + the body's
 * length), PARITY_TAG + seqid a parity packet's 6-byte header (type 0xF2),
 * both little-endian as kcp-go's.  Written into out (8 bytes); returns its
 * length, or -1 with ValueError/TypeError set (a tag out of range, a body
 * too long for the size field).
 */
static Py_ssize_t
fec_head(PyObject *tag_obj, Py_ssize_t body_len, uint8_t *out, Py_ssize_t index)
{
    unsigned long long tag = PyLong_AsUnsignedLongLong(tag_obj);
    if (tag == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        tag = PARITY_TAG << 1; /* out of range below */
    }
    if (tag >= (PARITY_TAG << 1)) {
        PyErr_Format(PyExc_ValueError,
                     "heads[%zd]: an int head must be a seqid (< 2**32), or PARITY_TAG + a seqid",
                     index);
        return -1;
    }
    put_u32le(out, (uint32_t)tag);
    if (tag & PARITY_TAG) {
        out[4] = FEC_TYPE_PARITY;
        out[5] = 0;
        return FEC_PARITY_HEAD;
    }
    if (body_len > 0xFFFF - 2) {
        PyErr_Format(PyExc_ValueError, "bodies[%zd]: %zd bytes, too long for FEC (at most %d)",
                     index, body_len, 0xFFFF - 2);
        return -1;
    }
    out[4] = FEC_TYPE_DATA;
    out[5] = 0;
    out[6] = (uint8_t)((body_len + 2) & 0xFF);
    out[7] = (uint8_t)((body_len + 2) >> 8);
    return FEC_DATA_HEAD;
}

/*
 * seal(nonces, heads, bodies) -> list[bytes]
 *
 * Packet i = encrypt(nonce_i + crc32(head_i + body_i) (u32 little-endian) +
 * head_i + body_i), nonce_i = nonces[16 i : 16 i + 16]: kcp-go's output()
 * for the classic layout.  Packets are encrypted LANES at a time.
 */
static PyObject *
CFB_seal(CFBObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ByteView nv;
    PyObject *heads = NULL, *bodies = NULL, *result = NULL;
    Py_ssize_t count, i, done = 0;
    uint8_t *lane_p[LANES];
    size_t lane_n[LANES];
    int k = 0;

    if (one_arg(nargs, 3, "seal") < 0 || view_get(args[0], &nv, "nonces", -1) < 0)
        return NULL;
    heads = fast_seq(args[1], "heads");
    if (heads == NULL)
        goto done;
    bodies = fast_seq(args[2], "bodies");
    if (bodies == NULL)
        goto done;
    count = PySequence_Fast_GET_SIZE(heads);
    if (PySequence_Fast_GET_SIZE(bodies) != count) {
        PyErr_Format(PyExc_ValueError, "heads and bodies differ in length (%zd and %zd)", count,
                     PySequence_Fast_GET_SIZE(bodies));
        goto done;
    }
    if (nv.n != count * NONCE_SIZE) {
        PyErr_Format(PyExc_ValueError, "nonces must be %zd bytes (16 per packet), not %zd",
                     count * NONCE_SIZE, nv.n);
        goto done;
    }
    result = PyList_New(count);
    if (result == NULL)
        goto done;
    for (i = 0; i < count; i++) {
        ByteView h, v;
        PyObject *out;
        uint8_t *p;
        uint32_t crc;
        size_t n;

        uint8_t fec[FEC_DATA_HEAD];
        PyObject *head = PySequence_Fast_GET_ITEM(heads, i);

        if (PyLong_CheckExact(head)) {
            /* an FEC header given as its tag (see fec_head) */
            if (view_get(PySequence_Fast_GET_ITEM(bodies, i), &v, "bodies", i) < 0)
                goto fail;
            h.has_view = 0;
            h.p = fec;
            h.n = fec_head(head, v.n, fec, i);
            if (h.n < 0) {
                view_release(&v);
                goto fail;
            }
        }
        else {
            if (view_get(head, &h, "heads", i) < 0)
                goto fail;
            if (view_get(PySequence_Fast_GET_ITEM(bodies, i), &v, "bodies", i) < 0) {
                view_release(&h);
                goto fail;
            }
        }
        if (h.n > PY_SSIZE_T_MAX - HEADER_SIZE - v.n) {
            view_release(&h);
            view_release(&v);
            PyErr_SetString(PyExc_OverflowError, "packet too long");
            goto fail;
        }
        n = (size_t)(HEADER_SIZE + h.n + v.n);
        out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
        if (out == NULL) {
            view_release(&h);
            view_release(&v);
            goto fail;
        }
        p = (uint8_t *)PyBytes_AS_STRING(out);
        memcpy(p, nv.p + (size_t)i * NONCE_SIZE, NONCE_SIZE);
        memcpy(p + HEADER_SIZE, h.p, (size_t)h.n);
        memcpy(p + HEADER_SIZE + h.n, v.p, (size_t)v.n);
        view_release(&h);
        view_release(&v);
        crc = crc_update(0, p + HEADER_SIZE, n - HEADER_SIZE);
        put_u32le(p + NONCE_SIZE, crc);
        PyList_SET_ITEM(result, i, out); /* steals; encrypted below, before returning */
        lane_p[k] = p;
        lane_n[k] = n;
        if (++k == LANES) {
            if (encrypt_lanes(self, lane_p, lane_n, k) < 0)
                goto fail;
            done += k;
            k = 0;
        }
    }
    if (k > 0 && encrypt_lanes(self, lane_p, lane_n, k) < 0)
        goto fail;
    (void)done;
    goto done;

fail:
    Py_CLEAR(result);
done:
    view_release(&nv);
    Py_XDECREF(heads);
    Py_XDECREF(bodies);
    return result;
}

/*
 * Open one packet: its keystream into `work` (n + b bytes: E(IV), then E of
 * every ciphertext block, the last partial one's included, in one call), the
 * payload (plaintext after the 20-byte header) XORed straight into the new
 * bytes object, its CRC-32 checked there; None for a bad CRC.  n >= 20 > b.
 */
static PyObject *
open_one(CFBObject *self, const uint8_t *in, size_t n, uint8_t *work)
{
    const size_t b = self->b;
    size_t blocks = (n - 1) / b; /* keystream blocks 1 .. blocks: E(in block 0 .. blocks-1) */
    PyObject *out;
    uint8_t *dst;
    int rc;

    memcpy(work, self->k0, b);
    rc = block_encrypt(self, in, work + b, blocks * b);
    if (rc != 0)
        return NULL;
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n - HEADER_SIZE));
    if (out == NULL)
        return NULL;
    dst = (uint8_t *)PyBytes_AS_STRING(out);
    xor3(dst, in + HEADER_SIZE, work + HEADER_SIZE, n - HEADER_SIZE);
    if (crc_update(0, dst, n - HEADER_SIZE) !=
        (get_u32le(in + NONCE_SIZE) ^ get_u32le(work + NONCE_SIZE))) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

static int
open_length(Py_ssize_t n, const char *what, Py_ssize_t index)
{
    if (n < HEADER_SIZE) {
        if (index >= 0)
            PyErr_Format(PyExc_ValueError,
                         "%s[%zd] is shorter than the 20-byte crypto header (%zd bytes)", what,
                         index, n);
        else
            PyErr_Format(PyExc_ValueError,
                         "%s is shorter than the 20-byte crypto header (%zd bytes)", what, n);
        return -1;
    }
    return 0;
}

/* open(packet) -> bytes | None */
static PyObject *
CFB_open(CFBObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ByteView v;
    PyObject *out;
    uint8_t stack[STACK_PACKET + MAX_BLOCK];
    uint8_t *work = stack;

    if (one_arg(nargs, 1, "open") < 0 || view_get(args[0], &v, "packet", -1) < 0)
        return NULL;
    if (open_length(v.n, "packet", -1) < 0) {
        view_release(&v);
        return NULL;
    }
    if (v.n > STACK_PACKET) {
        work = PyMem_Malloc((size_t)v.n + MAX_BLOCK);
        if (work == NULL) {
            view_release(&v);
            return PyErr_NoMemory();
        }
    }
    out = open_one(self, v.p, (size_t)v.n, work);
    if (work != stack)
        PyMem_Free(work);
    view_release(&v);
    return out;
}

/* open_many(packets, bad=None) -> list[bytes | bad]: `bad` where the CRC does not match */
static PyObject *
CFB_open_many(CFBObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *seq, *result = NULL, *bad = Py_None;
    Py_ssize_t count, i;
    uint8_t stack[STACK_PACKET + MAX_BLOCK];

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "open_many() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 2)
        bad = args[1];
    seq = fast_seq(args[0], "packets");
    if (seq == NULL)
        return NULL;
    count = PySequence_Fast_GET_SIZE(seq);
    result = PyList_New(count);
    if (result == NULL)
        goto done;
    for (i = 0; i < count; i++) {
        ByteView v;
        PyObject *out;
        uint8_t *work = stack;

        if (view_get(PySequence_Fast_GET_ITEM(seq, i), &v, "packets", i) < 0)
            goto fail;
        if (open_length(v.n, "packets", i) < 0) {
            view_release(&v);
            goto fail;
        }
        if (v.n > STACK_PACKET) {
            work = PyMem_Malloc((size_t)v.n + MAX_BLOCK);
            if (work == NULL) {
                view_release(&v);
                PyErr_NoMemory();
                goto fail;
            }
        }
        out = open_one(self, v.p, (size_t)v.n, work);
        if (work != stack)
            PyMem_Free(work);
        view_release(&v);
        if (out == NULL)
            goto fail;
        if (out == Py_None && bad != Py_None) {
            Py_DECREF(out);
            Py_INCREF(bad);
            out = bad;
        }
        PyList_SET_ITEM(result, i, out);
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    Py_DECREF(seq);
    return result;
}

static PyObject *
CFB_get_block_size(CFBObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->b);
}

static PyObject *
CFB_get_aesni(CFBObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->rounds != 0);
}

static PyObject *
CFB_get_ecb(CFBObject *self, void *closure)
{
    (void)closure;
    Py_INCREF(self->owner);
    return self->owner;
}

#define FASTCALL(f) ((PyCFunction)(void (*)(void))(f)), METH_FASTCALL

static PyMethodDef CFB_methods[] = {
    {"encrypt", FASTCALL(CFB_encrypt),
     "encrypt(data, /) -> bytes: one packet, kcp-go's CFB from the fixed IV."},
    {"decrypt", FASTCALL(CFB_decrypt),
     "decrypt(data, /) -> bytes: one packet, kcp-go's CFB from the fixed IV."},
    {"encrypt_pair", FASTCALL(CFB_encrypt_pair),
     "encrypt_pair(head, body, /) -> bytes: encrypt(head + body) without the join."},
    {"seal", FASTCALL(CFB_seal),
     "seal(nonces, heads, bodies, /) -> list[bytes]: packet i is\n"
     "encrypt(nonce_i + crc32(head_i + body_i) as u32 little-endian + head_i + body_i),\n"
     "nonce_i = nonces[16*i:16*i+16] (kcp-go's classic crypto header).  An int head_i is\n"
     "an FEC header's tag: a seqid (< 2**32) for a data packet's 8-byte header (type 0xF1,\n"
     "size 2 + len(body_i)), PARITY_TAG + a seqid for a parity packet's 6-byte header."},
    {"open", FASTCALL(CFB_open),
     "open(packet, /) -> bytes | None: decrypt, check the CRC-32; the bytes after the\n"
     "20-byte header, or None when the CRC does not match."},
    {"open_many", FASTCALL(CFB_open_many),
     "open_many(packets, bad=None, /) -> list[bytes | bad]: open() for each packet, `bad` in\n"
     "place of None (a bad CRC)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef CFB_getset[] = {
    {"block_size", (getter)CFB_get_block_size, NULL, "The block size in bytes (8 or 16).", NULL},
    {"ecb", (getter)CFB_get_ecb, NULL, "The pycryptodome ECB object whose cipher is used.", NULL},
    {"aesni", (getter)CFB_get_aesni, NULL,
     "True if this file's own AES-NI code runs the cipher (AES, the key given, the CPU has\n"
     "AES-NI, and it encrypted test blocks as ecb does); else pycryptodome's cipher is called.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CFBType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kcpsock._cfbc.CFB",
    .tp_basicsize = sizeof(CFBObject),
    .tp_itemsize = 0,
    .tp_dealloc = (destructor)CFB_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "CFB(ecb, iv, key=b''): kcp-go's packet CFB over a pycryptodome ECB object's cipher.\n\n"
              "ecb: a pycryptodome ECB-mode cipher object (ctypes backend); iv: kcp-go's\n"
              "fixed IV cut to the block size (8 or 16 bytes).  The chain restarts at iv\n"
              "for every packet.  key (optional): ecb's key; for AES on a CPU with AES-NI\n"
              "this module then runs the cipher itself (see aesni).  Raises\n"
              "TypeError/ValueError if ecb is not usable.",
    .tp_methods = CFB_methods,
    .tp_getset = CFB_getset,
    .tp_new = CFB_new,
};

static PyObject *
cfbc_crc32(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ByteView v;
    uint32_t crc;
    (void)module;
    if (one_arg(nargs, 1, "crc32") < 0 || view_get(args[0], &v, "data", -1) < 0)
        return NULL;
    crc = crc_update(0, v.p, (size_t)v.n);
    view_release(&v);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef module_methods[] = {
    {"crc32", FASTCALL(cfbc_crc32), "crc32(data, /) -> int: zlib's CRC-32 as this module computes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cfbc_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kcpsock._cfbc",
    .m_doc = "kcp-go's packet CFB and classic crypto header in C, over pycryptodome's block\n"
             "ciphers (see kcpsock/_cfbc.c and kcpsock._fastcrypt).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__cfbc(void)
{
    PyObject *m;
#ifdef HAVE_CLMUL_CRC
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
#endif
#ifdef HAVE_AESNI
    __builtin_cpu_init();
    have_aesni = __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse2");
#endif
    if (PyType_Ready(&CFBType) < 0)
        return NULL;
    m = PyModule_Create(&cfbc_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CFBType);
    if (PyModule_AddObject(m, "CFB", (PyObject *)&CFBType) < 0 ||
        PyModule_AddIntConstant(m, "LANES", LANES) < 0 ||
        PyModule_AddObject(m, "PARITY_TAG", PyLong_FromUnsignedLongLong(PARITY_TAG)) < 0) {
        Py_DECREF(&CFBType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
