//! The LARS-EN path of [`super::lars_en_compact`] run for [`W`] samples at once, one per vector
//! lane: the CSF layer's tens of thousands of small problems (k = 20 atoms, ~10 events each)
//! are too small to vectorise one at a time, so the vectors run across samples instead.
//!
//! # Layout
//! Every per-atom and per-active-position quantity is stored structure-of-arrays, entry `x` of
//! lane `l` at `x·W + l`: the correlations `c`, the rates `a`, the join bars, the active set,
//! its signs, coefficients, `y = L⁻¹·s` and `u = L⁻ᵀ·y`, the Cholesky factor (`L[i, j]` at
//! `(i·R + j)·W + l`, R rows at most) and the gathered rows `G[Λ_q, :]` (`(q·k + i)·W + l`),
//! so that one pass over an index touches one vector of W lanes. Each lane has its own active
//! set; the loops run to the largest |Λ| of the lanes and the others keep their values (a
//! select, not arithmetic: nothing is added to a lane that does not take part).
//!
//! # Per event
//! * direction for the lanes whose Λ changed: `u = L⁻ᵀ·y` and `a = G_{:,Λ}·u` (vector);
//! * the join search, the leave search and the step (vector, every live lane);
//! * the event of each lane (scalar, per lane): a join appends a row to the lane's factor, a
//!   leave removes one (Givens rotations), the stop makes the lane idle.
//!
//! # Per wave
//! The W lanes are loaded together and run until every path has ended (see `Lanes::run`);
//! then the paths are stored and their KKT equations solved, all W at once (vector), and the
//! next W samples of the chunk are loaded.
//!
//! # Same bits as the per-sample path
//! Every lane runs the per-sample path's operations, in its order, on its own values: the same
//! additions in the same order (`gemv_rows`'s groups of four rows are the sequential sum, and
//! `solve_lt`'s pairs of rows the row loop, which its tests check bit for bit), the same
//! divisions, square roots and `hypot`, the join times of `kernels::join_times` and the same
//! tie rules (the scan `next_join` is tested against). IEEE `+ − × ÷ √` give the same bits in a
//! vector lane as in a scalar register, and Rust never contracts a product and a sum into an
//! FMA. A lane that fails (too many events, a non-PSD pivot, a non-finite code) makes the
//! whole chunk run again on the per-sample path, which returns the error it would have.

use engine::Element;

use super::forward::{ChunkPaths, Problem, State};
use super::kernels::{join_times, NO_JOIN};

/// Samples per group of lanes: 16 f32 lanes are one AVX-512 register.
pub(super) const W: usize = 16;

/// "None" for a lane's leave position and last-left atom.
const NONE: usize = usize::MAX;

/// A lane failed: run the chunk on the per-sample path for its error.
pub(crate) struct Failed;

/// The state of W paths, structure-of-arrays (see the module docs).
pub(crate) struct Lanes<T> {
    k: usize,
    /// Most rows of a factor: min(cap, k), at least 1.
    r: usize,
    live: [bool; W],
    /// Sample index (in the chunk) of each live lane.
    sample: [usize; W],
    lam: [T; W],
    na: [usize; W],
    steps: [usize; W],
    joins: [usize; W],
    leaves: [usize; W],
    just_left: [usize; W],
    skipped: Vec<Vec<usize>>,
    gamma: [T; W],
    win: [usize; W],
    leave: [usize; W],
    // Per atom, `[k][W]`.
    c: Vec<T>,
    a: Vec<T>,
    bar_plus: Vec<T>,
    bar_minus: Vec<T>,
    state: Vec<State>,
    // Per active position, `[r][W]`.
    act: Vec<usize>,
    sign: Vec<T>,
    coef: Vec<T>,
    y: Vec<T>,
    u: Vec<T>,
    /// `[r][r][W]`.
    l: Vec<T>,
    /// `[r][k][W]`: row `Λ_q` of G.
    ga: Vec<T>,
    /// `[r][W]`: the new factor row of each joining lane, and its `‖z‖²` and `s − z·y`.
    nrow: Vec<T>,
    ss: [T; W],
    ydot: [T; W],
    /// Scalar scratch: the removal's `v`.
    work: Vec<T>,
    // The finished paths of the chunk, in the order they finished.
    done_atoms: Vec<usize>,
    done_factors: Vec<T>,
    /// Per sample of the chunk: (offset in `done_atoms`, |Λ|, offset in `done_factors`, cap).
    done: Vec<(usize, usize, usize, bool)>,
    sums: [usize; 4],
    /// Lanes whose path ended in this wave, and their final (|Λ|, cap reached).
    pending: [bool; W],
    fin: [(usize, bool); W],
}

