//! Integration tests: each starts the real `ferrule` binary (see `util`) and
//! uses it as a user would, over HTTP.

mod util;

mod acl_rules;
mod auth;
mod bad_input;
mod config;
mod lifecycle;
mod migrations;
mod mqtt_limits;
mod mqtt_persistence;
mod mqtt_transports;
mod ops;
mod resources;
mod secrets;
mod startup_errors;
mod tenancy;
