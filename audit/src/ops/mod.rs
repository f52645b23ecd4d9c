//! The cases of the built-in ops (`autograd::ops`), one file per op family.

mod binary;
mod conv;
mod index;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod shape;
mod softmax;
mod unary;

use autograd::audit::AuditCase;

/// Every family's cases, in the order of `autograd::ops::RULES`.
pub(crate) fn all(out: &mut Vec<AuditCase>) {
    unary::all(out);
    binary::all(out);
    reduce::all(out);
    shape::all(out);
    matmul::all(out);
    softmax::all(out);
    index::all(out);
    conv::all(out);
    pool::all(out);
    norm::all(out);
}
