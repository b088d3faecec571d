"""The flat-buffer pool (nytorch_ext.particles.pool.BufferPool): a recycled buffer is never
shared with anything that still uses it (a view, a parameter, a storage object, a
version counter), the pool is safe across threads, holds a bounded number of bytes of
unused buffers, and lends in O(1) whatever the number of live particles."""
from __future__ import annotations

import gc
import sys
import threading
import time

import pytest
import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext.particles import pool as pool_module
from nytorch_ext.particles.pool import BufferPool

CPU = torch.device("cpu")
F32 = torch.float32


class MLP(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)


class Sized(nyto.NytoModule):
    def __init__(self, n: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n))


def _values(particle) -> list:
    return [t.detach().clone() for t in particle.parameters()]


# ------------------------------------------------------ D3: version counters

def test_recycled_buffer_gets_a_version_counter_of_its_own():
    """A parameter made as a view of a lent buffer shares the buffer's version counter
    and keeps it after ``p.data = other`` (what ``.to()`` does); when the buffer is
    lent again, writes by its next user must not bump that parameter's version."""
    pool = BufferPool()
    buf = pool.lend(64, F32, CPU)
    param = nn.Parameter(buf[:16].view(4, 4))  # shares buf's version counter
    param.data = torch.zeros(4, 4, dtype=torch.float64)  # its storage is gone, its counter is not
    address = buf.data_ptr()
    del buf
    gc.collect()
    before = param._version
    again = pool.lend(64, F32, CPU)
    assert again.data_ptr() == address  # recycled
    again.add_(1.0)
    with torch.no_grad():
        again[:4].mul_(2.0)
    assert param._version == before


def test_lazy_product_of_a_converted_particle_survives_recycling():
    """The issue's repro: q.to(float64) leaves q's parameters with the counter of its
    old float32 buffer; r = p*3.0 recycles that buffer; evaluating the lazy product of
    q must not report q as modified in place."""
    for _ in range(3):
        p = nyto.ParticleModule(MLP())
        q = p * 1.0
        q.to(torch.float64)
        lazy = q.product() * 2
        gc.collect()  # q's old float32 buffer is unused now, and recycled by r
        r = p * 3.0
        out = lazy.module()  # raised "modified in place" before the fix
        for a, b in zip(out.parameters(), q.parameters()):
            assert a.dtype == torch.float64 and torch.equal(a.detach(), 2 * b.detach())
        for a, b in zip(r.parameters(), p.parameters()):
            assert torch.equal(a.detach(), 3 * b.detach())


# ----------------------------------------------- never a buffer still in use

def _lend_and_hold(pool, how):
    buf = pool.lend(256, F32, CPU)
    address = buf.data_ptr()
    if how == "view":
        holder = buf[10:20]
    elif how == "parameter":
        holder = nn.Parameter(buf[:16].view(4, 4))
    elif how == "untyped_storage":
        holder = buf.untyped_storage()
    elif how == "typed_storage":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            holder = buf.storage()
    elif how == "set_":
        holder = torch.empty(0).set_(buf)
    elif how == "numpy":
        holder = buf.numpy()
    elif how == "tensor":
        holder = buf
    else:
        raise AssertionError(how)
    del buf
    gc.collect()
    return address, holder


@pytest.mark.parametrize("how", ["view", "parameter", "untyped_storage", "typed_storage", "set_", "numpy",
                                 "tensor"])
def test_pool_never_lends_a_buffer_something_still_uses(how):
    pool = BufferPool()
    address, holder = _lend_and_hold(pool, how)
    for _ in range(3):
        other = [pool.lend(256, F32, CPU) for _ in range(3)]
        assert address not in {t.data_ptr() for t in other}
        del other
        assert pool.take(256, F32, CPU).data_ptr() != address
    del holder
    gc.collect()
    assert pool.lend(256, F32, CPU).data_ptr() == address  # free now: recycled


def test_giving_back_another_tensor_on_a_lent_storage_tracks_it_once():
    pool = BufferPool()
    buf = pool.lend(64, F32, CPU)
    address = buf.data_ptr()
    alias = buf.detach()  # another tensor object, the same storage
    pool.give([alias, buf[:8]])  # the part of a storage is ignored, the alias is known
    del buf, alias
    gc.collect()
    assert pool.lend(64, F32, CPU).data_ptr() == address


def test_give_tracks_a_foreign_buffer_until_nothing_uses_it():
    pool = BufferPool()
    buf = torch.empty(64)
    view = buf[3:10]
    address = buf.data_ptr()
    pool.give([buf])
    del buf
    assert pool.lend(64, F32, CPU).data_ptr() != address  # the view still uses it
    del view
    for _ in range(4):  # found by the re-checks within a few calls
        got = pool.lend(64, F32, CPU)
        if got.data_ptr() == address:
            break
    assert got.data_ptr() == address


