//! The run protocol: the one definition of a fine-tuning run that the browser (WebAssembly),
//! the web server and the burn engine share. It holds a run's settings with their defaults
//! and limits ([`RunSettings`], [`LIMITS`]), the step arithmetic ([`StepPlan`]), parameter
//! counts and LoRA targets ([`param_counts`]), how long a run takes and the settings that fit a
//! class's time per run ([`estimate`]), and the events a run emits ([`Event`]).
//! It depends on serde alone, so the browser build carries none of the engine.

pub mod estimate;
pub mod events;
pub mod params;
pub mod plan;
pub mod settings;

pub use events::{EvalSplit, Event, EventKind, Metrics, VIEWER_MAX_TOKENS};
pub use params::{
    DEFAULT_LORA_TARGETS, Family, LoraTarget, ModelShape, ParamCounts, lora_adapter_params,
    lora_trains_head_dense, param_counts,
};
pub use plan::StepPlan;
pub use settings::{LIMITS, Limits, LoraSettings, Method, Precision, RunSettings};
