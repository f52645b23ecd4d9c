//! The engine's entry points to rayon, with the work passed as `&dyn Fn`.
//!
//! A parallel iterator such as `data.par_chunks_mut(n).for_each(closure)` instantiates
//! rayon's whole splitting machinery (`bridge_producer_consumer`, `join_context`, `StackJob`,
//! the registry's cross-thread entry, …) once per closure *type*, and does so in whichever
//! crate monomorphises the generic kernel around it. With one closure per element-wise op,
//! that machinery was about 40% of the LLVM IR of `sparsegrad-autograd` and a large part of
//! the clean build. Behind a `&dyn Fn` it is instantiated once per element type; the body is
//! still compiled (and inlined into its loops) where it is written, and the one indirect call
//! per chunk costs nothing beside a chunk's work.
//!
//! Three functions instantiate rayon ([`range`], [`range_with_any`], [`join`]); the typed
//! helpers (chunks of a mutable slice, a parallel map, per-thread scratch) are thin wrappers
//! that hand each index its disjoint part of the output. The split into chunks is the
//! caller's (`size`), never the thread count's, so results do not depend on how many threads
//! run them.

use std::any::Any;
use std::mem::MaybeUninit;

use rayon::prelude::*;

/// `body(i)` for every `i` in `0..n`, in parallel. One of the three functions here that
/// instantiate rayon; every other one is a thin generic wrapper around them.
pub fn range(n: usize, body: &(dyn Fn(usize) + Sync)) {
    if rayon::current_thread_index().is_some() {
        (0..n).into_par_iter().for_each(body);
    } else {
        team::run(n, &|| Box::new(()), &|_, i| body(i));
    }
}

/// `body(scratch, i)` for every `i` in `0..n`, with a scratch value made by `init` for each
/// piece of work rayon hands a thread (rayon's `for_each_init`), or once per thread of a
/// team (see [`team`]). The scratch is type-erased so that rayon is instantiated once; see
/// [`range_with`] for the typed form.
pub fn range_with_any(
    n: usize,
    init: &(dyn Fn() -> Box<dyn Any> + Sync),
    body: &(dyn Fn(&mut Box<dyn Any>, usize) + Sync),
) {
    if rayon::current_thread_index().is_some() {
        (0..n).into_par_iter().for_each_init(init, body);
    } else {
        team::run(n, init, body);
    }
}

/// Runs `a` and `b`, potentially in parallel (rayon's `join` inside the pool; a team of the
/// caller and one worker outside it).
pub fn join(a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
    if rayon::current_thread_index().is_some() {
        rayon::join(a, b);
    } else {
        let (a, b) = (std::sync::Mutex::new(a), std::sync::Mutex::new(b));
        team::run(2, &|| Box::new(()), &|_, i| {
            if i == 0 {
                (a.lock().unwrap_or_else(|e| e.into_inner()))()
            } else {
                (b.lock().unwrap_or_else(|e| e.into_inner()))()
            }
        });
    }
}

/// Parallel loops entered from a thread outside rayon's pool (a user's `main`), with the
/// caller taking part.
///
/// rayon's own entry from outside the pool (`in_worker_cold`) queues the whole loop as one
/// job, wakes the workers and puts the caller to sleep until they are done: every call pays
/// two wake-ups, and the caller's core idles while the loop runs. A team instead queues
/// `threads − 1` helper jobs and starts on the work at once. The indices are cut into one
/// contiguous segment per thread, each with its own atomic cursor; the caller claims a few at
/// a time from the first segment and each helper from its own, then each takes what is left of
/// the others, so a helper that starts late is covered and one that starts after the last index
/// was claimed returns at once. (One shared cursor handed each call's indices to whichever
/// thread came first: a loop over the same data on the next call found it in the other core's
/// cache. With segments, 2-thread `exp` / `sum` calls on 1M elements took 127–143 / 38–40 µs
/// instead of 173–203 / 39–43, and ResNet-20 steps 127–129 ms instead of 130–133.) The caller
/// waits (spinning briefly, then parked) only for indices already being run by a helper. With
/// one thread in the pool the caller runs the loop alone, without entering rayon at all.
///
/// Which thread runs an index, and how many scratch values are made, never changes what an
/// index computes (the chunking is the caller's), so results are those of rayon's path.
///
/// A panic in `body` (on any thread) stops further claims, waits for the indices in flight
/// and is resumed on the caller's thread.
mod team {
    use std::any::Any;
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    type Init<'a> = dyn Fn() -> Box<dyn Any> + Sync + 'a;
    type Body<'a> = dyn Fn(&mut Box<dyn Any>, usize) + Sync + 'a;

