"""What sending one batch event from a worker process to the server costs the worker, for each way of
sending it (``python -m bench --only dashboard`` reports it). Here, not in bench/__main__.py: a worker
process must be able to import the function it runs.
"""

from __future__ import annotations

import time

from core.trainer import BatchEvent


def per_event_cost(quick: bool) -> dict:
    """Microseconds a worker process spends per batch event for each way of sending it to the server."""
    import multiprocessing as mp

    n = 5_000 if quick else 50_000
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "core.trainer", "core.worker"])
    out = {}
    for how in ("pipe, one message per event", "queue (a feeder thread pickles)", "pipe, events batched at 10 Hz (used)",
                "pipe, batched plain tuples at 10 Hz", "shared-memory ring"):
        if how == "shared-memory ring":
            ring, count = ctx.Array("d", 4096 * 5, lock=False), ctx.Value("q", 0, lock=False)
            proc = ctx.Process(target=_stream_child, args=(how, n, ring, count))
            proc.start()
            proc.join()
            out[how] = round(ring[0] / n * 1e6, 2)
            continue
        if how.startswith("queue"):
            q = ctx.Queue()
            proc = ctx.Process(target=_stream_child, args=(how, n, q, None))
            proc.start()
            while q.get() is not None:
                pass
            seconds = q.get()
        else:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_stream_child, args=(how, n, send, None))
            proc.start()
            send.close()
            while recv.recv() is not None:
                pass
            seconds = recv.recv()
        proc.join()
        out[how] = round(seconds / n * 1e6, 2)
    return out


def _stream_child(how: str, n: int, channel, count) -> None:
    t0 = last = time.perf_counter()
    buf = []
    for i in range(n):
        ev = BatchEvent(i, 1, 0.5, 0.01, 1000.0)
        if how == "shared-memory ring":
            j = (i % 4096) * 5
            channel[j:j + 5] = (ev.step, ev.epoch, ev.loss, ev.lr, ev.samples_per_s)
            count.value = i + 1
            continue
        if how.startswith("queue"):
            channel.put(ev)
            continue
        if how == "pipe, one message per event":
            channel.send(ev)
            continue
        buf.append(tuple(vars(ev).values()) if "tuples" in how else ev)
        now = time.perf_counter()
        if now - last >= 0.1:
            channel.send(buf)
            buf, last = [], now
    seconds = time.perf_counter() - t0
    if how == "shared-memory ring":
        channel[0] = seconds
    elif how.startswith("queue"):
        channel.put(None)
        channel.put(seconds)
    else:
        if buf:
            channel.send(buf)
        channel.send(None)
        channel.send(seconds)