def test_products_and_particles_keep_their_buffers_out_of_the_pool():
    p = nyto.ParticleModule(Sized(1000))
    q = p * 2.0
    product = q.product()
    weight = q.root_module.w
    expected = _values(q)
    del q
    gc.collect()
    others = [p * float(k) for k in range(4)]
    assert torch.equal(weight.detach(), expected[0])
    assert torch.equal(product.module().root_module.w.detach(), expected[0])
    del product
    gc.collect()
    others += [p * float(k) for k in range(4)]
    assert torch.equal(weight.detach(), expected[0])
    assert weight.data_ptr() not in {o.root_module.w.data_ptr() for o in others}


# ------------------------------------------------------ D5: thread safety

K_LIVE = 6


def _particle_work(base, seed: int, steps: int) -> list:
    live = [base * float(k + seed) for k in range(K_LIVE)]
    for k in range(steps):
        i, j = k % K_LIVE, (3 * k + 1) % K_LIVE
        live[i] = live[i] * 0.5 + live[j] * 0.25 + 1.0
        if k % 7 == 0:
            live[j] = (live[j].product() * 0.5).module()
    return [_values(x) for x in live]


@pytest.fixture
def tiny_switch_interval(monkeypatch):
    """A 1 us switch interval, and the pool's "is it unused?" check followed by a
    sleep that lets other threads run: whatever a lend decides from that check must
    still hold when it acts on it (before the fix it did not: IndexError, or a buffer
    handed to two users)."""
    real = pool_module._unused

    def unused_then_switch(*args):
        answer = real(*args)
        time.sleep(1e-5)
        return answer

    monkeypatch.setattr(pool_module, "_unused", unused_then_switch)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run_threads(target, n: int, budget_s: float = 20.0):
    errors, results = [], [None] * n

    def run(i):
        try:
            results[i] = target(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget_s)
    assert not any(t.is_alive() for t in threads), "threads did not finish"
    return results, errors


def test_particle_arithmetic_in_threads_matches_one_thread(tiny_switch_interval):
    """Three threads, each on particles of its own, with a 1 us switch interval: before
    the fix, threads were lent each other's live buffers (wrong values) or the pool's
    bucket changed under a scan (IndexError)."""
    torch.manual_seed(0)
    bases = [nyto.ParticleModule(MLP()) for _ in range(3)]
    steps = 300
    sys.setswitchinterval(0.005)
    reference = [_particle_work(b, i, steps) for i, b in enumerate(bases)]
    sys.setswitchinterval(1e-6)
    results, errors = _run_threads(lambda i: _particle_work(bases[i], i, steps), 3)
    assert errors == []
    for got, want in zip(results, reference):
        for g, w in zip(got, want):
            assert all(torch.equal(a, b) for a, b in zip(g, w))


def test_pool_in_threads_lends_each_buffer_to_one_user(tiny_switch_interval):
    pool = BufferPool()

    def work(i):
        held = []
        for k in range(400):
            buf = pool.lend(32, F32, CPU) if k % 3 else pool.take(32, F32, CPU)
            buf.fill_(i * 1000 + k)
            held.append((buf, i * 1000 + k))
            if len(held) > 4:
                held.pop(0)
            for b, v in held:
                if not bool((b == v).all()):
                    raise AssertionError(f"thread {i}: a held buffer was overwritten")
        return True

    results, errors = _run_threads(work, 4)
    assert errors == [] and results == [True] * 4
    assert pool.free_bytes() <= 4 * 5 * 32 * 4  # every buffer came back


# ------------------------------------------------------ D6: bounded pool

def test_pool_holds_at_most_max_free_bytes_of_unused_buffers():
    limit = 1 << 20
    pool = BufferPool(max_free_bytes=limit)
    assert pool.max_free_bytes == limit
    for _ in range(3):
        held = [pool.lend(4096 + 16 * i, F32, CPU) for i in range(200)]  # ~3.3 MB, 200 sizes
        del held
        gc.collect()
        pool.lend(8, F32, CPU)  # the pool sees the releases
        assert 0 < pool.free_bytes() <= limit
    pool.max_free_bytes = 64 << 10  # the setter trims at once
    assert pool.free_bytes() <= 64 << 10
    pool.clear()
    assert pool.free_bytes() == 0


