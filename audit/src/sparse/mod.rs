//! The cases of the sparse-coding rules (`sparse`), one file per rule family. Every coding
//! case is built on inputs at least [`sparse::audit::KINK_MARGIN`] from a change of active set
//! (redrawn with [`sparse::audit::regenerate`] otherwise, never checked with looser
//! tolerances); every case uses the default checker options.

mod csc;
mod dcea;
mod dct;
mod scl;
mod sf;

use autograd::audit::AuditCase;

/// `sf` (with fixed and learned λ), `csf`, `sf_loss`, `csf_loss`, the CSC layer
/// (`csc_unrolled`, `csc_implicit`), the three NLLs and the three rules of the unfolded DCEA
/// encoder (`dcea_iteration`, `dcea_decode`, `dcea_threshold`) and the whole unfolded DCEA
/// (labelled `dcea`, a composite), `sc_loss`, and `dct_conv` (the fixed DCT convolution, a
/// composite of `conv2d` and `relu`).
pub(crate) fn all(out: &mut Vec<AuditCase>) {
    sf::sf_cases(out, "sf");
    sf::sf_cases(out, "sf_loss");
    sf::csf_cases(out, "csf");
    sf::csf_cases(out, "csf_loss");
    csc::cases(out);
    dcea::cases(out);
    scl::cases(out);
    dct::cases(out);
}