    /// Batches per thread: enough for the claims to balance uneven indices, few enough that
    /// the counter is touched rarely.
    const BATCHES_PER_THREAD: usize = 8;

    struct Team {
        n: usize,
        grain: usize,
        /// The indices cut into one contiguous segment per thread of the pool, each with its
        /// own cursor: a participant claims from its own segment first (the caller from the
        /// first), then from the others in turn. So a loop over the same data called again
        /// gives each thread mostly the same part, still in its cache (OpenMP's static
        /// schedule does this), and a helper that starts late is still covered.
        cursors: Vec<AtomicUsize>,
        /// Participants so far (the caller is 0; helpers number themselves from 1).
        joined: AtomicUsize,
        /// Indices finished (run, or skipped after a panic).
        done: AtomicUsize,
        stop: AtomicBool,
        panic: Mutex<Option<Box<dyn Any + Send>>>,
        caller: Thread,
    }

    /// The loop's closures with their lifetime erased, for the helper jobs (`rayon::spawn`
    /// wants `'static`).
    #[derive(Clone, Copy)]
    pub(super) struct Work {
        init: &'static Init<'static>,
        body: &'static Body<'static>,
    }

    impl Team {
        /// Claims and runs batches until none is left. The closures are called only for an
        /// index claimed below `n`, and the caller does not return before every such index is
        /// counted in `done`: so they are never called after the borrow they came from ends.
        fn share(&self, work: Work, id: usize) {
            let mut scratch: Option<Box<dyn Any>> = None;
            let segments = self.cursors.len();
            for k in 0..segments {
                let seg = (id + k) % segments;
                let end_of = self.segment_end(seg);
                loop {
                    let start = self.cursors[seg].fetch_add(self.grain, Ordering::Relaxed);
                    if start >= end_of {
                        break;
                    }
                    let end = (start + self.grain).min(end_of);
                    self.run(work, &mut scratch, start, end);
                }
            }
        }

        /// The first index of segment `seg` (and the end of segment `seg − 1`).
        fn segment_start(&self, seg: usize) -> usize {
            seg * self.n / self.cursors.len()
        }

        fn segment_end(&self, seg: usize) -> usize {
            self.segment_start(seg + 1)
        }

