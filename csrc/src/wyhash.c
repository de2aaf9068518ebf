/* SPDX-License-Identifier: MIT */
/* The protocol checksum: wyhash "final version 3" (default secret, full
 * 64x64->128 multiply, WYHASH_CONDOM 1), written from its description. */
#include <string.h>

#include "tiga.h"
#include "internal.h"

static const uint64_t S0 = UINT64_C(0xa0761d6478bd642f);
static const uint64_t S1 = UINT64_C(0xe7037ed1a0b428db);
static const uint64_t S2 = UINT64_C(0x8ebc6af09c88c6e3);
static const uint64_t S3 = UINT64_C(0x589965cc75374cc3);

/* The 64x64->128 multiply, folded: the compiler's 128-bit integers where it
 * has them (gcc, clang, mingw), MSVC's intrinsic on x64, else four 32-bit
 * products. */
#if defined(_MSC_VER) && !defined(__clang__) && defined(_M_X64)
#include <intrin.h>
#endif
static inline uint64_t mix(uint64_t x, uint64_t y)
{
#if defined(__SIZEOF_INT128__)
    __uint128_t r = (__uint128_t)x * y;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#elif defined(_MSC_VER) && defined(_M_X64)
    uint64_t hi, lo = _umul128(x, y, &hi);
    return lo ^ hi;
#else
    uint64_t xl = (uint32_t)x, xh = x >> 32, yl = (uint32_t)y, yh = y >> 32;
    uint64_t ll = xl * yl, lh = xl * yh, hl = xh * yl, hh = xh * yh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

static inline uint64_t r8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t r4(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* One 48-byte block into the three lanes. */
static inline void block(uint64_t *seed, uint64_t *seed1, uint64_t *seed2, const uint8_t *p)
{
    *seed = mix(r8(p) ^ S1, r8(p + 8) ^ *seed);
    *seed1 = mix(r8(p + 16) ^ S2, r8(p + 24) ^ *seed1);
    *seed2 = mix(r8(p + 32) ^ S3, r8(p + 40) ^ *seed2);
}

/* The last i (16 < i <= 48 after the blocks, or any i > 16) bytes at p of an
 * n-byte key: 16-byte steps, then its last 16 bytes. */
static inline uint64_t finish(const uint8_t *p, size_t i, size_t n, uint64_t seed)
{
    while (i > 16) {
        seed = mix(r8(p) ^ S1, r8(p + 8) ^ seed);
        i -= 16;
        p += 16;
    }
    return mix(S1 ^ n, mix(r8(p + i - 16) ^ S1, r8(p + i - 8) ^ seed));
}

uint64_t tiga_wyhash(const void *key, size_t n, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *)key;
    seed ^= S0;
    if (n > 16) {
        size_t i = n;
        if (i > 48) {
            uint64_t seed1 = seed, seed2 = seed;
            do {
                block(&seed, &seed1, &seed2, p);
                p += 48;
                i -= 48;
            } while (i > 48);
            seed ^= seed1 ^ seed2;
        }
        return finish(p, i, n, seed);
    }
    uint64_t a, b;
    if (n >= 4) {
        size_t k = (n >> 3) << 2;
        a = (r4(p) << 32) | r4(p + k);
        b = (r4(p + n - 4) << 32) | r4(p + n - 4 - k);
    } else if (n > 0) {
        a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
        b = 0;
    } else {
        a = b = 0;
    }
    return mix(S1 ^ n, mix(a ^ S1, b ^ seed));
}

/* wyhash(base, n, 0) where base[from..n) are the n - from bytes at `a`, which
 * are also stored at `b` as they are hashed: one pass for a copy and its
 * checksum.  One of a, b is base + from (a writer hashes its payload while it
 * copies the new part into the mapping; a reader hashes what it copies out of
 * the mapping), so the finish reads base. */
uint64_t tiga_wyhash_tee(const uint8_t *base, size_t n, size_t from, const uint8_t *a,
                         uint8_t *b)
{
    if (n <= 64) {
        if (n > from)
            memmove(b, a, n - from);
        return tiga_wyhash(base, n, 0);
    }
    uint64_t seed = S0, seed1 = S0, seed2 = S0;
    size_t o = 0;
    /* the blocks before the copied part, then the one where it starts */
    for (; n - o > 48 && o < from; o += 48) {
        const uint8_t *p = base + o;
        if (o + 48 > from)
            memmove(b, a, o + 48 - from);
        block(&seed, &seed1, &seed2, p);
    }
    if (n - o > 48) { /* then copied blocks only: o >= from */
        const uint8_t *s = a + (o - from);
        uint8_t *d = b + (o - from);
        for (; n - o > 48; o += 48, s += 48, d += 48) {
            block(&seed, &seed1, &seed2, s);
            memcpy(d, s, 48);
        }
    }
    size_t lo = o > from ? o : from;
    memmove(b + (lo - from), a + (lo - from), n - lo);
    return finish(base + o, n - o, n, seed ^ seed1 ^ seed2);
}
