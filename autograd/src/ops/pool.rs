//! Pooling. Max pooling sends `g` to the selected input element of each window (indices saved
//! by the forward pass); average pooling spreads `g` evenly over each window (the engine's
//! adjoint kernel); global average pooling is a mean over the spatial axes.

use engine::{Element, Pool2dParams, Tensor};

use crate::backward::FnRule;
use crate::tape::Var;

fn shape4<T: Element>(t: &Tensor<T>) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

impl<'t, T: Element> Var<'t, T> {
    /// Max pooling; `∂x` scatters `g` to the argmax of each window.
    #[track_caller]
    pub fn max_pool2d(&self, p: Pool2dParams) -> Var<'t, T> {
        let (y, idx) = self.value().max_pool2d(p);
        let rule = FnRule {
            name: "max_pool2d",
            // Saved: for every output, the flat h·W + w index of its input element.
            df: move |g: &Tensor<T>, x: &[&Tensor<T>], _: &Tensor<T>, _: &[bool]| {
                Ok(vec![Some(Tensor::max_pool2d_backward(g, &idx, shape4(x[0])))])
            },
        };
        self.tape().push_op(y, &[*self], rule)
    }

    /// Average pooling; `∂x` is the adjoint (each window's share of `g`).
    #[track_caller]
    pub fn avg_pool2d(&self, p: Pool2dParams) -> Var<'t, T> {
        self.unary("avg_pool2d", |x| x.avg_pool2d(p), move |g, x, _| Tensor::avg_pool2d_backward(g, shape4(x), p))
    }

    /// `[N, C, H, W] → [N, C]`, the mean over H and W.
    #[track_caller]
    pub fn global_avg_pool2d(&self) -> Var<'t, T> {
        assert_eq!(self.rank(), 4, "global_avg_pool2d: expected [N, C, H, W], got {:?}", self.shape());
        self.mean(&[2, 3], false)
    }
}

/// The audit cases of this family (collected by [`crate::audit::cases`]).
pub(crate) mod cases {
    use crate::audit_case::families::*;
    use crate::audit_case::inputs::*;
    use crate::audit_case::AuditCase;
    use engine::Pool2dParams;

    pub(crate) fn all(out: &mut Vec<AuditCase>) {
        let mut rng = rng_for("pool", 0);
        let pools = [
            ("2×2, stride 2", [2, 3, 6, 5], View::Contiguous, Pool2dParams::new(2)),
            ("3×3, stride 2, padding 1", [2, 2, 7, 6], View::Permuted, Pool2dParams::new(3).stride(2).padding(1)),
            (
                "3×2, stride (1, 2), padding (1, 0)",
                [1, 3, 6, 6],
                View::Sliced,
                Pool2dParams::new2([3, 2]).stride2([1, 2]).padding2([1, 0]),
            ),
            (
                "3×3, stride 1 (overlapping windows), padding 1",
                [1, 2, 5, 5],
                View::Contiguous,
                Pool2dParams::new(3).stride(1).padding(1),
            ),
            ("2×2, stride 1", [3, 2, 4, 4], View::Broadcast, Pool2dParams::new(2).stride(1)),
        ];
        for (what, xs, view, p) in pools {
            single(out, "max_pool2d", layouts(&[view], &xs, Dom::Distinct, &mut rng, what), move |x| x.max_pool2d(p));
            for include in [true, false] {
                let p = p.count_include_pad(include);
                let inputs = layouts(&[view], &xs, Dom::Any, &mut rng, &format!("{what}, count_include_pad {include}"));
                single(out, "avg_pool2d", inputs, move |x| x.avg_pool2d(p));
            }
        }
        let xs = [2, 3, 4, 5];
        let inputs =
            layouts(&[View::Contiguous, View::Permuted, View::Sliced, View::Broadcast], &xs, Dom::Any, &mut rng, "");
        single(out, "global_avg_pool2d", inputs, |x| x.global_avg_pool2d());
        let x = tensor(Dom::Any, &[2, 3, 1, 1], &mut rng);
        out.push(AuditCase::gradcheck(
            "global_avg_pool2d",
            "broadcast [2, 3, 1, 1]→[2, 3, 4, 5]",
            vec![x],
            default(),
            |_, v| v[0].broadcast_to(&[2, 3, 4, 5]).global_avg_pool2d(),
        ));
    }
}
