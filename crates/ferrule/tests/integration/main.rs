//! Integration tests: each starts the real `ferrule` binary (see `util`) and
//! uses it as a user would, over HTTP.

mod util;

mod acl_rules;
mod admin_cli;
mod alarms;
mod api_key_creators;
mod apps;
mod auth;
mod auth_throttle;
mod backup;
mod bad_input;
mod bench_commands;
mod bench_rules;
mod commands;
mod config;
mod connectivity;
mod console;
mod console_apps;
mod console_dashboards;
mod console_device;
mod console_e2e;
mod console_profiles;
mod console_rules;
mod console_settings;
mod dashboards;
mod data_dir_modes;
mod deletion;
mod deploy_files;
mod device_peer;
mod http_limits;
mod https;
mod lifecycle;
mod migrations;
mod mqtt_limits;
mod mqtt_persistence;
mod mqtt_transports;
mod ops;
mod profiles;
mod rate_limits;
mod resources;
mod rules;
mod rules_util;
mod rules_webhooks;
mod secrets;
mod security_headers;
mod simulate;
mod startup_errors;
mod stream;
mod system;
mod tenancy;
mod tenant_move;
mod twin;
mod upgrades;
mod user_rights;

// MQTT, with real clients (paho-mqtt peers in tests/peers, the mosquitto
// command-line clients) and raw sockets.
mod mqtt_acl;
mod mqtt_auth;
mod mqtt_bad_input;
mod mqtt_certificates;
mod mqtt_conformance;
mod mqtt_interop;
mod mqtt_keepalive;
mod mqtt_properties;
mod mqtt_pubsub;
mod mqtt_read_access;
mod mqtt_retained;
mod mqtt_revocation;
mod mqtt_session;
mod mqtt_slow_subscriber;
mod mqtt_subscription_options;
mod mqtt_takeover;
mod mqtt_util;
mod mqtt_will;

// Telemetry and events: ingest over MQTT and HTTP, queries, retention,
// durability across crashes.
mod telemetry_bad_input;
mod telemetry_config;
mod telemetry_crash;
mod telemetry_ingest;
mod telemetry_log;
mod telemetry_notices;
mod telemetry_query;
mod telemetry_retention;
mod telemetry_settings;
mod telemetry_stamps;
mod telemetry_util;
