//! nidan: a reverse-proxy authentication gateway with a two-step login and trusted devices,
//! on Cloudflare's pingora. See README.md for operating it; `proxy/mod.rs` is where a
//! request is decided.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod approver;
pub mod assertion;
pub mod assurance;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod certs;
pub mod chores;
pub mod config;
pub mod demo;
pub mod exempt;
pub mod explain;
#[doc(hidden)]
pub mod fuzzing;
pub mod i18n;
pub mod login;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod outage;
pub mod path;
pub mod phone;
pub mod portal;
pub mod proof;
pub mod proxy;
pub mod reload;
pub mod replica;
pub mod request_id;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod time;
pub mod tokens;
pub mod users;
pub mod window;
