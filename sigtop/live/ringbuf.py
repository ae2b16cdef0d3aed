"""A BPF ring buffer read straight from its mmap, many records per copy.

BCC's `ring_buffer_poll` calls back into Python once per record through
ctypes: about a microsecond each before any decoding, which at 100,000
events a second is a tenth of a core just to be handed the bytes. The
kernel's layout (kernel/bpf/ringbuf.c, as libbpf reads it) is simple enough
to read here instead:

* page 0, read-write: the consumer position, which we advance;
* page 1, read-only: the producer position; then the data pages. The
  kernel maps them twice in a row, so that a run of records that wraps is
  contiguous; we map them once and join the two ends of a run that wraps
  (once per trip round the ring). Each page mapped counts in our RSS: the
  second mapping was 8 MB of RSS for no memory at all.

Every record is an 8-byte header (length with BUSY and DISCARD bits, page
offset) and the sample, rounded up to 8 bytes. sigtop's program only ever
reserves one fixed-size event, so a run of committed records is a packed
array that `struct.iter_unpack` decodes in C.

Ordering: a producer fills its sample and then clears BUSY in the header
(a release store). The headers of a run are read first, one by one in
order, and the samples copied after, so on x86's ordered loads every sample
copied is complete.
"""

from __future__ import annotations

import mmap
import select

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8


class RingBufferError(Exception):
    pass


class RingBufferReader:
    """Consumer of one BPF_MAP_TYPE_RINGBUF map whose samples all have one size."""

    def __init__(self, map_fd: int, data_size: int, sample_size: int) -> None:
        if data_size <= 0 or data_size & (data_size - 1):
            raise RingBufferError(f"ring buffer size {data_size} is not a power of two")
        page = mmap.PAGESIZE
        self.mask = data_size - 1
        self.sample_size = sample_size
        self.record_size = record_size(sample_size)
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]
        self._data_size = data_size
        # The positions through native 'Q' views: one aligned 8-byte load or
        # store each. struct's '<Q' goes byte by byte, and a torn consumer
        # position made the kernel see the ring as full now and then
        # (reserves failing with the ring nearly empty).
        self._consumer_pos = memoryview(self._consumer).cast("Q")
        self._producer_pos = memoryview(self._producer).cast("Q")
        self._poll = select.epoll()
        self._poll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_s: float) -> None:
        """Sleep until the kernel wakes us (a storm filling up) or the timeout."""
        self._poll.poll(timeout_s)

    def pending(self) -> int:
        """Bytes between the consumer and the producer."""
        return self._producer_pos[0] - self._consumer_pos[0]

    def read_into(self, out: bytearray, limit: int) -> tuple[int, int]:
        """Append up to `limit` committed records to `out`, newest kept; return (read, skipped).

        The records are copied as they lie in the ring (header, sample,
        padding: `record_size` bytes each). Skipped records are consumed
        too: they are the reader's drops, for the caller to count.
        """
        cons = self._consumer_pos[0]
        prod = self._producer_pos[0]
        if prod <= cons:
            return 0, 0
        if (prod - cons) % self.record_size:
            raise RingBufferError("ring buffer holds records of another size")
        size = self.record_size
        n = (prod - cons) // size
        off = cons & self.mask
        # The run as one or two pieces of the ring: its end, then its start. A header is
        # 8-byte aligned, and so never split; a sample may be.
        first = self._data[off : off + n * size]
        rest = self._data[: n * size - len(first)]
        in_first = -(-len(first) // size)  # records whose header lies in the first piece
        headers = first.cast("I")[:: size // 4].tolist()
        if rest:
            headers += rest[in_first * size - len(first) :].cast("I")[:: size // 4].tolist()
        committed = n
        discarded = False
        for i, length in enumerate(headers):
            if length & BUSY_BIT:
                committed = i  # reserved, not yet submitted: stop here, read it next time
                break
            discarded = discarded or bool(length & DISCARD_BIT)
            if length & ~DISCARD_BIT != self.sample_size:
                raise RingBufferError(f"ring buffer record of {length & ~DISCARD_BIT} bytes, not {self.sample_size}")
        skipped = max(0, committed - limit)
        before = len(out)

        def copy(start: int, end: int) -> None:  # bytes start..end of the run (its headers read first)
            nonlocal out
            out += first[start:end]
            if end > len(first):
                out += rest[max(0, start - len(first)) : end - len(first)]

        if discarded:
            for i in range(skipped, committed):
                if not headers[i] & DISCARD_BIT:
                    copy(i * size, (i + 1) * size)
        else:
            copy(skipped * size, committed * size)
        first.release()
        rest.release()
        self._consumer_pos[0] = cons + committed * size
        return (len(out) - before) // size, skipped

    def close(self) -> None:
        self._poll.close()
        for view in (self._data, self._consumer_pos, self._producer_pos):
            view.release()
        self._producer.close()
        self._consumer.close()


def record_size(sample_size: int) -> int:
    """A record's stride in the ring: header and sample, rounded up to 8 bytes."""
    return (HEADER_SIZE + sample_size + 7) & ~7