impl<T: Element> Lanes<T> {
    pub(super) fn new(k: usize, cap: usize) -> Self {
        let r = cap.min(k).max(1);
        let z = T::zero();
        let mut lanes = Lanes {
            k,
            r,
            live: [false; W],
            sample: [0; W],
            lam: [z; W],
            na: [0; W],
            steps: [0; W],
            joins: [0; W],
            leaves: [0; W],
            just_left: [NONE; W],
            skipped: vec![Vec::new(); W],
            gamma: [z; W],
            win: [NO_JOIN; W],
            leave: [NONE; W],
            c: vec![z; k * W],
            a: vec![z; k * W],
            bar_plus: vec![z; k * W],
            bar_minus: vec![z; k * W],
            state: vec![State::Inactive; k * W],
            act: vec![0; r * W],
            sign: vec![z; r * W],
            coef: vec![z; r * W],
            y: vec![z; r * W],
            u: vec![z; r * W],
            l: vec![z; r * r * W],
            ga: vec![z; r * k * W],
            nrow: vec![z; r * W],
            ss: [z; W],
            ydot: [z; W],
            work: vec![z; r + 1],
            done_atoms: Vec::new(),
            done_factors: Vec::new(),
            done: Vec::new(),
            sums: [0; 4],
            pending: [false; W],
            fin: [(0, false); W],
        };
        for i in 0..r {
            for l in 0..W {
                let at = lanes.li(i, i, l);
                lanes.l[at] = T::one();
            }
        }
        lanes
    }

    /// Makes row `i` of lane `l`'s factor padding (see [`Lanes::direction`]).
    fn pad_row(&mut self, i: usize, l: usize) {
        for j in 0..i {
            let at = self.li(i, j, l);
            self.l[at] = T::zero();
        }
        let at = self.li(i, i, l);
        self.l[at] = T::one();
        self.y[i * W + l] = T::zero();
    }

    #[inline(always)]
    fn li(&self, i: usize, j: usize, l: usize) -> usize {
        (i * self.r + j) * W + l
    }

    /// `set_state` of the per-sample workspace, for lane `l`.
    fn set_state(&mut self, j: usize, l: usize, s: State, positive: bool) {
        let (open, shut) = (T::zero(), T::infinity());
        self.state[j * W + l] = s;
        let may = s == State::Inactive;
        self.bar_plus[j * W + l] = if may { open } else { shut };
        self.bar_minus[j * W + l] = if may && !positive { open } else { shut };
    }

    fn release_just_left(&mut self, l: usize, positive: bool) {
        let j = std::mem::replace(&mut self.just_left[l], NONE);
        if j != NONE && self.state[j * W + l] == State::Inactive {
            self.set_state(j, l, State::Inactive, positive);
        }
    }

    /// Loads the next samples of the chunk into lane `l` until one has a non-empty path
    /// (samples with λ1 ≥ max |c_j| are finished at once, as `solve_path` returns them); the
    /// lane goes idle when the chunk has no sample left.
    fn fill(&mut self, l: usize, p: &Problem<'_, T>, c_all: &[T], next: &mut usize) {
        let k = self.k;
        let n = self.done.len();
        while *next < n {
            let s = *next;
            *next += 1;
            let c0 = &c_all[s * k..(s + 1) * k];
            let lam = c0.iter().fold(T::zero(), |m, &v| m.max(if p.positive { v } else { v.abs() }));
            if lam <= p.lambda1 {
                // α = 0: the codes row stays zero, Λ is empty.
                self.done[s] = (0, 0, 0, false);
                continue;
            }
            let minus = if p.positive { T::infinity() } else { T::zero() };
            for (j, &v) in c0.iter().enumerate() {
                self.c[j * W + l] = v;
                self.state[j * W + l] = State::Inactive;
                self.bar_plus[j * W + l] = T::zero();
                self.bar_minus[j * W + l] = minus;
            }
            self.just_left[l] = NONE;
            self.skipped[l].clear();
            self.na[l] = 0;
            self.lam[l] = lam;
            self.steps[l] = 0;
            self.joins[l] = 0;
            self.leaves[l] = 0;
            self.live[l] = true;
            self.sample[l] = s;
            return;
        }
        self.live[l] = false;
    }

    /// The end of lane `l`'s path: the lane goes idle with its active set, factor, signs and
    /// λ kept as they are until the wave ends ([`Lanes::finish_wave`]); the vector passes,
    /// which run to the longest active set of the live lanes, compute values in its lane
    /// that nothing reads (its γ is 0).
    fn finish(&mut self, l: usize, hit_cap: bool) {
        self.pending[l] = true;
        self.fin[l] = (self.na[l], hit_cap);
        self.na[l] = 0;
        self.sums[0] += self.steps[l];
        self.sums[1] += self.joins[l];
        self.sums[2] += self.leaves[l];
        self.sums[3] += self.skipped[l].len();
    }

