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
    (0..n).into_par_iter().for_each(body);
}

/// `body(scratch, i)` for every `i` in `0..n`, with a scratch value made by `init` for each
/// piece of work rayon hands a thread (rayon's `for_each_init`). The scratch is type-erased
/// so that rayon is instantiated once; see [`range_with`] for the typed form.
pub fn range_with_any(
    n: usize,
    init: &(dyn Fn() -> Box<dyn Any> + Sync),
    body: &(dyn Fn(&mut Box<dyn Any>, usize) + Sync),
) {
    (0..n).into_par_iter().for_each_init(init, body);
}

/// Runs `a` and `b`, potentially in parallel (rayon's `join`).
pub fn join(a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
    rayon::join(a, b);
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
