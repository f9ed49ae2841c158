//! The integration tests as one binary (`cargo test --test it`): one module per area, each
//! against the real `nidan` binary, with the harness in `common` compiled and linked once.
//! A test is named by its module, e.g. `cargo test --test it edge::` or
//! `cargo test --test it some_test_name`.

mod common;

mod app;
mod assertion;
mod assurance;
mod browser;
mod browser_passkey;
mod budgets;
mod bus;
mod codes;
mod config_cli;
mod credentials;
mod devices;
mod directory;
mod edge;
mod exemptions;
mod explain;
mod failfast;
mod forward_auth;
mod ldap;
mod login;
mod login_service;
mod openapi;
mod passkeys;
mod password;
mod phone;
mod portal_ux;
mod postgres;
mod proxy;
mod reload;
mod replicas;
mod review2_attacks;
mod review3_attacks;
mod review_attacks;
mod revocation;
mod risk;
mod rolling;
mod sessions;
mod shared_state;
mod smoke;
mod soak;
mod tls;
mod upgrade;
mod upstreams;
