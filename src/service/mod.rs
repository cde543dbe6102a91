//! Process lifecycle: signals.

pub mod signals;
