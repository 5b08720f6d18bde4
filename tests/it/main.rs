//! hearback's integration tests: one binary, real databases, real servers.

mod support;

mod api;
mod cases;
mod contacts;
mod conversations;
mod crm_webhooks;
mod flows_cli;
mod intake;
mod jobs;
mod responses;
mod startup;
mod storage_contract;
mod webhooks;
