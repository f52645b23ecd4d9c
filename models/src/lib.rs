//! # sparsegrad-models
//!
//! Parameters, networks and training for the `sparsegrad` program: the MNIST LeNet now;
//! the networks of the sparse-coding papers as later issues add them.

pub mod fit;
pub mod layers;
pub mod lenet;
pub mod nets;
pub mod params;
pub mod train;

pub use lenet::LeNet;
pub use params::ParamSet;
