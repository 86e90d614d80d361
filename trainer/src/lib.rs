//! Jigsaw Lab's fine-tuning engine, built on burn. It picks the compute device (a wgpu GPU
//! when one is usable, burn's CPU backend otherwise) and, as it grows, loads BERT-family
//! checkpoints and fine-tunes them on SST-2. It knows nothing of HTTP.

pub mod device;
