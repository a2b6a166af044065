//! localtonet-exporter: receives Localtonet's connect and disconnect webhooks, keeps the state
//! of every token and tunnel, and exposes it to Prometheus.
//!
//! The pieces, from the wire inwards:
//! - [`server`] accepts connections (TLS, limits) and [`http`] routes requests;
//! - [`payload`] turns a webhook body into validated [`event::Event`]s;
//! - [`ingest`] applies them to the state by the rules of [`state`], durably through
//!   [`store`], and publishes the result;
//! - [`exposition`] writes the per-id series for `/metrics`, [`metrics`] the exporter's own.

#![deny(missing_docs)]

pub mod action_date;
pub mod app;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config_file;
pub mod event;
pub mod exposition;
pub mod fingerprint;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod payload;
pub mod secret;
pub mod serve;
pub mod server;
pub mod state;
pub mod store;
pub mod web_config;

#[cfg(test)]
mod testing;