    /// The end of a wave (every lane idle): for each path that ended in it, its active set
    /// and factor (packed by rows) are kept for the chunk's output, and the KKT equations on
    /// (Λ, s) at its λ, `L·Lᵀ·α_Λ = c_Λ − λ·s`, are solved for all of them at once, one per
    /// lane, with the per-sample arithmetic (`Cholesky::solve_in_place`: the forward
    /// substitution row by row, then the backward one). A lane's rows past its |Λ| are padding
    /// (`L_ii = 1`, `L_ij = +0`, right-hand side `+0`), which its real rows never read in the
    /// forward pass and which subtract `(+0)·(+0)` in the backward one. Then the codes rows
    /// (a coefficient whose sign disagrees with its atom's set to zero), and every factor is
    /// padding again. `Err` if a code is not finite.
    #[inline(always)]
    fn finish_wave(&mut self, c_all: &[T], out: &mut [T]) -> Result<(), Failed> {
        let k = self.k;
        let maxf = (0..W).filter(|&l| self.pending[l]).map(|l| self.fin[l].0).max().unwrap_or(0);
        // `y` is free at the end of a wave: the right-hand sides go there, `L⁻¹·b` stays
        // there, and the codes `L⁻ᵀ·L⁻¹·b` go to `u` (rows past `maxf` are not read).
        self.y[..maxf * W].fill(T::zero());
        for l in (0..W).filter(|&l| self.pending[l]) {
            let (s, (na, hit_cap), lam) = (self.sample[l], self.fin[l], self.lam[l]);
            let c0 = &c_all[s * k..(s + 1) * k];
            let (ao, fo) = (self.done_atoms.len(), self.done_factors.len());
            for i in 0..na {
                let (j, sg) = (self.act[i * W + l], self.sign[i * W + l]);
                self.done_atoms.push(j);
                self.y[i * W + l] = c0[j] - lam * sg;
                for q in 0..=i {
                    let v = self.l[self.li(i, q, l)];
                    self.done_factors.push(v);
                }
            }
            self.done[s] = (ao, na, fo, hit_cap);
        }
        let r = self.r;
        forward_lanes(&self.l, r, maxf, &mut self.y);
        backward_lanes(&self.l, r, maxf, &self.y, &mut self.u);
        let pending = std::mem::replace(&mut self.pending, [false; W]);
        for l in (0..W).filter(|&l| pending[l]) {
            let (s, (na, _)) = (self.sample[l], self.fin[l]);
            let o = &mut out[s * k..(s + 1) * k];
            for i in 0..na {
                let (v, sg) = (self.u[i * W + l], self.sign[i * W + l]);
                if !v.is_finite() {
                    return Err(Failed);
                }
                o[self.act[i * W + l]] = if v * sg < T::zero() { T::zero() } else { v };
            }
        }
        self.reset_rows(maxf);
        Ok(())
    }

    /// Makes rows `0..rows` of every lane's factor padding, and `y` there `+0`.
    #[inline(always)]
    fn reset_rows(&mut self, rows: usize) {
        let r = self.r;
        for i in 0..rows {
            self.l[i * r * W..(i * r + i) * W].fill(T::zero());
            self.l[(i * r + i) * W..(i * r + i + 1) * W].fill(T::one());
        }
        self.y[..rows * W].fill(T::zero());
    }

    /// Atom `j` reaches `c_j = s·λ` on lane `l`: `Cholesky::try_append`'s arithmetic on the
    /// lane's factor, then the per-sample path's bookkeeping.
    fn join(&mut self, l: usize, j: usize, sgn: T, p: &Problem<'_, T>) -> Result<Joined, Failed> {
        let (k, na, g) = (self.k, self.na[l], p.g);
        // The forward substitution is done (`append_rows`, all joining lanes at once).
        let ss = self.ss[l];
        let diag = g[j * k + j];
        let d = diag - ss;
        let floor = p.floor * T::epsilon().as_f64() * diag.as_f64().max(0.0);
        let d64 = d.as_f64();
        if !(d64.is_finite() && d64 > floor) {
            if !(d64.is_finite() && d64 >= -floor) {
                return Err(Failed);
            }
            // Numerically dependent on Λ: skipped, the direction is kept.
            self.set_state(j, l, State::Skipped, p.positive);
            self.skipped[l].push(j);
            return Ok(Joined::Skipped);
        }
        let pivot = d.sqrt();
        if na + 1 > p.cap {
            return Ok(Joined::Cap);
        }
        for q in 0..na {
            let at = self.li(na, q, l);
            self.l[at] = self.nrow[q * W + l];
        }
        let at = self.li(na, na, l);
        self.l[at] = pivot;
        self.act[na * W + l] = j;
        self.sign[na * W + l] = sgn;
        // `forward_from`: y_na = (s − Σ L[na, q]·y_q) / L[na, na], the sum from `append_rows`.
        self.y[na * W + l] = self.ydot[l] / pivot;
        self.coef[na * W + l] = T::zero();
        for i in 0..k {
            self.ga[(na * k + i) * W + l] = g[j * k + i];
        }
        self.na[l] = na + 1;
        self.release_just_left(l, p.positive);
        self.set_state(j, l, State::Active, p.positive);
        self.joins[l] += 1;
        Ok(Joined::Yes)
    }

