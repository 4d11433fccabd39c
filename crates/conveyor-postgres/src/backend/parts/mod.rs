//! The optional parts of the contract, every one of which PostgreSQL holds
//! (`own_parts!(all)`), one file each: `results` ([`ResultStore`]),
//! `inspection` ([`Inspection`]), `administration` ([`Administration`]),
//! `maintenance` ([`Maintenance`]), `global_limits` ([`GlobalLimits`]),
//! `queue_control` ([`QueueControl`]) and `registry` ([`Registry`]).
//!
//! [`ResultStore`]: conveyor_core::ResultStore
//! [`Inspection`]: conveyor_core::Inspection
//! [`Administration`]: conveyor_core::Administration
//! [`Maintenance`]: conveyor_core::Maintenance
//! [`GlobalLimits`]: conveyor_core::GlobalLimits
//! [`QueueControl`]: conveyor_core::QueueControl
//! [`Registry`]: conveyor_core::Registry

mod administration;
mod global_limits;
mod inspection;
mod maintenance;
mod queue_control;
mod registry;
mod results;