        /// Runs the claimed indices `start..end` (unless a panic stopped the loop) and counts
        /// them done.
        fn run(&self, work: Work, scratch: &mut Option<Box<dyn Any>>, start: usize, end: usize) {
            if !self.stop.load(Ordering::Relaxed) {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    let s = scratch.get_or_insert_with(|| (work.init)());
                    for i in start..end {
                        (work.body)(s, i);
                    }
                }));
                if let Err(p) = r {
                    self.stop.store(true, Ordering::Relaxed);
                    self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
                }
            }
            if self.done.fetch_add(end - start, Ordering::AcqRel) + (end - start) == self.n {
                self.caller.unpark();
            }
        }

        /// A helper's share: from its own segment when it is one of the first `threads − 1`
        /// to join, from the others in turn either way.
        fn help(&self, work: Work) {
            let id = self.joined.fetch_add(1, Ordering::Relaxed);
            self.share(work, id % self.cursors.len());
        }
    }

    /// The latest team, for helpers that are still hot.
    type Slot = Option<(Arc<Team>, Work)>;
    static SLOT: Mutex<Slot> = Mutex::new(None);
    /// Bumped each time a team is put in [`SLOT`].
    static GENERATION: AtomicUsize = AtomicUsize::new(0);
    /// Helper jobs alive: queued on the pool, working on a team, or waiting hot for the next.
    /// A caller queues new helpers only up to the number its loop can use *minus these*: a
    /// helper still finishing the last team (or not started yet) takes the next one from the
    /// slot. (Counting only the idle-hot ones let a caller that came back quickly queue
    /// another helper beside one still in its last batch, and each stayed hot: with the test
    /// below ported to that accounting, 2 callers × 3,000 loops on 2 threads ran 125 and
    /// 1,322 helpers at once in 2 of 3 runs, helpers running queued helper jobs inside
    /// `rayon::yield_now`.)
    static ALIVE: AtomicUsize = AtomicUsize::new(0);
    /// How long a helper stays hot after its team is done. OpenMP runtimes spin their team
    /// between parallel regions the same way (libgomp's `GOMP_SPINCOUNT`), so that a program
    /// alternating short serial code with parallel loops does not pay a wake-up per loop.
    const HOT_FOR: Duration = Duration::from_micros(200);

    fn slot() -> std::sync::MutexGuard<'static, Slot> {
        SLOT.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A helper job (counted in [`ALIVE`] by the caller that queued it): its share of `team`
    /// (published as generation `seen`), then of every team published while it stays hot,
    /// running other rayon work that reaches this worker meanwhile.
    fn helper(team: Arc<Team>, work: Work, mut seen: usize) {
        #[cfg(test)]
        census::enter();
        team.help(work);
        drop(team);
        let mut since = Instant::now();
        let mut spins = 0u32;
        let take_next = |seen: &mut usize| -> bool {
            let g = GENERATION.load(Ordering::Acquire);
            if g == *seen {
                return false;
            }
            *seen = g;
            let next = slot().clone();
            if let Some((team, work)) = next {
                team.help(work);
            }
            true
        };
        loop {
            if take_next(&mut seen) {
                since = Instant::now();
                continue;
            }
            spins += 1;
            if spins % 64 == 0 {
                if matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                    since = Instant::now();
                } else if since.elapsed() > HOT_FOR {
                    break;
                }
            }
            std::hint::spin_loop();
        }
        #[cfg(test)]
        census::leave();
        ALIVE.fetch_sub(1, Ordering::AcqRel);
        // A team published just before the decrement was counted on this helper: take its
        // share before leaving (a caller that saw the decrement queued another helper, which
        // only adds hands to that one team).
        take_next(&mut seen);
    }

    pub(super) fn run(n: usize, init: &Init<'_>, body: &Body<'_>) {
        let threads = rayon::current_num_threads();
        if threads <= 1 || n <= 1 {
            if n > 0 {
                let mut s = init();
                for i in 0..n {
                    body(&mut s, i);
                }
            }
            return;
        }
        let grain = n.div_ceil(threads * BATCHES_PER_THREAD).max(1);
        let helpers = (threads - 1).min(n.div_ceil(grain) - 1);
        let team = Arc::new(Team {
            n,
            grain,
            cursors: (0..threads).map(|p| AtomicUsize::new(p * n / threads)).collect(),
            joined: AtomicUsize::new(1),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
            caller: std::thread::current(),
        });
        // SAFETY: see `Team::share`: the erased references are used only while this call is
        // waiting for the indices they run.
        let work = unsafe {
            Work {
                init: std::mem::transmute::<&Init<'_>, &'static Init<'static>>(init),
                body: std::mem::transmute::<&Body<'_>, &'static Body<'static>>(body),
            }
        };
        // Helpers alive (hot, finishing the last loop, or still queued) take this one from
        // the slot; new ones are queued on the pool only up to `helpers` alive in all.
        *slot() = Some((Arc::clone(&team), work));
        let generation = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
        let mut alive = ALIVE.load(Ordering::Acquire);
        while alive < helpers {
            match ALIVE.compare_exchange_weak(alive, alive + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let team = Arc::clone(&team);
                    rayon::spawn(move || helper(team, work, generation));
                    alive += 1;
                }
                Err(now) => alive = now,
            }
        }
        team.share(work, 0);
        let mut spins = 0u32;
        while team.done.load(Ordering::Acquire) < n {
            if spins < 1 << 12 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
        {
            let mut slot = slot();
            if slot.as_ref().is_some_and(|(t, _)| Arc::ptr_eq(t, &team)) {
                *slot = None;
            }
        }
        let panic = team.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    #[cfg(test)]
    pub(super) mod census {
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Helpers between their start and their decrement of `ALIVE`, and the most seen.
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        pub(crate) static MOST: AtomicUsize = AtomicUsize::new(0);
        pub(super) fn enter() {
            let now = RUNNING.fetch_add(1, Ordering::AcqRel) + 1;
            MOST.fetch_max(now, Ordering::AcqRel);
        }
        pub(super) fn leave() {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// `body(scratch, i)` for every `i` in `0..n` in parallel, `scratch` made by `init` for each
/// piece of work rayon hands a thread (rayon's `for_each_init`).
pub fn range_with<S: 'static>(n: usize, init: &(dyn Fn() -> S + Sync), body: &(dyn Fn(&mut S, usize) + Sync)) {
    range_with_any(n, &|| Box::new(init()), &|s, i| body(s.downcast_mut::<S>().expect("the scratch made by init"), i));
}

/// A raw pointer that may cross threads: the functions below hand each index a disjoint part
/// of the buffer behind it.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: only used to write disjoint elements from different threads (see each use).
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// `len` elements from element `start`.
    ///
    /// # Safety
    /// `start + len` is within the buffer, and no other live slice overlaps this one.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// `body(i, chunk)` for every chunk `i` of `size` elements of `data` (the last may be
/// shorter), in parallel: rayon's `par_chunks_mut(size).enumerate()`.
///
/// **Panics** if `size` is 0.
pub fn chunks_mut<T: Send>(data: &mut [T], size: usize, body: &(dyn Fn(usize, &mut [T]) + Sync)) {
    assert!(size > 0, "par::chunks_mut: chunk size 0");
    let (len, p) = (data.len(), Shared(data.as_mut_ptr()));
    range(len.div_ceil(size), &|i| {
        let lo = i * size;
        // SAFETY: chunk i is `lo..min(lo + size, len)`, inside `data`; chunks are disjoint and
        // `data` is borrowed mutably for the whole call.
        body(i, unsafe { p.slice(lo, size.min(len - lo)) })
    });
}

/// `body(i, piece)` for the pieces `data[starts[i]..starts[i + 1]]`, in parallel.
///
/// **Panics** unless `starts` is non-decreasing and ends within `data`.
pub fn pieces_mut<T: Send>(data: &mut [T], starts: &[usize], body: &(dyn Fn(usize, &mut [T]) + Sync)) {
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]) && starts.last().is_none_or(|&e| e <= data.len()),
        "par::pieces_mut: piece starts {starts:?} are not non-decreasing within {} elements",
        data.len()
    );
    let p = Shared(data.as_mut_ptr());
    range(starts.len().saturating_sub(1), &|i| {
        // SAFETY: the pieces are disjoint (starts non-decreasing) and inside `data` (checked).
        body(i, unsafe { p.slice(starts[i], starts[i + 1] - starts[i]) })
    });
}

