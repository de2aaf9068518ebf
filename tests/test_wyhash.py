"""The checksum against PROTOCOL's test vectors."""

import pytest

import tiga_cffi


def pat(n):
    return bytes((i * 31 + 7) % 251 for i in range(n))


VECTORS = [
    (b"", 0x42BC986DC5EEC4D3),
    (b"a", 0x6CF84E5A2465E867),
    (b"abc", 0xB4808DF22D44FFCF),
    (b"hello world", 0x19F24A02FE04C3CA),
    (pat(1), 0x7BBFC11AA49C3A9D),
    (pat(3), 0x0E72FFB218F9B67B),
    (pat(4), 0x7ED13A6211403F47),
    (pat(7), 0xD1CAE929135A4EE6),
    (pat(8), 0x37C44317D97E8DDD),
    (pat(15), 0x2A71166C45693566),
    (pat(16), 0x7DF046F3730432AE),
    (pat(17), 0xB887B081ABD1B5E0),
    (pat(31), 0x8A4A9EA97CAC46F5),
    (pat(32), 0x23D473A316ADC6F6),
    (pat(47), 0x05C62B5B2A936C39),
    (pat(48), 0x8DEB95326E270073),
    (pat(49), 0x629CF6412E54EA96),
    (pat(63), 0xA0F9CB2C05B58BC4),
    (pat(64), 0xFECB027CA3D3F54A),
    (pat(96), 0x06A7153B6E0387C0),
    (pat(97), 0xF87DE70EFB4DE888),
    (pat(100), 0xB839187AF2E93E62),
    (pat(1000), 0xF339858B96C3CBA6),
    (pat(4096), 0x87937D4CFB8E7083),
    (pat(65537), 0x4876CD6AFCF1003B),
]


@pytest.mark.parametrize("data,expected", VECTORS, ids=[f"len{len(d)}" for d, _ in VECTORS])
def test_vector(data, expected):
    assert tiga_cffi.wyhash(data) == expected


def test_version_word_example():
    h = tiga_cffi.wyhash(pat(100)) & 0xFFFFFF
    assert 1 | (100 << 1) | (h << 40) == 0xE93E6200000000C9
