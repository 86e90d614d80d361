//! Jigsaw Lab's fine-tuning engine, built on burn: BERT, DistilBERT, RoBERTa, ELECTRA and DeBERTa
//! sequence classifiers loaded from HF checkpoints, SST-2 data, and the compute device (a GPU
//! through CUDA or wgpu when one is usable, burn's CPU backend otherwise), and a
//! training-step benchmark. It
//! knows nothing of HTTP. What it shares with the web app (settings, limits, events) is
//! the `run-protocol` crate.

pub mod bench;
pub mod catalog;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod device;
pub mod export;
mod fusable;
pub mod inference;
pub mod loader;
pub mod model;
pub mod optim;
pub mod rng;
pub mod tokenize;
pub mod train;
