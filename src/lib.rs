//! hearback: a self-hosted, SMS-first conversational feedback gateway.
//!
//! The folder tree follows the design (see `docs/architecture.md`): configuration, storage,
//! durable jobs, the HTTP edge, and the CLI that wires them together.

pub mod alerts;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod email;
pub mod engine;
pub mod flow;
pub mod http;
pub mod import;
pub mod intake;
pub mod jobs;
pub mod lang;
pub mod phone;
pub mod privacy;
pub mod providers;
pub mod schedule;
pub mod server;
pub mod sms;
pub mod storage;
pub mod telemetry;
pub mod time;
pub mod understand;
pub mod units;
pub mod webhooks;
