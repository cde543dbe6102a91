//! Process lifecycle under a service manager: signals, sd_notify, journal logging.

pub mod journal;
pub mod notify;
pub mod signals;