def test_pool_releases_least_recently_used_buffers_first():
    pool = BufferPool(max_free_bytes=4 * 4100 * 4)
    old = [pool.lend(4096, F32, CPU) for _ in range(3)]
    old_addresses = {t.data_ptr() for t in old}
    del old
    pool.lend(8, F32, CPU)
    newer = [pool.lend(4100, F32, CPU) for _ in range(3)]
    newer_addresses = {t.data_ptr() for t in newer}
    del newer
    pool.lend(8, F32, CPU)  # the 4100-element ones are the most recent: the 4096 ones go
    assert pool.free_bytes() <= pool.max_free_bytes
    again = [pool.lend(4100, F32, CPU) for _ in range(3)]
    assert {t.data_ptr() for t in again} == newer_addresses
    assert pool.free_bytes() < 4096 * 4  # no 4096-element buffer left
    del again, old_addresses


def test_pool_keeps_the_last_buffer_even_when_larger_than_the_limit():
    """Particles larger than the limit still recycle when replaced one at a time."""
    pool = BufferPool(max_free_bytes=1024)
    a = pool.lend(10_000, F32, CPU)
    address = a.data_ptr()
    del a
    assert pool.lend(10_000, F32, CPU).data_ptr() == address
    disabled = BufferPool(max_free_bytes=0)
    a = disabled.lend(10_000, F32, CPU)
    del a
    disabled.lend(8, F32, CPU)
    assert disabled.free_bytes() == 0


def test_pool_max_free_caps_unused_buffers_per_size():
    pool = BufferPool(max_free=2)
    held = [pool.lend(16, F32, CPU) for _ in range(5)]
    del held
    other = pool.lend(8, F32, CPU)
    assert pool.free_bytes() == 2 * 16 * 4
    del other


def _malloc_trim():
    """glibc keeps freed chunks of these sizes in its heap (its mmap threshold adapts
    upwards); hand them back first so that RSS shows what is really held."""
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda pad: 0


_trim = _malloc_trim()