/// The body of [`chunks2_mut`]: chunk index and the two chunks.
pub type PairBody<'a, A, B> = dyn Fn(usize, &mut [A], &mut [B]) + Sync + 'a;

/// `body(i, a_i, b_i)` for the `i`-th chunks of two slices cut into chunks of `size_a` and
/// `size_b` elements, in parallel, for as many chunks as the shorter cut has.
///
/// **Panics** if a size is 0.
pub fn chunks2_mut<A: Send, B: Send>(
    a: &mut [A],
    size_a: usize,
    b: &mut [B],
    size_b: usize,
    body: &PairBody<'_, A, B>,
) {
    assert!(size_a > 0 && size_b > 0, "par::chunks2_mut: chunk size 0");
    let (la, lb) = (a.len(), b.len());
    let (pa, pb) = (Shared(a.as_mut_ptr()), Shared(b.as_mut_ptr()));
    range(la.div_ceil(size_a).min(lb.div_ceil(size_b)), &|i| {
        let (ia, ib) = (i * size_a, i * size_b);
        // SAFETY: as in `chunks_mut`, for each slice.
        let (ca, cb) = unsafe { (pa.slice(ia, size_a.min(la - ia)), pb.slice(ib, size_b.min(lb - ib))) };
        body(i, ca, cb)
    });
}

/// As [`chunks_mut`], with a scratch value made by `init` for each piece of work rayon hands
/// a thread (rayon's `for_each_init`): `body(scratch, i, chunk)`.
///
/// **Panics** if `size` is 0.
pub fn chunks_mut_with<T: Send, S: 'static>(
    data: &mut [T],
    size: usize,
    init: &(dyn Fn() -> S + Sync),
    body: &(dyn Fn(&mut S, usize, &mut [T]) + Sync),
) {
    assert!(size > 0, "par::chunks_mut_with: chunk size 0");
    let (len, p) = (data.len(), Shared(data.as_mut_ptr()));
    range_with(len.div_ceil(size), init, &|s, i| {
        let lo = i * size;
        // SAFETY: as in `chunks_mut`.
        body(s, i, unsafe { p.slice(lo, size.min(len - lo)) })
    });
}

