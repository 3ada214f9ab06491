"""A rebuild's COPY rows: the binary format PostgreSQL reads, built without fresh memory per row."""

import struct
import subprocess
import sys
import textwrap

from projections.fresh_table import CHUNK, Doc, binary_rows

# Encodes a rebuild batch's documents a few times in a fresh interpreter, each chunk copied as
# asyncpg copies a COPY message, and prints the page faults per document of the last rounds
# (the first ones grow the heap once).
FAULTS_PER_DOCUMENT = textwrap.dedent(
    """
    import resource
    from projections.fresh_table import binary_rows

    docs = {
        f"order-{i}": {
            "orderId": f"order-{i}", "customerId": f"customer-{i % 5000}", "total": "39.06",
            "items": [{"sku": f"sku-{i % 1000}", "quantity": 3, "unitPrice": "12.34"}] * 2,
            "status": "placed", "placedAt": "2026-12-07T05:23:19.123456+00:00",
        }
        for i in range(5000)
    }
    def copy():
        for chunk in binary_rows(docs):
            bytes(chunk)

    for _ in range(3):
        copy()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        copy()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10 / len(docs))
    """
)


def test_rows_are_in_copy_binary_format() -> None:
    rows = b"".join(binary_rows({"a": {"x": 1}, "bé": {"y": "ü"}}))
    header, trailer = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0), struct.pack("!h", -1)
    assert rows.startswith(header) and rows.endswith(trailer)
    body = rows[len(header) : -len(trailer)]
    first = struct.pack("!hi", 2, 1) + b"a" + struct.pack("!ib", 8, 1) + b'{"x":1}'
    second = struct.pack("!hi", 2, 3) + "bé".encode() + struct.pack("!ib", 11, 1)
    assert body == first + second + '{"y":"ü"}'.encode()


def test_a_batch_comes_in_chunks_below_the_mmap_threshold() -> None:
    docs: dict[str, Doc] = {
        f"order-{i}": {"id": f"order-{i}", "note": "x" * i} for i in range(2000)
    }
    chunks = [len(chunk) for chunk in binary_rows(docs)]
    assert len(chunks) > 1 and max(chunks) < 128 * 1024
    assert all(size >= CHUNK for size in chunks[:-1])


def test_a_batch_of_rows_touches_no_fresh_memory_per_document() -> None:
    """Each document's JSON was kept as its own bytes until the batch was joined: glibc gave
    every one a fresh stretch of heap and handed the heap back after each batch, so a rebuild
    took about one page fault per document (8 µs a document, most of it the faults). A whole
    batch in one COPY message took fresh pages too (above the mmap threshold)."""
    done = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_DOCUMENT], capture_output=True, text=True, check=True
    )
    assert float(done.stdout) < 0.05, f"page faults per document: {done.stdout}"
