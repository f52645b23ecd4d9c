//! # sparsegrad-sparse
//!
//! Sparse-coding layers whose gradients are analytic rules registered on the autograd tape
//! (LARS elastic net with Mairal's active-set Jacobian, FISTA convolutional sparse coding,
//! fixed-DCT double sparsity, DCEA, the spatial-contrasting loss).
//!
//! * [`lars`]: the LARS-EN batch solver ([`lars_en`], [`lars_en_gram`]) and Mairal's
//!   active-set Jacobian ([`lars::backward`]).
//! * [`sf`]: the SF and CSF layers' ops and their unsupervised losses, with analytic rules.
//! * [`fista`]: FISTA on a linear operator (dense or convolutional), the SDNet power
//!   iteration for its step; [`csc`]: the CSC layer of SDNet, unrolled on the tape or with the
//!   implicit (conjugate-gradient) backward.
//! * [`dcea`]: the deep convolutional exponential auto-encoder (Gaussian, Binomial, Poisson;
//!   tied and untied; the authors' Poisson denoising configuration) unfolded on the tape with
//!   two fused step rules, and the three negative log-likelihoods as fused rules.
//! * [`audit`]: the gradient audit of every rule here, appended to the built-in ops' registry
//!   by `sparsegrad gradcheck`.

pub mod audit;
pub mod csc;
pub mod dcea;
pub mod error;
pub mod fista;
pub mod lars;
pub mod sf;

pub use error::SparseError;
pub use lars::{lars_en, lars_en_gram, LarsConfig, LarsSolution, SamplePath};