/// `[f(0, chunk_0), f(1, chunk_1), …]` over the chunks of `size` elements of `data` (the last
/// may be shorter), in parallel: rayon's `par_chunks_mut(size).enumerate().map(..).collect()`.
///
/// **Panics** if `size` is 0.
pub fn chunks_map<T: Send, A: Send>(data: &mut [T], size: usize, f: &(dyn Fn(usize, &mut [T]) -> A + Sync)) -> Vec<A> {
    assert!(size > 0, "par::chunks_map: chunk size 0");
    let (len, p) = (data.len(), Shared(data.as_mut_ptr()));
    map(len.div_ceil(size), &|i| {
        let lo = i * size;
        // SAFETY: as in `chunks_mut`.
        f(i, unsafe { p.slice(lo, size.min(len - lo)) })
    })
}

/// `[f(s, 0, chunk_0), f(s, 1, chunk_1), …]` over the chunks of `size` elements of `data` (the
/// last may be shorter), in parallel, `s` a scratch value made by `init` for each piece of
/// work rayon hands a thread: rayon's `par_chunks_mut(size).enumerate().map_init(..).collect()`.
///
/// **Panics** if `size` is 0.
pub fn chunks_map_with<T: Send, S: 'static, A: Send>(
    data: &mut [T],
    size: usize,
    init: &(dyn Fn() -> S + Sync),
    f: &(dyn Fn(&mut S, usize, &mut [T]) -> A + Sync),
) -> Vec<A> {
    assert!(size > 0, "par::chunks_map_with: chunk size 0");
    let (len, p) = (data.len(), Shared(data.as_mut_ptr()));
    map_with(len.div_ceil(size), init, &|s, i| {
        let lo = i * size;
        // SAFETY: as in `chunks_mut`.
        f(s, i, unsafe { p.slice(lo, size.min(len - lo)) })
    })
}

/// `[f(0), f(1), …, f(n − 1)]`, computed in parallel.
pub fn map<A: Send>(n: usize, f: &(dyn Fn(usize) -> A + Sync)) -> Vec<A> {
    let mut out: Vec<MaybeUninit<A>> = Vec::with_capacity(n);
    out.resize_with(n, MaybeUninit::uninit);
    chunks_mut(&mut out, 1, &|i, o| {
        o[0].write(f(i));
    });
    collect(out)
}

/// `[f(s, 0), …, f(s, n − 1)]` in parallel, `s` a scratch value made by `init` for each piece
/// of work rayon hands a thread (rayon's `map_init`).
pub fn map_with<S: 'static, A: Send>(
    n: usize,
    init: &(dyn Fn() -> S + Sync),
    f: &(dyn Fn(&mut S, usize) -> A + Sync),
) -> Vec<A> {
    let mut out: Vec<MaybeUninit<A>> = Vec::with_capacity(n);
    out.resize_with(n, MaybeUninit::uninit);
    chunks_mut_with(&mut out, 1, init, &|s, i, o| {
        o[0].write(f(s, i));
    });
    collect(out)
}

