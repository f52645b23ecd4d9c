//! Reference implementations straight from the definition (direct loops in `f64`, no
//! im2col), for tests and benches. They validate shapes like the fast kernels.

use super::{dims4, Conv2dParams, ConvTranspose2dParams, Geom};
use crate::{Element, Tensor};

/// Calls `f(xi, wi, yi)` for every term `x[xi]·W[wi]` of output element `y[yi]` (flat
/// row-major indices), outputs in row-major order and terms in `(c, i, j)` order: the
/// convolution as a bilinear form, which every reference below is written from.
fn terms(g: &Geom, mut f: impl FnMut(usize, usize, usize)) {
    let (cg, og) = (g.cg(), g.og());
    let ([sh, sw], [ph, pw], [dh, dw]) = (g.p.stride, g.p.padding, g.p.dilation);
    let mut yi = 0;
    for n in 0..g.n {
        for o in 0..g.o {
            let c0 = (o / og) * cg;
            for a in 0..g.oh {
                for b in 0..g.ow {
                    for c in 0..cg {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let ih = (a * sh + i * dh) as isize - ph as isize;
                                let iw = (b * sw + j * dw) as isize - pw as isize;
                                if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
                                    continue;
                                }
                                let xi = (((n * g.c + c0 + c) * g.h) + ih as usize) * g.w + iw as usize;
                                let wi = ((o * cg + c) * g.kh + i) * g.kw + j;
                                f(xi, wi, yi);
                            }
                        }
                    }
                    yi += 1;
                }
            }
        }
    }
}

fn out<T: Element>(v: Vec<f64>, shape: [usize; 4]) -> Tensor<T> {
    Tensor::from_vec(v.into_iter().map(T::of).collect(), &shape)
}

fn bias_or_zero<T: Element>(bias: Option<&Tensor<T>>, channels: usize) -> Vec<f64> {
    bias.map_or(vec![0.0; channels], |b| b.to_f64_vec())
}

/// `conv2d` from the definition.
pub fn conv2d<T: Element>(x: &Tensor<T>, w: &Tensor<T>, bias: Option<&Tensor<T>>, p: Conv2dParams) -> Tensor<T> {
    let g = Geom::conv("naive::conv2d", dims4("naive::conv2d", "input", x), dims4("naive::conv2d", "weight", w), p);
    let (xv, wv, bv) = (x.to_f64_vec(), w.to_f64_vec(), bias_or_zero(bias, g.o));
    let l = g.l();
    let mut y: Vec<f64> = (0..g.n * g.o * l).map(|yi| bv[(yi / l) % g.o]).collect();
    terms(&g, |xi, wi, yi| y[yi] += xv[xi] * wv[wi]);
    out(y, g.y_shape())
}

/// `conv2d_backward_input` from the definition: `dx[xi] += g[yi]·W[wi]` over all terms.
pub fn conv2d_backward_input<T: Element>(
    gy: &Tensor<T>,
    w: &Tensor<T>,
    input_hw: [usize; 2],
    p: Conv2dParams,
) -> Tensor<T> {
    let w_shape = dims4("naive", "weight", w);
    let x_shape = [gy.dim(0), w_shape[1] * p.groups, input_hw[0], input_hw[1]];
    let g = Geom::conv("naive::conv2d_backward_input", x_shape, w_shape, p);
    let (gv, wv) = (gy.to_f64_vec(), w.to_f64_vec());
    let mut dx = vec![0.0; g.n * g.c * g.h * g.w];
    terms(&g, |xi, wi, yi| dx[xi] += gv[yi] * wv[wi]);
    out(dx, g.x_shape())
}

/// `conv2d_backward_weight` from the definition: `dW[wi] += g[yi]·x[xi]` over all terms.
pub fn conv2d_backward_weight<T: Element>(
    gy: &Tensor<T>,
    x: &Tensor<T>,
    kernel_hw: [usize; 2],
    p: Conv2dParams,
) -> Tensor<T> {
    let x_shape = dims4("naive", "input", x);
    let w_shape = [gy.dim(1), x_shape[1] / p.groups.max(1), kernel_hw[0], kernel_hw[1]];
    let g = Geom::conv("naive::conv2d_backward_weight", x_shape, w_shape, p);
    let (gv, xv) = (gy.to_f64_vec(), x.to_f64_vec());
    let mut dw = vec![0.0; g.o * g.k()];
    terms(&g, |xi, wi, yi| dw[wi] += gv[yi] * xv[xi]);
    out(dw, g.w_shape())
}

/// `conv_transpose2d` from the definition: every input element `z[n, ci, a, b]` scatters
/// `z·W[ci, co, i, j]` to `out[n, g·C_out/G + co, a·s − p + i·d, b·s − p + j·d]`.
pub fn conv_transpose2d<T: Element>(
    z: &Tensor<T>,
    w: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: ConvTranspose2dParams,
) -> Tensor<T> {
    let g = Geom::transposed("naive::conv_transpose2d", dims4("naive", "input", z), dims4("naive", "weight", w), p);
    let (zv, wv, bv) = (z.to_f64_vec(), w.to_f64_vec(), bias_or_zero(bias, g.c));
    let plane = g.h * g.w;
    let mut y: Vec<f64> = (0..g.n * g.c * plane).map(|xi| bv[(xi / plane) % g.c]).collect();
    terms(&g, |xi, wi, yi| y[xi] += zv[yi] * wv[wi]);
    out(y, g.x_shape())
}

/// `im2col` from the definition (`groups` ignored).
pub fn im2col<T: Element>(x: &Tensor<T>, kernel_hw: [usize; 2], p: Conv2dParams) -> Tensor<T> {
    let x_shape = dims4("naive", "input", x);
    let p = Conv2dParams { groups: 1, ..p };
    // A single output channel whose weight index is exactly the row (c, i, j).
    let g = Geom::conv("naive::im2col", x_shape, [1, x_shape[1], kernel_hw[0], kernel_hw[1]], p);
    let (xv, rows, l) = (x.to_f64_vec(), g.k(), g.l());
    let mut cols = vec![0.0; g.n * rows * l];
    terms(&g, |xi, wi, yi| cols[((yi / l) * rows + wi) * l + yi % l] = xv[xi]);
    Tensor::from_vec(cols.into_iter().map(T::of).collect(), &[g.n, rows, l])
}
