//! The audit cases of the `unary` op family (`autograd::ops::unary`).

use autograd::audit::families::*;
use autograd::audit::inputs::*;
use autograd::audit::AuditCase;

pub(crate) fn all(out: &mut Vec<AuditCase>) {
    unary(out, "neg", "", Dom::Any, |x| x.neg());
    unary(out, "exp", "", Dom::Any, |x| x.exp());
    unary(out, "log", "", Dom::Range(0.2, 3.0), |x| x.log());
    unary(out, "sqrt", "", Dom::Range(0.2, 3.0), |x| x.sqrt());
    unary(out, "abs", "", Dom::Away(&[0.0]), |x| x.abs());
    unary(out, "sign", "", Dom::Away(&[0.0]), |x| x.sign());
    unary(out, "square", "", Dom::Any, |x| x.square());
    unary(out, "recip", "", Dom::Away(&[0.0]), |x| x.recip());
    unary(out, "relu", "", Dom::Away(&[0.0]), |x| x.relu());
    unary(out, "sigmoid", "", Dom::Any, |x| x.sigmoid());
    unary(out, "tanh", "", Dom::Any, |x| x.tanh());
    unary(out, "softplus", "", Dom::Any, |x| x.softplus());
    // α ≠ 1 makes elu's derivative jump at 0 (α = 1 only its second derivative), so both sides
    // of the kink are exercised with distinct slopes.
    unary(out, "elu", "α = 0.7", Dom::Away(&[0.0]), |x| x.elu(0.7));
    unary(out, "elu", "α = 1", Dom::Away(&[0.0]), |x| x.elu(1.0));
    unary(out, "powf", "p = 2.5", Dom::Range(0.2, 2.0), |x| x.powf(2.5));
    unary(out, "powf", "p = −1.5", Dom::Range(0.5, 2.0), |x| x.powf(-1.5));
    unary(out, "powf", "p = 3 (negative inputs)", Dom::Any, |x| x.powf(3.0));
    unary(out, "clamp", "[−0.5, 0.8]", Dom::Away(&[-0.5, 0.8]), |x| x.clamp(-0.5, 0.8));
    unary(out, "soft_threshold", "τ = 0.3", Dom::Away(&[-0.3, 0.3]), |x| x.soft_threshold(0.3));
    unary(out, "add_scalar", "s = 1.5", Dom::Any, |x| x.add_scalar(1.5));
    unary(out, "sub_scalar", "s = 1.5", Dom::Any, |x| x.sub_scalar(1.5));
    unary(out, "rsub_scalar", "s = 1.5", Dom::Any, |x| x.rsub_scalar(1.5));
    unary(out, "mul_scalar", "s = −2.5", Dom::Any, |x| x.mul_scalar(-2.5));
    unary(out, "div_scalar", "s = −2.5", Dom::Any, |x| x.div_scalar(-2.5));
}
