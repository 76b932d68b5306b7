"""The resource limits every reader checks before it decodes anything.

A file's header is read before its pixels, and a header can declare anything: an 8 MB
RLE-compressed DICOM file declaring 16384×16384 pixels, or a 1 kB PNG declaring 60000×60000,
would make a decoder allocate gigabytes. Every reader refuses a slice beyond these limits from
its header alone, with a sentence naming the file.
"""

from __future__ import annotations

#: Largest Rows or Columns decoded, DICOM or image. Head CT is reconstructed on 512×512 (some
#: scanners offer 768 or 1024); 2048 leaves room for all of them and bounds one decoded slice to
#: 8 MiB of int16 (16 MiB of float32 per channel for images).
MAX_MATRIX = 2048
#: Files larger than this are not opened: a 2048×2048 16-bit slice with its header is about
#: 8 MiB, so anything 8× beyond is not a single CT slice or image.
MAX_FILE_BYTES = 64 * 2**20
#: Largest decoded series: the HU volume (Rows × Columns × slices × 2 bytes) or an image
#: series' float volume (Rows × Columns × channels × images × 4 bytes). 1 GiB holds 2048 slices
#: of 512×512 HU (a head at 0.1 mm) or 1024 gray images of 512×512; a series beyond it is
#: refused from its headers, before decoding, by the input gate.
MAX_SERIES_BYTES = 2**30


def series_bytes(rows: int, columns: int, slices: int, *, channels: int = 1, itemsize: int = 2) -> int:
    """What one decoded series takes: Rows × Columns × channels × slices × bytes per value."""
    return int(rows) * int(columns) * int(channels) * int(slices) * int(itemsize)
