//! # sparsegrad-autograd
