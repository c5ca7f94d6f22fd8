//! The `teletip-control` command: serve the API, run migrations, bootstrap users, print the
//! OpenAPI document.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use teletip_control::app::router;
use teletip_control::auth::jwt::JwtKeys;
use teletip_control::config::ControlConfig;
use teletip_control::state::AppState;
use teletip_control::store::{self, Role};

#[derive(Parser)]
#[command(name = "teletip-control", version, about = "Control plane of teletip")]
struct Cli {
    /// TOML configuration file. Without one, everything has a working local default.
    #[arg(long, short = 'c', env = "TELETIP_CONTROL_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Overrides `listen`.
    #[arg(long, env = "TELETIP_CONTROL_LISTEN", global = true)]
    listen: Option<SocketAddr>,
    /// Overrides `database-url`.
    #[arg(long, env = "TELETIP_CONTROL_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Overrides `data-dir`.
    #[arg(long, env = "TELETIP_CONTROL_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (migrates the database first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users from the command line (to create the first admin).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Write an encrypted, authenticated backup of the whole database to a file.
    Backup {
        #[arg(long)]
        output: PathBuf,
        /// Overrides `[backup] key-file`.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Restore a backup into an empty database (refuses a non-empty one).
    Restore {
        #[arg(long)]
        input: PathBuf,
        /// Overrides `[backup] key-file`.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Check the configuration without starting: settings, key and certificate files (present,
    /// readable, private), the database and Redis. Exits non-zero on any error.
    CheckConfig,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user; the password is read from the first line of standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value = "Administrator")]
        name: String,
        /// Create and set up the database if it does not exist (otherwise refused: a wrong
        /// --config or working folder must not silently start a new, empty database).
        #[arg(long)]
        init: bool,
    },
    /// List every account (e-mail, role, enabled or disabled, id, created).
    List,
    /// Disable an account and end its sessions.
    Disable { email: String },
    /// Set a new password for an account (the first line of standard input) and end its
    /// sessions.
    ResetPassword { email: String },
    /// Remove an account's second factor (TOTP and recovery codes), for a lost device, and end
    /// its sessions: the user logs in with the password and enrolls again.
    ResetMfa { email: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "one of admin, practitioner, patient".into())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The log format is read before anything logs; a configuration that does not load is
    // reported by `run`, with whichever format.
    let format = ControlConfig::load(cli.config.as_deref()).map(|c| c.log_format).unwrap_or_default();
    teletip_control::observability::logs::init(format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("teletip-control: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        println!("{}", teletip_control::app::openapi_document());
        return Ok(());
    }
    let mut config = ControlConfig::load(cli.config.as_deref())?;
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    if let Some(u) = cli.database_url {
        config.database_url = u;
    }
    if let Command::CheckConfig = cli.command {
        return check_config(&config).await;
    }
    if let Command::Backup { output, key_file } = &cli.command {
        println!("{}", teletip_control::backup::command::backup(&config, output, key_file.as_deref()).await?);
        return Ok(());
    }
    // Only these may create a database; the others act on the one the service uses.
    let may_create = matches!(cli.command, Command::Serve | Command::Migrate | Command::Restore { .. })
        || matches!(cli.command, Command::User { action: UserAction::Add { init: true, .. } });
    if !may_create {
        if let Some(missing) = teletip_control::cli::database::missing_file(&config.database_url) {
            anyhow::bail!(teletip_control::cli::database::refusal(&missing, "user add"));
        }
    }
    if let Some(file) = teletip_control::cli::database::sqlite_file(&config.database_url) {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).ok();
        }
    }
    if let Command::Restore { input, key_file } = &cli.command {
        println!("{}", teletip_control::backup::command::restore(&config, input, key_file.as_deref()).await?);
        return Ok(());
    }
    let store = store::open_with_queue(&config.database_url, config.ice.write_queue)
        .await
        .with_context(|| "cannot open the database")?;
    if !may_create {
        if let Some(missing) = teletip_control::cli::database::missing_schema(&store).await {
            anyhow::bail!(teletip_control::cli::database::refusal(&missing, "user add"));
        }
    }
    store.migrate().await.context("migrations failed")?;
    match cli.command {
        Command::Migrate => {
            println!("migrations applied ({})", store.engine());
            Ok(())
        }
        Command::User { action: UserAction::Add { email, role, name, .. } } => {
            let password = first_line_of_stdin()?;
            let state = state(config, store)?;
            let user = teletip_control::users::create_user(
                &state,
                teletip_control::users::CreateUser { email, display_name: name, role, password },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let event = teletip_control::store::NewAuditEvent {
                at: teletip_control::clock::now(),
                actor: None,
                action: "user.create".into(),
                target: Some(user.id.to_string()),
                outcome: "success:cli".into(),
                source_ip: None,
                request_id: None,
            };
            state.store().append_audit(event).await?;
            println!("created {} {} ({})", user.role.as_str(), user.email, user.id);
            Ok(())
        }
        Command::User { action: UserAction::List } => {
            print!("{}", teletip_control::cli::users::list(&state(config, store)?).await?);
            Ok(())
        }
        Command::User { action: UserAction::Disable { email } } => {
            let user = teletip_control::cli::users::disable(&state(config, store)?, &email).await?;
            println!("disabled {} {} ({}); its sessions are ended", user.role.as_str(), user.email, user.id);
            Ok(())
        }
        Command::User { action: UserAction::ResetPassword { email } } => {
            let password = first_line_of_stdin()?;
            let state = state(config, store)?;
            let user = teletip_control::cli::users::reset_password(&state, &email, &password).await?;
            println!("new password set for {} ({}); its sessions are ended", user.email, user.id);
            Ok(())
        }
        Command::User { action: UserAction::ResetMfa { email } } => {
            let removed = teletip_control::cli::users::reset_mfa(&state(config, store)?, &email).await?;
            let what = if removed { "two-factor authentication removed" } else { "no second factor was enrolled" };
            println!("{what} for {email}; its sessions are ended");
            Ok(())
        }
        Command::Serve => serve(config, store).await,
        Command::Openapi | Command::CheckConfig | Command::Backup { .. } | Command::Restore { .. } => {
            unreachable!("handled above")
        }
    }
}

