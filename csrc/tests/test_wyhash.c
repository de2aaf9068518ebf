/* SPDX-License-Identifier: MIT */
/* The checksum against every vector of the protocol. */
#include "tiga.h"
#include "check.h"
#include "internal.h"

static uint8_t *pat(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 31 + 7) % 251);
    return p;
}

static void test_strings(void)
{
    CHECK(tiga_wyhash("", 0, 0) == UINT64_C(0x42bc986dc5eec4d3));
    CHECK(tiga_wyhash("a", 1, 0) == UINT64_C(0x6cf84e5a2465e867));
    CHECK(tiga_wyhash("abc", 3, 0) == UINT64_C(0xb4808df22d44ffcf));
    CHECK(tiga_wyhash("hello world", 11, 0) == UINT64_C(0x19f24a02fe04c3ca));
}

static void test_patterns(void)
{
    static const struct { size_t n; uint64_t h; } v[] = {
        {1, UINT64_C(0x7bbfc11aa49c3a9d)},     {3, UINT64_C(0x0e72ffb218f9b67b)},
        {4, UINT64_C(0x7ed13a6211403f47)},     {7, UINT64_C(0xd1cae929135a4ee6)},
        {8, UINT64_C(0x37c44317d97e8ddd)},     {15, UINT64_C(0x2a71166c45693566)},
        {16, UINT64_C(0x7df046f3730432ae)},    {17, UINT64_C(0xb887b081abd1b5e0)},
        {31, UINT64_C(0x8a4a9ea97cac46f5)},    {32, UINT64_C(0x23d473a316adc6f6)},
        {47, UINT64_C(0x05c62b5b2a936c39)},    {48, UINT64_C(0x8deb95326e270073)},
        {49, UINT64_C(0x629cf6412e54ea96)},    {63, UINT64_C(0xa0f9cb2c05b58bc4)},
        {64, UINT64_C(0xfecb027ca3d3f54a)},    {96, UINT64_C(0x06a7153b6e0387c0)},
        {97, UINT64_C(0xf87de70efb4de888)},    {100, UINT64_C(0xb839187af2e93e62)},
        {1000, UINT64_C(0xf339858b96c3cba6)},  {4096, UINT64_C(0x87937d4cfb8e7083)},
        {65537, UINT64_C(0x4876cd6afcf1003b)},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t *p = pat(v[i].n);
        uint64_t h = tiga_wyhash(p, v[i].n, 0);
        if (h != v[i].h)
            fprintf(stderr, "pat(%zu): got %016llx\n", v[i].n, (unsigned long long)h);
        CHECK(h == v[i].h);
        free(p);
    }
}

static void test_version_example(void)
{
    /* pat(100) in buffer 1 gives 0xe93e6200000000c9 */
    uint8_t *p = pat(100);
    uint64_t h = tiga_wyhash(p, 100, 0) & 0xFFFFFF;
    uint64_t v = 1 | (UINT64_C(100) << 1) | (h << 40);
    CHECK(v == UINT64_C(0xe93e6200000000c9));
    free(p);
}

/* The hash that copies as it goes: the same sum as copying first and hashing
 * after, and the same bytes copied, for every length around the block sizes
 * and every start of the copied part, in both directions (payload to mapping,
 * mapping to payload). */
static void test_tee(void)
{
    static const size_t lens[] = {0, 1, 16, 17, 48, 49, 64, 65, 96, 97, 100, 143, 144,
                                  145, 200, 1000, 4099};
    uint8_t *src = pat(4200);
    uint8_t *base = malloc(4200), *other = malloc(4200), *want = malloc(4200);
    int bad = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        for (size_t from = 0; from <= n; from += from < 100 ? 1 : 37) {
            for (int dir = 0; dir < 2; dir++) {
                /* want: the first `from` bytes of the old payload, then the new */
                memset(base, 0xee, 4200);
                memset(other, 0x11, 4200);
                for (size_t i = 0; i < from; i++)
                    base[i] = (uint8_t)(i * 13 + 1);
                memcpy(want, base, from);
                memcpy(want + from, src + 5, n - from);
                uint64_t h;
                if (dir == 0) { /* a writer: payload in base, copied to `other` */
                    memcpy(base + from, src + 5, n - from);
                    h = tiga_wyhash_tee(base, n, from, base + from, other);
                } else { /* a reader: from `other` into base */
                    memcpy(other, src + 5, n - from);
                    h = tiga_wyhash_tee(base, n, from, other, base + from);
                }
                const uint8_t *copy = dir == 0 ? other : base + from;
                if (h != tiga_wyhash(want, n, 0) || memcmp(base, want, n) != 0 ||
                    memcmp(copy, src + 5, n - from) != 0 ||
                    (dir == 0 && other[n - from] != 0x11) || (dir == 1 && base[n] != 0xee))
                    bad++;
            }
        }
    }
    CHECK(bad == 0);
    free(src);
    free(base);
    free(other);
    free(want);
}

TEST_MAIN(T(test_strings), T(test_patterns), T(test_version_example), T(test_tee))