    /// For every lane whose event is a join: the new factor row `L[na, 0..na]` of
    /// `Cholesky::try_append` (the forward substitution `L·z = G[Λ, j]`, into `nrow`), its
    /// `‖z‖²` (into `ss`) and `s − Σ z_q·y_q` (into `ydot`), vector over the lanes. Rows past
    /// a lane's |Λ| are padding with `G = +0` there, so `z = +0` and nothing changes.
    #[inline(always)]
    fn append_rows(&mut self, p: &Problem<'_, T>) {
        let (k, r, maxn) = (self.k, self.r, self.max_active());
        let mut sign = [T::one(); W];
        let mut any = false;
        self.nrow[..maxn * W].fill(T::zero());
        for (l, sg) in sign.iter_mut().enumerate() {
            if !(self.live[l] && self.leave[l] == NONE && self.win[l] != NO_JOIN) {
                continue;
            }
            any = true;
            let row = &p.g[self.win[l] / 2 * k..][..k];
            for i in 0..self.na[l] {
                self.nrow[i * W + l] = row[self.act[i * W + l]];
            }
            if self.win[l] % 2 == 1 {
                *sg = -T::one();
            }
        }
        if !any {
            return;
        }
        forward_lanes(&self.l, r, maxn, &mut self.nrow);
        let mut ss = [T::zero(); W];
        for q in 0..maxn {
            let (zq, yq) = (load(&self.nrow, q * W), load(&self.y, q * W));
            for l in 0..W {
                ss[l] += zq[l] * zq[l];
            }
            for ((s, &z), &y) in sign.iter_mut().zip(&zq).zip(&yq) {
                *s -= z * y;
            }
        }
        self.ss = ss;
        self.ydot = sign;
    }

    /// The coefficient at position `q` of lane `l`'s Λ reaches zero: the atom leaves
    /// (`Cholesky::remove`'s rotations on the lane's factor, then `y` from `q` on).
    fn leave(&mut self, l: usize, q: usize, p: &Problem<'_, T>) {
        let (k, na) = (self.k, self.na[l]);
        let (j, s) = (self.act[q * W + l], self.sign[q * W + l]);
        for i in q + 1..na {
            self.act[(i - 1) * W + l] = self.act[i * W + l];
            self.sign[(i - 1) * W + l] = self.sign[i * W + l];
            self.coef[(i - 1) * W + l] = self.coef[i * W + l];
            for a in 0..k {
                self.ga[((i - 1) * k + a) * W + l] = self.ga[(i * k + a) * W + l];
            }
        }
        for r in q + 1..na {
            self.work[r - 1 - q] = self.l[self.li(r, q, l)];
            for c in 0..q {
                let v = self.l[self.li(r, c, l)];
                let at = self.li(r - 1, c, l);
                self.l[at] = v;
            }
            for c in q + 1..=r {
                let v = self.l[self.li(r, c, l)];
                let at = self.li(r - 1, c - 1, l);
                self.l[at] = v;
            }
        }
        let m = na - 1;
        for kk in q..m {
            let lkk = self.l[self.li(kk, kk, l)];
            let xk = self.work[kk - q];
            let r = lkk.hypot(xk);
            let c = r / lkk;
            let sn = xk / lkk;
            let at = self.li(kk, kk, l);
            self.l[at] = r;
            for jj in kk + 1..m {
                let at = self.li(jj, kk, l);
                let ljk = (self.l[at] + sn * self.work[jj - q]) / c;
                self.l[at] = ljk;
                self.work[jj - q] = c * self.work[jj - q] - sn * ljk;
            }
        }
        self.na[l] = m;
        self.pad_row(m, l);
        for i in q..m {
            let mut acc = self.sign[i * W + l];
            for c in 0..i {
                acc -= self.l[self.li(i, c, l)] * self.y[c * W + l];
            }
            self.y[i * W + l] = acc / self.l[self.li(i, i, l)];
        }
        self.release_just_left(l, p.positive);
        self.set_state(j, l, State::Inactive, p.positive);
        while let Some(a) = self.skipped[l].pop() {
            self.set_state(a, l, State::Inactive, p.positive);
        }
        if s == T::one() {
            self.bar_plus[j * W + l] = T::infinity();
        } else {
            self.bar_minus[j * W + l] = T::infinity();
        }
        self.just_left[l] = j;
        self.leaves[l] += 1;
    }