def _rss_bytes() -> int:
    _trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_rss_stays_flat_over_many_particle_ops_of_many_sizes(monkeypatch):
    """Particle ops over 100 particle sizes, four results of a size alive at once, then
    20 000 ops on a small particle: the pool must not keep every size's buffers
    (before the fix: ~50 MB held here); with a 4 MiB limit RSS grows by little more
    than that, and not at all over the small particle's ops."""
    limit = 4 << 20
    monkeypatch.setattr(pool_module.DEFAULT_POOL, "max_free_bytes", limit, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no parallel regions to wait on when the cores are busy
    try:
        _many_sizes_then_many_ops(limit)
    finally:
        torch.set_num_threads(threads)


def _many_sizes_then_many_ops(limit):
    sizes = [32768 + 16 * i for i in range(100)]  # 128 KiB each
    bases = [nyto.ParticleModule(Sized(n)) for n in sizes]
    net = nyto.ParticleModule(MLP())
    pool_module.DEFAULT_POOL.clear()
    gc.collect()
    start = _rss_bytes()
    for _ in range(3):
        for base in bases:
            alive = [base * 0.5 for _ in range(4)]
            del alive
    gc.collect()
    after_sizes = _rss_bytes()
    for _ in range(10_000):  # 20 000 particle operations
        net = 0.5 * net + 1.0
    gc.collect()
    end = _rss_bytes()
    slack = 12 << 20  # allocator and interpreter noise (measured: ~4 MiB)
    assert after_sizes - start < limit + slack, (after_sizes - start) / 2**20
    assert end - after_sizes < 4 << 20, (end - after_sizes) / 2**20
    assert pool_module.DEFAULT_POOL.free_bytes() <= limit


def test_set_pool_limit_configures_the_default_pool():
    old = pool_module.DEFAULT_POOL.max_free_bytes
    try:
        pool_module.set_pool_limit(1 << 20)
        assert pool_module.DEFAULT_POOL.max_free_bytes == 1 << 20
        with pytest.raises(ValueError):
            pool_module.set_pool_limit(-1)
    finally:
        pool_module.set_pool_limit(old)


# ------------------------------------------------------ D7: O(1) lending

class _Counter:
    """Counts the pool's per-buffer "is it unused?" checks (``pool_module._unused``)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = pool_module._unused

        def counted(*a):
            self.calls += 1
            return real(*a)

        monkeypatch.setattr(pool_module, "_unused", counted)

    def during(self, fn) -> int:
        before = self.calls
        fn()
        return self.calls - before


def test_lending_examines_a_bounded_number_of_buffers_whatever_is_live(monkeypatch):
    pool = BufferPool()
    counter = _Counter(monkeypatch)

    def lend_and_drop():
        for _ in range(10):
            pool.lend(32, F32, CPU)

    lend_and_drop()
    idle = counter.during(lend_and_drop)
    live = [pool.lend(32, F32, CPU) for _ in range(20_000)]
    busy = counter.during(lend_and_drop)
    assert busy <= idle + 10, (idle, busy)  # before: 20 000 checks per lend
    del live


def test_particle_op_cost_does_not_grow_with_live_particles(monkeypatch):
    p = nyto.ParticleModule(MLP())
    counter = _Counter(monkeypatch)

    def ops():
        for _ in range(5):
            p * 3.0

    ops()
    idle = counter.during(ops)
    live = [p * 1.0 for _ in range(3000)]
    busy = counter.during(ops)
    assert busy <= idle + 10, (idle, busy)
    del live


class _Wide(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(33, 17)


def _by_operators(member, best):
    return 0.5 * member + 0.5 * best


def _by_products(member, best):
    return (0.5 * best.product() + 0.5 * member.product()).module()


@pytest.mark.parametrize("model, k, subset, rounds, combine, seed", [
    pytest.param(MLP, 20, 8, 10, _by_operators, 1, id="operators"),
    pytest.param(_Wide, 12, 6, 5, _by_products, 0, id="products-more-live-than-max-free"),
])
def test_replacing_live_particles_one_by_one_reuses_their_buffers(monkeypatch, model, k, subset, rounds, combine,
                                                                    seed):
    """The seed's APSO loop, with K particles alive and each replaced in turn: after
    the first round every new particle reuses a freed buffer (no fresh allocation,
    no page faults)."""
    import random
    first = nyto.ParticleModule(model())
    swarm = [first] + [first.randn() for _ in range(k - 1)]
    rng = random.Random(seed)

    def apso_round():
        best, *others = rng.sample(range(k), subset)
        for i in others:
            swarm[i] = combine(swarm[i], swarm[best])

    apso_round()
    fresh = []
    real = pool_module._fresh
    monkeypatch.setattr(pool_module, "_fresh", lambda *a: fresh.append(a) or real(*a))
    for _ in range(rounds):
        apso_round()
    assert fresh == []


# ------------------------------------------------- give, take and max_free

def test_pool_reuses_only_unreferenced_buffers():
    pool = BufferPool()
    buf = torch.empty(100)
    view = buf[3:10]
    address = buf.data_ptr()
    pool.give([buf])
    del buf  # only the pool holds the tensor now, but the view still uses its storage
    cpu = torch.device("cpu")
    assert pool.take(100, torch.float32, cpu).data_ptr() != address
    del view
    again = pool.take(100, torch.float32, cpu)
    assert again.data_ptr() == address
    assert pool.take(100, torch.float32, cpu).data_ptr() != address  # handed out once


@pytest.mark.parametrize("size", [1, 4096])
def test_pool_does_not_hand_out_a_buffer_still_held(size):
    pool = BufferPool()
    held = torch.zeros(size)
    pool.give([held])
    fresh = pool.take(size, torch.float32, torch.device("cpu"))
    assert fresh is not held


def test_pool_keeps_at_most_max_free_unused_buffers():
    pool = BufferPool(max_free=2)
    held = [torch.empty(8) for _ in range(5)]
    pool.give(held)
    assert pool.free_bytes() == 0  # all in use: tracked, no memory of the pool's own
    del held
    assert pool.free_bytes() == 2 * 8 * 4  # the 5 now unused buffers, down to 2
    a, b = pool.take(8, torch.float32, torch.device("cpu")), pool.take(8, torch.float32, torch.device("cpu"))
    assert a.data_ptr() != b.data_ptr()
    assert pool.free_bytes() == 0


def test_pool_lends_tracked_buffers_and_keeps_at_most_max_free_unused():
    pool = BufferPool(max_free=1)
    cpu = torch.device("cpu")
    first = pool.lend(16, torch.float32, cpu)
    address = first.data_ptr()
    second = pool.lend(16, torch.float32, cpu)  # first is held: a fresh one
    assert second.data_ptr() != address
    del first
    again = pool.lend(16, torch.float32, cpu)  # the unused one, recycled: a new tensor on it
    assert again.data_ptr() == address
    del second, again
    held = [pool.lend(16, torch.float32, cpu) for _ in range(5)]  # one or two reused, the rest fresh
    assert len({t.data_ptr() for t in held}) == 5
    del held  # five unused now: max_free of them are kept
    assert pool.free_bytes() == pool.max_free * 16 * 4
    kept = pool.lend(16, torch.float32, cpu)
    assert pool.free_bytes() == 0 and kept.numel() == 16