/// The vector of values once every element was written (a panic in a body propagates out of
/// rayon before this is reached, leaking the written values rather than reading the others).
fn collect<A>(out: Vec<MaybeUninit<A>>) -> Vec<A> {
    let mut out = std::mem::ManuallyDrop::new(out);
    let (ptr, len, cap) = (out.as_mut_ptr(), out.len(), out.capacity());
    // SAFETY: every element was written; `MaybeUninit<A>` has `A`'s layout.
    unsafe { Vec::from_raw_parts(ptr.cast::<A>(), len, cap) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn chunks_cover_the_slice_once_with_their_index() {
        let mut v = vec![0usize; 1000];
        super::chunks_mut(&mut v, 64, &|i, c| c.iter_mut().for_each(|e| *e += i + 1));
        for (j, e) in v.iter().enumerate() {
            assert_eq!(*e, j / 64 + 1, "element {j}");
        }
    }

    #[test]
    fn range_visits_every_index_once_and_join_runs_both() {
        let hits: Vec<AtomicUsize> = (0..500).map(|_| AtomicUsize::new(0)).collect();
        super::range(hits.len(), &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        let (mut x, mut y) = (0, 0);
        super::join(&mut || x = 1, &mut || y = 2);
        assert_eq!((x, y), (1, 2));
    }

    /// Called from outside the pool (a test thread), the loop runs as a team: every index
    /// once, nested loops inside the body too, from several callers at once, and a panic in
    /// a body reaches the caller after the indices in flight, leaving the next loop working.
    #[test]
    fn teams_cover_every_index_nest_and_pass_panics_on() {
        assert!(rayon::current_thread_index().is_none());
        for n in [0, 1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicUsize> = (0..n * 7).map(|_| AtomicUsize::new(0)).collect();
            super::range(n, &|i| {
                super::range(7, &|j| {
                    hits[i * 7 + j].fetch_add(1, Ordering::Relaxed);
                });
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n = {n}");
            let made = AtomicUsize::new(0);
            let sum = AtomicUsize::new(0);
            super::range_with(
                n,
                &|| {
                    made.fetch_add(1, Ordering::Relaxed);
                    10usize
                },
                &|s, i| {
                    sum.fetch_add(*s + i, Ordering::Relaxed);
                },
            );
            assert_eq!(sum.load(Ordering::Relaxed), 10 * n + n * n.saturating_sub(1) / 2);
            assert!(made.load(Ordering::Relaxed) <= rayon::current_num_threads().max(1).min(n.max(1)));
        }
        std::thread::scope(|sc| {
            for t in 0..3usize {
                sc.spawn(move || {
                    for _ in 0..50 {
                        let total = AtomicUsize::new(0);
                        super::range(64, &|i| {
                            total.fetch_add(i + t, Ordering::Relaxed);
                        });
                        assert_eq!(total.load(Ordering::Relaxed), 64 * 63 / 2 + 64 * t);
                    }
                });
            }
        });
        let ran = AtomicUsize::new(0);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::range(100, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                if i == 37 {
                    panic!("index {i} failed");
                }
            })
        }));
        let msg = caught.expect_err("the panic reaches the caller");
        assert_eq!(msg.downcast_ref::<String>().map(String::as_str), Some("index 37 failed"));
        assert!(ran.load(Ordering::Relaxed) <= 100);
        let after = AtomicUsize::new(0);
        super::range(100, &|_| {
            after.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(after.load(Ordering::Relaxed), 100);
    }

    /// Back-to-back loops from several callers never keep more helpers than the pool has
    /// threads besides the caller (a helper still in its last batch counts: counting only
    /// the idle ones let callers queue extra helpers that then all stayed hot).
    #[test]
    fn helpers_never_outnumber_the_other_threads() {
        let threads = rayon::current_num_threads();
        if threads < 2 {
            eprintln!("skipped: one rayon thread, no helpers");
            return;
        }
        std::thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| {
                    for k in 0..3000 {
                        let total = AtomicUsize::new(0);
                        super::range(32 + k % 7, &|i| {
                            total.fetch_add(i, Ordering::Relaxed);
                        });
                        assert_eq!(total.load(Ordering::Relaxed), (31 + k % 7) * (32 + k % 7) / 2);
                    }
                });
            }
        });
        let most = super::team::census::MOST.load(Ordering::Acquire);
        assert!(most < threads, "{most} helpers at once with {threads} threads");
    }

    #[test]
    fn maps_are_in_order_and_pairs_of_chunks_line_up() {
        let squares = super::map(1000, &|i| vec![i * i]);
        assert!(squares.iter().enumerate().all(|(i, v)| v == &vec![i * i]));
        let tagged = super::map_with(300, &|| 7usize, &|s, i| *s + i);
        assert!(tagged.iter().enumerate().all(|(i, &v)| v == 7 + i));
        let (mut a, mut b) = (vec![0usize; 100], vec![0usize; 33]);
        super::chunks2_mut(&mut a, 3, &mut b, 1, &|i, x, y| {
            x.iter_mut().for_each(|e| *e = i);
            y[0] = i;
        });
        assert!(a.iter().enumerate().all(|(j, &e)| e == (j / 3).min(32) || j >= 99));
        assert!(b.iter().enumerate().all(|(j, &e)| e == j));
        let mut d = vec![1usize; 10];
        assert_eq!(super::chunks_map(&mut d, 4, &|i, ch| i * 10 + ch.len()), vec![4, 14, 22]);
        let mut c = vec![0usize; 50];
        super::chunks_mut_with(&mut c, 7, &|| 1usize, &|s, i, ch| ch.iter_mut().for_each(|e| *e = i + *s));
        assert!(c.iter().enumerate().all(|(j, &e)| e == j / 7 + 1));
    }
}
