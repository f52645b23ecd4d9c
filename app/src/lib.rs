//! # sparsegrad (the program)
//!
//! The `sparsegrad` command-line program on top of the library crates: its command line
//! ([`cli`], clap), its commands ([`commands`]), checkpoints ([`checkpoint`], safetensors), progress reporting
//! ([`progress`], indicatif) and stdout that ends quietly on a closed pipe ([`out`]). The library crates
//! (`engine`, `autograd`, `sparse`, `models`, `datasets`) keep their short dependency list;
//! this crate is the application and may use the ecosystem's crates where they do the job
//! better.

pub mod out;

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod experiments;
pub mod progress;
pub mod report;
