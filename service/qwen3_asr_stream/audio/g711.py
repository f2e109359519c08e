"""G.711 (ITU-T) mu-law and A-law: one byte per sample, decoded through 256-entry tables.

    samples = ULAW[np.frombuffer(data, np.uint8)]    # (n,) float32 in [-1, 1)

The tables hold the 16-bit linear values of the standard's expansion (mu-law peaks at
+-32124, A-law at +-32256) scaled by 1/32768, the scale of LINEAR16.
"""

from __future__ import annotations

import numpy as np


def _ulaw(byte: int) -> int:
    u = ~byte & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


def _alaw(byte: int) -> int:
    a = byte ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if a & 0x80 else -magnitude


ULAW = np.array([_ulaw(b) for b in range(256)], np.float32) / np.float32(32768.0)
ALAW = np.array([_alaw(b) for b in range(256)], np.float32) / np.float32(32768.0)


def decode(data: bytes, table: np.ndarray) -> np.ndarray:
    """G.711 bytes -> (n,) float32 samples (channels still interleaved)."""
    return table[np.frombuffer(data, np.uint8)]