    /// `u = L⁻ᵀ·y` and `a = G_{:,Λ}·u` on every lane (vector over lanes; the row loops of
    /// `kernels::solve_lt` and `kernels::gemv_rows`), over the rows of the longest active
    /// set. A lane's rows past its |Λ| are padding that changes nothing: `L[i, i] = 1`,
    /// `L[i, j<i] = +0`, `y_i = +0`, so its `x_i = +0`, every `u_j − (+0)·(+0)` is `u_j` and
    /// every `a_i + (+0)·G` is `a_i` (a sum that starts at +0 is never −0). A lane whose last
    /// event was a skip gets the direction it had (the same inputs, the same bits).
    #[inline(always)]
    fn direction(&mut self) {
        let (k, r, maxn) = (self.k, self.r, self.max_active());
        backward_lanes(&self.l, r, maxn, &self.y, &mut self.u);
        // `a_i = Σ_q u_q·G[Λ_q, i]` from +0, q in order, in a register; four atoms at a time,
        // so that four independent sums hide the latency of the additions (each atom's sum is
        // still the sequential one).
        let mut i = 0;
        while i + 4 <= k {
            let mut acc = [[T::zero(); W]; 4];
            for q in 0..maxn {
                let uq = load(&self.u, q * W);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let gr = load(&self.ga, (q * k + i + t) * W);
                    for l in 0..W {
                        acc[l] += uq[l] * gr[l];
                    }
                }
            }
            for (t, acc) in acc.into_iter().enumerate() {
                store(&mut self.a, (i + t) * W, acc);
            }
            i += 4;
        }
        for i in i..k {
            let mut acc = [T::zero(); W];
            for q in 0..maxn {
                let (uq, gr) = (load(&self.u, q * W), load(&self.ga, (q * k + i) * W));
                for l in 0..W {
                    acc[l] += uq[l] * gr[l];
                }
            }
            store(&mut self.a, i * W, acc);
        }
    }

    /// The largest |Λ| of the live lanes (idle lanes have |Λ| = 0).
    #[inline(always)]
    fn max_active(&self) -> usize {
        self.na.iter().fold(0, |m, &n| m.max(n))
    }

    /// The next event of every live lane: the join scan (`kernels::next_join`'s result: the
    /// smallest time, ties to the lower atom and then to `+λ`), then the leaves (a time kept
    /// only if strictly smaller), as in `solve_path`. Padding rows have `u = +0`: no leave.
    /// Idle lanes get γ = 0 (their step changes nothing).
    #[inline(always)]
    fn search(&mut self, p: &Problem<'_, T>) -> Result<(), Failed> {
        let k = self.k;
        for l in 0..W {
            if self.live[l] {
                self.steps[l] += 1;
                if self.steps[l] > p.max_steps {
                    return Err(Failed);
                }
            }
        }
        let (lam, zero) = (self.lam, T::zero());
        let mut gamma = [zero; W];
        for l in 0..W {
            gamma[l] = lam[l] - p.lambda1;
        }
        let mut win = [u32::MAX; W];
        for j in 0..k {
            let (c, a) = (load(&self.c, j * W), load(&self.a, j * W));
            let (bp, bm) = (load(&self.bar_plus, j * W), load(&self.bar_minus, j * W));
            let (jp, jm) = (2 * j as u32, 2 * j as u32 + 1);
            for l in 0..W {
                let (tp, tm) = join_times(c[l], a[l], bp[l], bm[l], lam[l]);
                let g1 = if tp < gamma[l] { tp } else { gamma[l] };
                win[l] = if tp < gamma[l] { jp } else { win[l] };
                gamma[l] = if tm < g1 { tm } else { g1 };
                win[l] = if tm < g1 { jm } else { win[l] };
            }
        }
        let maxn = self.max_active();
        let mut leave = [u32::MAX; W];
        for q in 0..maxn {
            let (u, s, a) = (load(&self.u, q * W), load(&self.sign, q * W), load(&self.coef, q * W));
            for l in 0..W {
                let t = (-a[l] / u[l]).max(zero);
                let take = u[l] * s[l] < zero && t < gamma[l];
                gamma[l] = if take { t } else { gamma[l] };
                leave[l] = if take { q as u32 } else { leave[l] };
            }
        }
        for l in 0..W {
            self.gamma[l] = if self.live[l] { gamma[l] } else { zero };
            self.win[l] = if win[l] == u32::MAX { NO_JOIN } else { win[l] as usize };
            self.leave[l] = if leave[l] == u32::MAX { NONE } else { leave[l] as usize };
        }
        Ok(())
    }

    /// The step of every lane: `α_Λ += γ·u`, `c −= γ·a`, `λ −= γ` (padding coefficients are
    /// not read; idle lanes have γ = 0).
    #[inline(always)]
    fn step(&mut self) {
        let (k, gamma, maxn) = (self.k, self.gamma, self.max_active());
        for q in 0..maxn {
            let (u, mut a) = (load(&self.u, q * W), load(&self.coef, q * W));
            for l in 0..W {
                a[l] += gamma[l] * u[l];
            }
            store(&mut self.coef, q * W, a);
        }
        for j in 0..k {
            let (a, mut c) = (load(&self.a, j * W), load(&self.c, j * W));
            for l in 0..W {
                c[l] -= gamma[l] * a[l];
            }
            store(&mut self.c, j * W, c);
        }
        for (lam, &g) in self.lam.iter_mut().zip(&gamma) {
            *lam -= g;
        }
    }

    /// Every path of a chunk of `n` samples (`c_all` their correlations `[n, k]`, `out` their
    /// codes `[n, k]`, zero on entry), in the flat form of the per-sample loop.
    ///
    /// The samples run in waves of W: a lane whose path ends stays idle until every lane of
    /// the wave has ended, and then all W are loaded with the next samples. The vector passes
    /// run to the longest active set of the W lanes. In a wave the lanes' active sets grow
    /// together from empty, so that length is small early in the wave; a lane loaded as soon
    /// as another ended would keep it near the longest path's all the time. That saves more
    /// than the lanes left idle in a wave's tail cost (measured: bench/README.md, 2026-12-08).
    /// Each lane's arithmetic, and so every bit, is the same either way.
    #[inline(always)]
    fn run(&mut self, p: &Problem<'_, T>, c_all: &[T], out: &mut [T], n: usize) -> Result<ChunkPaths<T>, Failed> {
        self.done.clear();
        self.done.resize(n, (0, 0, 0, false));
        self.done_atoms.clear();
        self.done_factors.clear();
        self.sums = [0; 4];
        // A chunk whose lane failed leaves its lanes as they were: padding again.
        self.reset_rows(self.r);
        self.na = [0; W];
        self.live = [false; W];
        self.pending = [false; W];
        let mut next = 0;
        for l in 0..W {
            self.fill(l, p, c_all, &mut next);
        }
        while self.live.iter().any(|&b| b) {
            self.direction();
            self.search(p)?;
            self.step();
            self.append_rows(p);
            for l in 0..W {
                if !self.live[l] {
                    continue;
                }
                let (leave, win) = (self.leave[l], self.win[l]);
                let end = if leave != NONE {
                    self.leave(l, leave, p);
                    None
                } else if win != NO_JOIN {
                    let s = if win % 2 == 0 { T::one() } else { -T::one() };
                    match self.join(l, win / 2, s, p)? {
                        Joined::Cap => Some(true),
                        Joined::Yes | Joined::Skipped => None,
                    }
                } else {
                    self.lam[l] = p.lambda1;
                    Some(false)
                };
                if let Some(hit_cap) = end {
                    self.finish(l, hit_cap);
                    self.live[l] = false;
                }
            }
            // Waves: the lanes are loaded again only once all of them are idle (see
            // `Lanes::run`).
            if !self.live.iter().any(|&b| b) {
                self.finish_wave(c_all, out)?;
                for l in 0..W {
                    self.fill(l, p, c_all, &mut next);
                }
            }
        }
        // The chunk's buffers move out whole (the next chunk starts new ones of the same
        // capacity): nothing is copied.
        let (ca, cf) = (self.done_atoms.capacity(), self.done_factors.capacity());
        let part = ChunkPaths {
            atoms: std::mem::replace(&mut self.done_atoms, Vec::with_capacity(ca)),
            factors: std::mem::replace(&mut self.done_factors, Vec::with_capacity(cf)),
            index: std::mem::take(&mut self.done),
            sums: self.sums,
        };
        Ok(part)
    }
}

