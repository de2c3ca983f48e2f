//! Integration tests against real services: each test runs its own renderer on a free
//! port and isolates its telemetry in a random stream on the shared NATS server (or a
//! private one), and fails with instructions when a service is missing.

mod auth;
mod bad_input;
mod binary;
mod cluster;
mod dependencies;
mod end_to_end;
mod faults;
mod gemini;
mod helpers;
mod http_edges;
mod images;
mod jetstream;
mod nats_down;
mod overload;
mod render;
mod request_ids;
mod shutdown;