/// A password from standard input: its first line without the line ending (other whitespace
/// is kept), so that it stays out of the process list and the shell history.
fn first_line_of_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn check_config(config: &ControlConfig) -> anyhow::Result<()> {
    use teletip_control::cli::check_config::{Level, run};
    let findings = run(config).await;
    for finding in &findings {
        println!("{finding}");
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    anyhow::ensure!(errors == 0, "{errors} error(s) in the configuration");
    println!("the configuration is usable");
    Ok(())
}

fn state(config: ControlConfig, store: store::DynStore) -> anyhow::Result<AppState> {
    let jwt = JwtKeys::new(&config.auth.issuer, &teletip_control::keys::jwt_keys(&config)?);
    let ice = teletip_control::keys::ice_secrets(&config)?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])?
        .install_recorder()?;
    teletip_control::observability::describe(&config);
    let fields = teletip_control::keys::field_keys(&config)?;
    let clock = teletip_control::clock::Clock::from_env()?;
    Ok(AppState::new(config, store, jwt, ice, metrics, fields, clock))
}

async fn serve(mut config: ControlConfig, store: store::DynStore) -> anyhow::Result<()> {
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    // Links in responses name the configured public URL, else where this process listens
    // (the bound port when the configuration says 0), never a request's Host header.
    config.public_url.get_or_insert_with(|| format!("http://{local}"));
    let engine = store.engine();
    let database = if engine == "sqlite" { config.database_url.clone() } else { "postgres".to_string() };
    let watchdog_store = store.clone();
    let state = state(config, store)?;
    teletip_control::auth::mfa::check_secrets_readable(state.store(), state.fields()).await?;
    tokio::spawn(teletip_control::scheduling::sweeper::run(state.clone()));
    tokio::spawn(teletip_control::privacy::retention::run(state.clone()));
    teletip_control::notify::start(&state)?;
    let mut link_endpoint = None;
    if let Some(link) = state.config().relay_link.clone() {
        let tls = teletip_link::tls::server_config(&link.cert, &link.key, &link.client_ca)
            .context("relay-link: cannot build the TLS configuration")?;
        let endpoint = quinn::Endpoint::server(tls, link.listen)
            .with_context(|| format!("relay-link: cannot listen on udp {}", link.listen))?;
        tracing::info!(
            "relay link listening on udp {} (QUIC, relays must present a certificate signed by {})",
            endpoint.local_addr()?,
            link.client_ca.display()
        );
        link_endpoint = Some(endpoint.clone());
        let secrets = link.push_secrets.then(|| pushed_secrets(state.ice_secrets())).transpose()?;
        let settings = teletip_control::relays::link::LinkSettings {
            report_every: std::time::Duration::from_secs(link.report_seconds),
            secrets,
        };
        if let Some(url) = &state.config().redis_url {
            let resp3 = teletip_control::signaling::redis_driver::resp3_url(url);
            if let Err(e) = state.relays().follow_revocations(&resp3).await {
                tracing::error!(
                    "redis-url: cannot follow other instances' revocations ({e}); relays connected here get them \
                     only when they register again"
                );
            }
        }
        tokio::spawn(teletip_control::relays::link::serve(endpoint, state.clone(), settings));
    }
    let edge_config = state.config().clone();
    let app = teletip_control::signaling::attach(router(state.clone()), state).await?;
    let app = teletip_control::edge::wrap(app, &edge_config);
    tracing::info!("teletip-control {} listening on http://{local} (database: {database})", env!("CARGO_PKG_VERSION"));
    println!("teletip-control listening on http://{local}");
    // systemd (Type=notify): ready once the socket listens; the watchdog is fed while the
    // runtime serves and the database answers.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let store = watchdog_store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                match tokio::time::timeout(interval / 4, store.ping()).await {
                    Ok(Ok(())) => {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    _ => tracing::error!("database not answering: withholding the watchdog ping"),
                }
            }
        });
    }
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::info!("shutting down");
        })
        .await?;
    if let Some(endpoint) = link_endpoint {
        // Tells the relays at once, so that they redial instead of waiting out the idle timeout.
        endpoint.close(0u32.into(), b"control plane stopping");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    Ok(())
}

/// The ICE secrets as the relay link pushes them (secrets are read from text files, so they
/// are UTF-8).
fn pushed_secrets(secrets: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<teletip_link::PushedSecret>> {
    secrets
        .iter()
        .map(|(key_id, value)| {
            let secret = String::from_utf8(value.clone())
                .with_context(|| format!("relay-link.push-secrets: ICE secret {key_id:?} is not UTF-8 text"))?;
            Ok(teletip_link::PushedSecret { key_id: key_id.clone(), secret })
        })
        .collect()
}