/// `b ← L⁻¹·b` on every lane, rows `0..n` of the factors `l` (row stride `r`, `[r][r][W]`):
/// `z_i = (b_i − L_i0·z_0 − L_i1·z_1 − …) / L_ii`, the subtractions in the order of the
/// columns (`engine::linalg::forward_substitute`'s row sums), in a register.
#[inline(always)]
fn forward_lanes<T: Element>(l: &[T], r: usize, n: usize, b: &mut [T]) {
    for i in 0..n {
        let mut acc = load(b, i * W);
        for q in 0..i {
            let (lq, zq) = (load(l, (i * r + q) * W), load(b, q * W));
            for t in 0..W {
                acc[t] -= lq[t] * zq[t];
            }
        }
        let d = load(l, (i * r + i) * W);
        for t in 0..W {
            acc[t] /= d[t];
        }
        store(b, i * W, acc);
    }
}

/// `x = L⁻ᵀ·y` on every lane, rows `0..n` (layout as [`forward_lanes`]):
/// `x_j = (y_j − L[n−1, j]·x_{n−1} − … − L[j+1, j]·x_{j+1}) / L[j, j]`, the subtractions in
/// the order of the row loop of `Cholesky::solve_upper` (row n−1's term first), in a
/// register. Whole vectors are loaded into locals, so that the compiler sees no aliasing
/// between the buffers and keeps each loop one vector operation.
#[inline(always)]
fn backward_lanes<T: Element>(l: &[T], r: usize, n: usize, y: &[T], x: &mut [T]) {
    for j in (0..n).rev() {
        let mut acc = load(y, j * W);
        for i in (j + 1..n).rev() {
            let (lij, xi) = (load(l, (i * r + j) * W), load(x, i * W));
            for t in 0..W {
                acc[t] -= lij[t] * xi[t];
            }
        }
        let d = load(l, (j * r + j) * W);
        for t in 0..W {
            acc[t] /= d[t];
        }
        store(x, j * W, acc);
    }
}

