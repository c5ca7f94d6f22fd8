//! The administrative subcommands of `teletip-control` beside `serve`, one module each, run
//! from `main.rs`: account administration (`users`), the configuration check (`check_config`),
//! and whether a database may be used or first created (`database`).

pub mod check_config;
pub mod database;
pub mod users;
