//! The `teletip-relay` command: run the relay, check a configuration, mint a credential, or
//! build its firewall.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use teletip_relay::config::{LogFormat, RelayConfig, Settings, check};

#[derive(Parser)]
#[command(name = "teletip-relay", version, about = "Hardened TURN/STUN relay for telemedicine video")]
struct Cli {
    /// TOML configuration file (coturn option names). Flags and TELETIP_RELAY_* variables
    /// override it.
    #[arg(long, short = 'c', env = "TELETIP_RELAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run,
    /// Validate the configuration and print the effective settings, secrets redacted.
    CheckConfig,
    /// Print a TURN REST username/password pair for testing or for operators.
    Credential {
        /// The opaque session id in the username. Never a name or a national id.
        #[arg(long)]
        user: String,
        /// Seconds the credential stays valid.
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Print JSON (username, password, ttl, uris) instead of two lines.
        #[arg(long)]
        json: bool,
    },
    /// Convert a coturn turnserver.conf into this relay's TOML and report what each line
    /// became: mapped, not needed, refused on purpose (with why) or unsupported. Nothing is
    /// written unless check-config would accept the result.
    ImportCoturn {
        /// The turnserver.conf to read.
        file: PathBuf,
        /// Where to write the TOML (a new file, mode 0600; an existing one is not replaced).
        /// Default: standard output. The report goes to standard error.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// A secret file the relay will read (static-auth-secret-file), added to the result:
        /// needed when the turnserver.conf has no static-auth-secret the relay accepts.
        #[arg(long = "static-auth-secret-file")]
        static_auth_secret_file: Option<PathBuf>,
    },
    /// Build the nftables ruleset (table inet teletip_relay) for this configuration: print it
    /// for review, or load it. Only that table is ever replaced.
    Firewall {
        /// Print the ruleset as nft JSON (check it with `nft -j -c -f FILE`).
        #[arg(long, conflicts_with = "apply", required_unless_present = "apply")]
        dry_run: bool,
        /// Replace table inet teletip_relay atomically with `nft -j -f -` (root or CAP_NET_ADMIN).
        #[arg(long)]
        apply: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("teletip-relay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The configuration as the file, flags and environment give it now.
fn load(config_file: Option<&Path>, flags: &Settings) -> anyhow::Result<RelayConfig> {
    let file = match config_file {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    RelayConfig::from_settings(flags.clone().over(file)).context("invalid configuration")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::ImportCoturn { file, output, static_auth_secret_file }) = &cli.command {
        return import_coturn(file, output.as_deref(), static_auth_secret_file.as_deref());
    }
    let config = load(cli.config.as_deref(), &cli.settings)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            init_logging(config.log_format);
            if let Some(problem) = check::quota_beyond_ports(&config) {
                tracing::warn!("{problem} (check-config refuses this)");
            }
            // SIGHUP reads the file and the secret files again; flags and variables stay.
            let reread = || load(cli.config.as_deref(), &cli.settings);
            teletip_relay::daemon::run(config, &reread)
        }
        Command::CheckConfig => {
            check::refusal(&config).context("invalid configuration")?;
            print!("{}", config.to_redacted_toml());
            for warning in config.unsafe_settings() {
                eprintln!("warning: UNSAFE SETTING: {warning}");
            }
            match check::host_addresses() {
                Ok(host) => check::host_address_warnings(&config, &host).iter().for_each(|w| eprintln!("warning: {w}")),
                Err(e) => {
                    eprintln!("warning: cannot list this host's addresses ({e}): listening-ip and relay-ip not checked")
                }
            }
            let built = teletip_relay::xdp::OBJECT.map(drop);
            for w in check::xdp_warnings(&config, &check::interface_exists, built) {
                eprintln!("warning: {w}");
            }
            eprintln!("configuration OK");
            Ok(())
        }
        Command::Credential { user, ttl, json } => {
            if config.max_credential_lifetime != 0 && ttl > config.max_credential_lifetime {
                anyhow::bail!(
                    "--ttl {ttl} exceeds max-credential-lifetime ({} s): the relay would refuse this credential",
                    config.max_credential_lifetime
                );
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            let secret = &config.secrets[0];
            let (username, password) =
                teletip_turn_proto::credentials::issue(secret.value.as_bytes(), &user, now + ttl);
            if json {
                // external-ip (the IPv4 one first) when the host is behind NAT, else where it listens.
                let mapped = config.relay_addresses.iter().find(|a| a.advertised != a.ip).map(|a| a.advertised);
                let host = mapped.unwrap_or(config.listening_ips[0]);
                let host = if host.is_ipv6() { format!("[{host}]") } else { host.to_string() };
                let mut uris = vec![format!("\"turn:{host}:{}?transport=udp\"", config.listening_port)];
                if config.tcp {
                    uris.push(format!("\"turn:{host}:{}?transport=tcp\"", config.listening_port));
                }
                if config.tls.is_some() {
                    // Browsers check the certificate against this host: with a DNS name in the
                    // certificate, hand out that name instead of the address.
                    uris.push(format!("\"turns:{host}:{}?transport=tcp\"", config.tls_listening_port));
                }
                println!(
                    "{{\"username\":\"{username}\",\"password\":\"{password}\",\"ttl\":{ttl},\"uris\":[{}]}}",
                    uris.join(",")
                );
            } else {
                println!("username: {username}\npassword: {password}");
            }
            Ok(())
        }
        Command::Firewall { dry_run, apply: _ } => firewall(&config, dry_run),
        Command::ImportCoturn { .. } => unreachable!("handled before the configuration is loaded"),
    }
}

/// `import-coturn`: the report on stderr, the TOML on stdout or in a new file, only when
/// check-config would accept it.
fn import_coturn(file: &Path, output: Option<&Path>, secret_file: Option<&Path>) -> anyhow::Result<()> {
    use teletip_relay::config::coturn;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{}: line {line}: not UTF-8 text: nothing written", file.display())
    })?;
    let mut import = coturn::import(text);
    for line in &import.report {
        eprintln!("{line}");
    }
    for note in &import.notes {
        eprintln!("note: {note}");
    }
    if import.is_malformed() {
        anyhow::bail!("{}: malformed lines (above): nothing written", file.display());
    }
    if let Some(path) = secret_file {
        import.add("static-auth-secret-file", path.display().to_string().into());
    } else if !import.has_secret() {
        anyhow::bail!(
            "{} has no static-auth-secret the relay accepts: name the secret file the relay will read with \
             --static-auth-secret-file FILE (lines of key-id=secret, from openssl rand -hex 32): nothing written",
            file.display()
        );
    }
    let toml_text = import.to_toml(&file.display().to_string());
    let settings = Settings::from_toml(toml_text.as_bytes())
        .map_err(|e| anyhow::anyhow!("the converted settings do not parse ({e}): nothing written"))?;
    let refused = "check-config would refuse the converted settings: nothing written";
    let config = RelayConfig::from_settings(settings).context(refused)?;
    check::refusal(&config).context(refused)?;
    for warning in config.unsafe_settings() {
        eprintln!("warning: UNSAFE SETTING: {warning}");
    }
    match output {
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // It may hold secrets; and an operator's existing file is never replaced.
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            out.write_all(toml_text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}: check it with teletip-relay -c {} check-config", path.display(), path.display());
        }
        None => print!("{toml_text}"),
    }
    Ok(())
}

/// `firewall --dry-run` keeps stdout pure JSON and talks on stderr; `--apply` runs at boot
/// under a service manager, so it logs like the daemon.
fn firewall(config: &RelayConfig, dry_run: bool) -> anyhow::Result<()> {
    use teletip_relay::firewall::{CHAIN, Firewall, TABLE};
    let fw = Firewall::build(config).context("cannot build the firewall ruleset")?;
    if dry_run {
        println!("{}", fw.to_json());
        for warning in &fw.warnings {
            eprintln!("warning: {warning}");
        }
        eprintln!("{} rules in table inet {TABLE} (nothing applied; check with: nft -j -c -f FILE)", fw.rules.len());
        return Ok(());
    }
    init_logging(config.log_format);
    for warning in &fw.warnings {
        tracing::warn!("{warning}");
    }
    fw.apply().context("cannot apply the firewall ruleset")?;
    tracing::info!(
        "replaced table inet {TABLE} atomically: chain {CHAIN} (hook input, priority filter, policy accept) with {} rules; other tables untouched",
        fw.rules.len()
    );
    for (i, rule) in fw.rules.iter().enumerate() {
        tracing::info!("rule {}: {rule}", i + 1);
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