/// The W lanes of `v` from `at`.
#[inline(always)]
fn load<T: Copy>(v: &[T], at: usize) -> [T; W] {
    v[at..at + W].try_into().expect("W lanes")
}

/// Stores W lanes into `v` at `at`.
#[inline(always)]
fn store<T: Copy>(v: &mut [T], at: usize, x: [T; W]) {
    v[at..at + W].copy_from_slice(&x);
}

/// What a lane's join did.
enum Joined {
    Yes,
    /// Numerically dependent: skipped.
    Skipped,
    /// The cap stopped the path.
    Cap,
}

engine::dispatched! {
    /// The paths of a chunk of `n` samples by [`Lanes`] (`Lanes::run`), its vector loops
    /// compiled for `level` (the scalar per-lane steps are shared). `Err` if a lane failed:
    /// the caller then runs the chunk on the per-sample path, which returns the error.
    pub(super) fn solve_chunk<T>(lanes: &mut Lanes<T>, p: &Problem<'_, T>, c_all: &[T], out: &mut [T], n: usize)
        -> Result<ChunkPaths<T>, Failed> = run_imp
}

#[inline(always)]
fn run_imp<T: Element>(
    lanes: &mut Lanes<T>,
    p: &Problem<'_, T>,
    c_all: &[T],
    out: &mut [T],
    n: usize,
) -> Result<ChunkPaths<T>, Failed> {
    lanes.run(p, c_all, out, n)
}

#[cfg(test)]
mod tests {
    use super::super::forward::{gram, solve_batch_compact, CompactPaths};
    use super::super::kernels::Isa;
    use super::*;
    use crate::lars::{lars_en, lars_en_compact, LarsConfig};
    use engine::kernels::matmul::MatRef;
    use engine::{Rng, Tensor};

    /// What the cases exercised, summed.
    #[derive(Default, Debug)]
    struct Seen {
        samples: usize,
        empty: usize,
        leaves: usize,
        skipped: usize,
        capped: usize,
    }

    fn bits<T: Element>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.as_f64().to_bits()).collect()
    }

    /// The lanes (every instruction set, the batch cut into two chunks of uneven sizes so the
    /// lanes are reused) against the per-sample compact path, bit for bit: codes, active sets
    /// in factor order, factors, cap flags and counters. No lane may fail (no fallback).
    fn compare<T: Element>(d: &Tensor<f64>, x: &Tensor<f64>, cfg: &LarsConfig, what: &str, seen: &mut Seen) {
        let (d, x) = (d.cast::<T>(), x.cast::<T>());
        let (k, n) = (d.dim(1), x.dim(0));
        let g = gram(MatRef::of(&d), T::of(cfg.lambda2));
        let c = x.matmul(&d).to_vec();
        let (codes, want) = solve_batch_compact("t", &g, k, &c, n, cfg, false).expect("reference");
        let p = Problem::new("t", &g, k, cfg);
        for level in Isa::available() {
            let mut lanes = Lanes::new(k, p.cap);
            let mut out = vec![T::zero(); n * k];
            let split = n / 3;
            let (o1, o2) = out.split_at_mut(split * k);
            let a = solve_chunk(level, &mut lanes, &p, &c[..split * k], o1, split);
            let b = solve_chunk(level, &mut lanes, &p, &c[split * k..], o2, n - split);
            let (Ok(a), Ok(b)) = (a, b) else { panic!("{what} {}: a lane failed", level.name()) };
            let got = CompactPaths::from_parts(vec![a, b], split);
            let at = format!("{what} {} {}", T::DTYPE, level.name());
            assert_eq!(bits(&out), bits(&codes.to_vec()), "{at}: codes");
            assert_eq!(got.len(), n, "{at}: samples");
            for s in 0..n {
                assert_eq!(got.active(s), want.active(s), "{at}: sample {s}'s active set");
                assert_eq!(bits(got.factor(s)), bits(want.factor(s)), "{at}: sample {s}'s factor");
                assert_eq!(got.hit_cap(s), want.hit_cap(s), "{at}: sample {s}'s cap");
            }
            let sums = |p: &CompactPaths<T>| [p.steps, p.joins, p.leaves, p.skipped];
            assert_eq!(sums(&got), sums(&want), "{at}: counters");
        }
        seen.samples += n;
        seen.empty += (0..n).filter(|&s| want.active(s).is_empty()).count();
        seen.leaves += want.leaves;
        seen.skipped += want.skipped;
        seen.capped += (0..n).filter(|&s| want.hit_cap(s)).count();
    }

    fn unit_columns(mut d: Vec<f64>, m: usize, k: usize) -> Tensor<f64> {
        for j in 0..k {
            let nrm = (0..m).map(|i| d[i * k + j].powi(2)).sum::<f64>().sqrt();
            (0..m).for_each(|i| d[i * k + j] /= nrm);
        }
        Tensor::from_vec(d, &[m, k])
    }

    /// Atoms sharing a few common directions: coherent dictionaries, whose paths have leaves.
    fn correlated(m: usize, k: usize, rng: &mut Rng) -> Tensor<f64> {
        let r = 3;
        let a: Vec<f64> = (0..m * r).map(|_| rng.normal()).collect();
        let b: Vec<f64> = (0..r * k).map(|_| rng.normal()).collect();
        let d = (0..m * k)
            .map(|e| {
                let (i, j) = (e / k, e % k);
                (0..r).map(|p| a[i * r + p] * b[p * k + j]).sum::<f64>() + 0.3 * rng.normal()
            })
            .collect();
        unit_columns(d, m, k)
    }

    /// λ1 as a fraction of the mean over the samples of max_j |d_jᵀx|.
    fn lambda1(d: &Tensor<f64>, x: &Tensor<f64>, frac: f64) -> f64 {
        let (c, k) = (x.matmul(d).to_vec(), d.dim(1));
        let n = x.dim(0).max(1);
        frac * c.chunks(k.max(1)).map(|r| r.iter().fold(0.0f64, |m, v| m.max(v.abs()))).sum::<f64>() / n as f64
    }

    #[test]
    fn lanes_give_the_bits_of_the_per_sample_path() {
        let mut rng = Rng::new(41);
        let mut seen = Seen::default();
        // Batch sizes around multiples of the lane count, dictionaries from 1 to 50 atoms.
        for (m, k, n) in [(25, 20, 531), (25, 20, 17), (6, 1, 33), (4, 3, 15), (9, 12, 1), (20, 50, 47), (25, 20, 16)] {
            for dict in 0..2 {
                let d = if dict == 0 {
                    unit_columns((0..m * k).map(|_| rng.normal()).collect(), m, k)
                } else {
                    correlated(m, k, &mut rng)
                };
                let mut xv: Vec<f64> = (0..n * m).map(|_| rng.normal()).collect();
                // Zero patches (an image's flat background) and exact copies of atoms.
                for s in 0..n {
                    match s % 11 {
                        3 => xv[s * m..(s + 1) * m].fill(0.0),
                        7 => (0..m).for_each(|i| xv[s * m + i] = d.to_vec()[i * k + s % k]),
                        _ => {}
                    }
                }
                let x = Tensor::from_vec(xv, &[n, m]);
                for (frac, l2, positive, cap) in [
                    (0.25, 0.01, false, None),
                    (0.02, 0.0, false, None),
                    (0.1, 0.01, true, None),
                    (0.05, 0.0, false, Some(3)),
                    (0.6, 0.01, false, Some(1)),
                    (5.0, 0.01, false, None),
                ] {
                    let mut cfg = LarsConfig::new(lambda1(&d, &x, frac), l2).positive(positive);
                    cfg.max_active = cap;
                    let what = format!("m={m} k={k} n={n} dict={dict} λ1={frac}· λ2={l2} pos={positive} cap={cap:?}");
                    compare::<f32>(&d, &x, &cfg, &what, &mut seen);
                    compare::<f64>(&d, &x, &cfg, &what, &mut seen);
                }
            }
        }
        // Duplicate, negated and zero atoms with λ2 = 0: skipped atoms (and leaves).
        for trial in 0..6 {
            let (m, k, n) = (10 + trial, 20, 77);
            let mut dv = correlated(m, k, &mut rng).to_vec();
            for i in 0..m {
                dv[i * k + 5] = dv[i * k];
                dv[i * k + 9] = -dv[i * k + 1];
                dv[i * k + 13] = 0.5 * (dv[i * k + 2] + dv[i * k + 3]);
                dv[i * k + 17] = 0.0;
            }
            let d = Tensor::from_vec(dv, &[m, k]);
            let x = Tensor::from_vec((0..n * m).map(|_| rng.normal()).collect(), &[n, m]);
            let cfg = LarsConfig::new(lambda1(&d, &x, 0.03), 0.0);
            compare::<f64>(&d, &x, &cfg, &format!("dependent atoms {trial}"), &mut seen);
            compare::<f32>(&d, &x, &cfg, &format!("dependent atoms {trial}"), &mut seen);
        }
        eprintln!("{seen:?}");
        assert!(seen.empty > 100 && seen.leaves > 100 && seen.skipped > 10 && seen.capped > 100, "{seen:?}");
    }

    /// A failing lane makes the chunk run on the per-sample path: the same error as `lars_en`.
    #[test]
    fn a_failing_lane_gives_the_per_sample_error() {
        let mut rng = Rng::new(42);
        let (m, k, n) = (25, 20, 100);
        let d = correlated(m, k, &mut rng);
        let x = Tensor::from_vec((0..n * m).map(|_| rng.normal()).collect(), &[n, m]);
        let cfg = LarsConfig::new(lambda1(&d, &x, 0.05), 0.01).max_steps(6);
        let want = lars_en(&d, &x, &cfg).unwrap_err();
        assert_eq!(lars_en_compact(&d, &x, &cfg).unwrap_err(), want);
        assert!(matches!(want, crate::SparseError::PathTooLong { .. }), "{want}");
    }
}
