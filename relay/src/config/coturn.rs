//! `import-coturn`: a `turnserver.conf` read as coturn reads it (a line is `option` or
//! `option=value`, whitespace around both ignored, `#` starts a comment line), mapped to
//! teletip-relay's settings line by line, with a report of what each line became. Pure: text
//! in, TOML and report out; the command checks the TOML as `check-config` does before writing.

use std::fmt;
use std::net::IpAddr;

use super::{BOOLEAN_WORDS, Settings, parse_bool};

/// What became of one line of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Set in the output: the TOML key and value it became.
    Mapped(String),
    /// Nothing to set: the relay always behaves so (or never does), and why.
    NotNeeded(String),
    /// Left out on purpose, and why.
    Refused(String),
    /// A coturn feature the relay does not have.
    Unsupported(String),
    /// The value cannot be read: nothing is written while any line is malformed.
    Malformed(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    pub line: usize,
    pub option: String,
    pub outcome: Outcome,
}

impl fmt::Display for ReportLine {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (what, detail) = match &self.outcome {
            Outcome::Mapped(to) => ("mapped", to),
            Outcome::NotNeeded(why) => ("not needed", why),
            Outcome::Refused(why) => ("refused", why),
            Outcome::Unsupported(why) => ("unsupported", why),
            Outcome::Malformed(why) => ("malformed", why),
        };
        write!(f, "line {}: {}: {what}: {detail}", self.line, self.option)
    }
}

/// The result of reading a turnserver.conf.
#[derive(Debug, Clone)]
pub struct Import {
    /// Each option line's outcome, in file order.
    pub report: Vec<ReportLine>,
    /// Defaults that differ from coturn's and that the input leaves to them.
    pub notes: Vec<String>,
    /// The settings, as TOML keys and values in the order they first appear.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    key: &'static str,
    list: bool,
    values: Vec<(usize, toml::Value)>,
}

impl Import {
    /// Whether a line could not be read (then nothing is to be written).
    pub fn is_malformed(&self) -> bool {
        self.report.iter().any(|r| matches!(r.outcome, Outcome::Malformed(_)))
    }

    /// Whether the input gives a secret the relay accepts.
    pub fn has_secret(&self) -> bool {
        self.entries.iter().any(|e| e.key == "static-auth-secret")
    }

    /// Adds a setting that the input lacks (the command's --static-auth-secret-file).
    pub fn add(&mut self, key: &'static str, value: toml::Value) {
        self.entries.push(Entry { key, list: true, values: vec![(0, value)] });
    }

    /// The settings as a TOML file: each key with the input lines it came from.
    pub fn to_toml(&self, source: &str) -> String {
        let mut out = format!(
            "# teletip-relay configuration converted from {source} by `teletip-relay import-coturn`.\n\
             # Check it with: teletip-relay -c FILE check-config\n"
        );
        for entry in &self.entries {
            let lines: Vec<String> = entry.values.iter().filter(|(n, _)| *n > 0).map(|(n, _)| n.to_string()).collect();
            if !lines.is_empty() {
                out.push_str(&format!("\n# turnserver.conf line {}\n", lines.join(", ")));
            } else {
                out.push('\n');
            }
            let value = if entry.list {
                toml::Value::Array(entry.values.iter().map(|(_, v)| v.clone()).collect())
            } else {
                entry.values.last().expect("an entry has a value").1.clone()
            };
            out.push_str(&format!("{} = {value}\n", entry.key));
        }
        out
    }

    fn set(&mut self, line: usize, key: &'static str, list: bool, value: toml::Value) -> Option<usize> {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(entry) if list => {
                entry.values.push((line, value));
                None
            }
            Some(entry) => {
                let replaced = entry.values.last().map(|(n, _)| *n);
                entry.values = vec![(line, value)];
                replaced
            }
            None => {
                self.entries.push(Entry { key, list, values: vec![(line, value)] });
                None
            }
        }
    }
}

/// How a coturn option's value is written in teletip-relay's TOML.
#[derive(Clone, Copy)]
enum Form {
    Text,
    Integer,
    Flag,
}

/// What a coturn option becomes.
enum Rule {
    /// The same setting (or a renamed one): key, list, form.
    Setting(&'static str, bool, Form),
    NotNeeded(&'static str),
    Refused(&'static str),
    Unsupported(&'static str),
}

const NO_USER_DB: &str = "static users and a user database are not supported on purpose: long-term passwords \
    cannot be made to expire and a user database would put personal data on the edge host; TURN REST \
    credentials (static-auth-secret) are the only scheme";
const FIXED_TLS: &str = "TLS is fixed to 1.2 and 1.3 with rustls's safe defaults (forward-secret AEAD suites)";
const LOGS: &str = "logs go to stderr (journald); log-format = \"json\" for machines, RUST_LOG for the level";
const NO_CLI: &str = "there is no admin CLI";

fn rule(option: &str) -> Rule {
    use Form::*;
    use Rule::*;
    match option {
        "listening-ip" => Setting("listening-ip", true, Text),
        "listening-port" => Setting("listening-port", false, Integer),
        "tls-listening-port" => Setting("tls-listening-port", false, Integer),
        "relay-ip" => Setting("relay-ip", true, Text),
        "external-ip" => Setting("external-ip", true, Text),
        "min-port" => Setting("min-port", false, Integer),
        "max-port" => Setting("max-port", false, Integer),
        "relay-threads" => Setting("workers", false, Integer),
        "realm" => Setting("realm", false, Text),
        "static-auth-secret" => Setting("static-auth-secret", true, Text),
        "cert" => Setting("cert", false, Text),
        "pkey" => Setting("pkey", false, Text),
        "no-tcp" => Setting("no-tcp", false, Flag),
        "no-tls" => Setting("no-tls", false, Flag),
        "allowed-peer-ip" => Setting("allowed-peer-ip", true, Text),
        "denied-peer-ip" => Setting("denied-peer-ip", true, Text),
        "user-quota" => Setting("user-quota", false, Integer),
        "total-quota" => Setting("total-quota", false, Integer),
        "max-bps" => Setting("max-bps", false, Integer),
        "stale-nonce" => Setting("stale-nonce", false, Integer),
        "max-allocate-lifetime" => Setting("max-allocate-lifetime", false, Integer),
        "allocation-default-address-family" => Setting("allocation-default-address-family", false, Text),
        "keep-address-family" => Setting("allocation-default-address-family", false, Flag),
        "alternate-server" => Setting("alternate-server", true, Text),
        "tls-alternate-server" => Setting("tls-alternate-server", true, Text),
        "prometheus" => Setting("prometheus", false, Flag),
        "prometheus-port" => Setting("prometheus-port", false, Integer),
        "use-auth-secret" => NotNeeded("TURN REST credentials are always on"),
        "fingerprint" => NotNeeded("a response carries FINGERPRINT exactly when its request did"),
        "no-multicast-peers" => NotNeeded("multicast peers are always denied"),
        "no-loopback-peers" => NotNeeded("loopback peers are denied unless allow-loopback-peers"),
        "no-dtls" | "no_dtls" => NotNeeded("there is no DTLS"),
        "no-tcp-relay" => NotNeeded("only UDP relaying exists; TCP allocations get 442"),
        "no-software-attribute" | "prod" => NotNeeded("SOFTWARE is never sent"),
        "no-rfc5780" | "no-stun-backward-compatibility" | "response-origin-only-with-rfc5780" => {
            NotNeeded("the relay never does RFC 5780 and drops requests without the RFC 5389 magic cookie")
        }
        "cipher-list" | "ec-curve-name" | "dh566" | "dh1066" | "dh2066" | "dh-file" | "no-tlsv1" | "no-tlsv1_1" => {
            NotNeeded(FIXED_TLS)
        }
        "no-cli" | "cli-ip" | "cli-port" | "cli-max-output-sessions" => NotNeeded(NO_CLI),
        "log-file"
        | "syslog"
        | "syslog-facility"
        | "simple-log"
        | "no-stdout-log"
        | "new-log-timestamp"
        | "new-log-timestamp-format"
        | "verbose"
        | "Verbose" => NotNeeded(LOGS),
        "secret-ts-exp-time" => NotNeeded("deprecated in coturn; max-credential-lifetime bounds credentials"),
        "no-auth" => Refused("authentication cannot be turned off: every allocation needs TURN REST credentials"),
        "lt-cred-mech" | "user" | "userdb" | "psql-userdb" | "mysql-userdb" | "mongo-userdb" | "redis-userdb"
        | "sql-userdb" | "db" | "secret-key-file" | "oauth" => Refused(NO_USER_DB),
        "allow-loopback-peers" => Refused(
            "stays explicit-only: it lets clients reach this host's own services; set allow-loopback-peers = true by \
             hand for a single-host test, never in production",
        ),
        "cli-password" => Refused("there is no admin CLI, so no password for one is kept"),
        "server-relay" => Refused("it removes the permission check; permissions are always enforced"),
        "prometheus-username-labels" => Refused("no metric ever carries a username (a session id of a patient's call)"),
        "no-tlsv1_2" => Unsupported("TLS 1.2 cannot be turned off"),
        "no-udp" => Unsupported("UDP is always served"),
        "no-udp-relay" => Unsupported("UDP is the only relayed transport"),
        "pkey-pwd" => Unsupported("the key must not be encrypted; protect it with its file mode (0640)"),
        "CA-file" => Unsupported("no client certificates: clients authenticate with TURN credentials"),
        "channel-lifetime" | "permission-lifetime" => Unsupported("fixed at RFC 8656's 600 s and 300 s"),
        "secure-stun" => Unsupported("Binding is always answered without credentials, within unauth-rate"),
        "pidfile" | "daemon" | "proc-user" | "proc-group" => {
            Unsupported("run it in the foreground under a service manager, as an unprivileged user")
        }
        "alt-listening-port"
        | "alt-tls-listening-port"
        | "aux-server"
        | "udp-self-balance"
        | "listening-device"
        | "relay-device"
        | "tcp-proxy-port"
        | "bps-capacity"
        | "max-allocate-timeout"
        | "stun-only"
        | "no-stun"
        | "mobility"
        | "check-origin-consistency"
        | "no-dynamic-ip-list"
        | "no-dynamic-realms"
        | "no-auth-pings"
        | "redis-statsdb"
        | "web-admin"
        | "web-admin-ip"
        | "web-admin-port"
        | "web-admin-listen-on-workers"
        | "acme-redirect"
        | "log-binding"
        | "server-name"
        | "ne"
        | "rest-api-separator" => Unsupported("not built in teletip-relay"),
        _ => Unsupported("not a coturn 4.6 option"),
    }
}

/// Reads a turnserver.conf. Never fails: what cannot be read is a malformed line in the report.
pub fn import(text: &str) -> Import {
    let mut import = Import { report: Vec::new(), notes: Vec::new(), entries: Vec::new() };
    let mut relay_ip_lines: Vec<(usize, IpAddr)> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (option, value) = match line.split_once('=') {
            Some((option, value)) => (option.trim(), Some(unquoted(value.trim()))),
            None => (line, None),
        };
        let option = option.trim_start_matches("--");
        let outcome = outcome(&mut import, &mut relay_ip_lines, number, option, value);
        let shown = if option.chars().count() > 64 {
            format!("{}…", option.chars().take(64).collect::<String>())
        } else {
            option.to_owned()
        };
        import.report.push(ReportLine { line: number, option: shown, outcome });
    }
    import.notes = notes(&import);
    import
}

/// A value without the double quotes coturn's own example file puts around some values.
fn unquoted(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

fn outcome(
    import: &mut Import,
    relay_ips: &mut Vec<(usize, IpAddr)>,
    line: usize,
    option: &str,
    value: Option<&str>,
) -> Outcome {
    let (key, list, form) = match rule(option) {
        Rule::Setting(key, list, form) => (key, list, form),
        Rule::NotNeeded(why) => return Outcome::NotNeeded(why.into()),
        Rule::Refused(why) => return Outcome::Refused(why.into()),
        Rule::Unsupported(why) => return Outcome::Unsupported(why.into()),
    };
    let value = match (form, value) {
        (Form::Flag, None) => toml::Value::Boolean(true),
        (Form::Flag, Some(v)) => match parse_bool(v) {
            Ok(b) => toml::Value::Boolean(b),
            Err(_) => return Outcome::Malformed(format!("{v:?} is not a yes/no value ({BOOLEAN_WORDS})")),
        },
        (_, None) if option == "stale-nonce" => {
            return Outcome::NotNeeded("nonces always expire, by default after 600 s".into());
        }
        (_, None) => return Outcome::Malformed("needs a value (option=value)".into()),
        (Form::Integer, Some(v)) => match v.parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => return Outcome::Malformed(format!("{v:?} is not a whole number")),
        },
        (Form::Text, Some(v)) => toml::Value::String(v.to_owned()),
    };
    let value = match special(option, value, relay_ips, line) {
        Ok(value) => value,
        Err(outcome) => return outcome,
    };
    // The value is read by the very code that reads the relay's file, with its messages.
    let probe = format!("{key} = {value}");
    if let Err(e) = Settings::from_toml(probe.as_bytes()) {
        return Outcome::Malformed(e.reason);
    }
    let shown = if key == "static-auth-secret" { format!("{key} = <the secret>") } else { probe };
    match import.set(line, key, list, value) {
        Some(earlier) if earlier > 0 => {
            if let Some(r) = import.report.iter_mut().find(|r| r.line == earlier) {
                r.outcome = Outcome::NotNeeded(format!("replaced by line {line}, as coturn does"));
            }
            Outcome::Mapped(shown)
        }
        _ => Outcome::Mapped(shown),
    }
}

/// Options whose value is not the setting's as it stands.
fn special(
    option: &str,
    value: toml::Value,
    relay_ips: &mut Vec<(usize, IpAddr)>,
    line: usize,
) -> Result<toml::Value, Outcome> {
    let text = value.as_str().unwrap_or_default().to_owned();
    match option {
        "keep-address-family" => Ok(if value.as_bool() == Some(true) { "keep".into() } else { "ipv4".into() }),
        "relay-threads" if value.as_integer() == Some(0) => Ok(toml::Value::Integer(1)),
        "static-auth-secret" if text.len() < 16 => Err(Outcome::Refused(
            "the secret is shorter than 16 bytes: REST credentials are only as strong as the secret (openssl rand -hex 32)"
                .into(),
        )),
        "stale-nonce" if value.as_integer().is_some_and(|n| n < 30) => {
            Err(Outcome::Refused("nonces always expire, after at least 30 s".into()))
        }
        "max-allocate-lifetime" if value.as_integer().is_some_and(|n| n < 600) => Err(Outcome::Refused(
            "below the relay's minimum of 600 s (requested lifetimes are clamped to 600..max-allocate-lifetime)".into(),
        )),
        "alternate-server" | "tls-alternate-server" if text.parse::<IpAddr>().is_ok() => {
            let port = if option == "alternate-server" { 3478 } else { 5349 };
            let ip: IpAddr = text.parse().expect("checked");
            Ok(std::net::SocketAddr::new(ip, port).to_string().into())
        }
        "relay-ip" => {
            let Ok(ip) = text.parse::<IpAddr>() else { return Ok(value) };
            if let Some((first, _)) = relay_ips.iter().find(|(_, other)| other.is_ipv4() == ip.is_ipv4()) {
                return Err(Outcome::Refused(format!(
                    "at most one relay-ip per address family (coturn picks among several): line {first} is this family's"
                )));
            }
            relay_ips.push((line, ip));
            Ok(value)
        }
        _ => Ok(value),
    }
}

/// Defaults that differ from coturn's, for settings the input leaves to them.
fn notes(import: &Import) -> Vec<String> {
    let set = |key: &str| import.entries.iter().any(|e| e.key == key);
    let mut notes = Vec::new();
    if !set("listening-ip") {
        notes.push("no listening-ip: coturn listens on every address of the host, teletip-relay on 127.0.0.1 only; add listening-ip".into());
    }
    if !set("realm") {
        notes.push("no realm: coturn uses the host's domain name, teletip-relay \"teletip\"".into());
    }
    for (key, ours) in [
        ("user-quota", "10"),
        ("total-quota", "10000 (or what the port range holds)"),
        ("max-bps", "1250000 (10 Mbit/s)"),
    ] {
        if !set(key) {
            notes.push(format!("no {key}: coturn's default is unlimited, teletip-relay's {ours}"));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outcome_of(text: &str, line: usize) -> Outcome {
        import(text).report.into_iter().find(|r| r.line == line).expect("a report line").outcome
    }

    #[test]
    fn each_line_is_mapped_refused_or_reported_as_coturn_reads_it() {
        let text = "# comment\n  listening-ip = 10.0.0.5 \nno-tls\nno-tcp=off\nrelay-threads=0\nrealm=\"a.example\"\n\
                    realm=b.example\nstatic-auth-secret=short\nstatic-auth-secret=0123456789abcdef0123\n\
                    lt-cred-mech\nallow-loopback-peers\nrelay-ip=10.0.0.5\nrelay-ip=10.0.0.6\nalternate-server=192.0.2.1\n\
                    keep-address-family\nfoo-bar=1\nlistening-port=x\nlistening-ip=10.0.0.300\n";
        let import = import(text);
        let at = |line: usize| import.report.iter().find(|r| r.line == line).expect("reported").outcome.clone();
        assert_eq!(at(2), Outcome::Mapped("listening-ip = \"10.0.0.5\"".into()));
        assert_eq!(at(3), Outcome::Mapped("no-tls = true".into()), "a bare flag is true");
        assert_eq!(at(4), Outcome::Mapped("no-tcp = false".into()));
        assert_eq!(at(5), Outcome::Mapped("workers = 1".into()), "coturn's 0 is one thread");
        assert_eq!(at(6), Outcome::NotNeeded("replaced by line 7, as coturn does".into()));
        assert_eq!(at(7), Outcome::Mapped("realm = \"b.example\"".into()));
        assert!(matches!(at(8), Outcome::Refused(why) if why.contains("shorter than 16 bytes")));
        assert_eq!(
            at(9),
            Outcome::Mapped("static-auth-secret = <the secret>".into()),
            "the report never shows a secret"
        );
        assert!(matches!(at(10), Outcome::Refused(why) if why.contains("static users")));
        assert!(matches!(at(11), Outcome::Refused(why) if why.contains("explicit-only")));
        assert!(matches!(at(13), Outcome::Refused(why) if why.contains("line 12")));
        assert_eq!(at(14), Outcome::Mapped("alternate-server = \"192.0.2.1:3478\"".into()), "coturn's default port");
        assert_eq!(at(15), Outcome::Mapped("allocation-default-address-family = \"keep\"".into()));
        assert_eq!(at(16), Outcome::Unsupported("not a coturn 4.6 option".into()));
        assert_eq!(at(17), Outcome::Malformed("\"x\" is not a whole number".into()));
        assert_eq!(at(18), Outcome::Malformed("\"10.0.0.300\" is not an IP address".into()));
        assert!(import.is_malformed());
        assert_eq!(import.report.len(), 17, "comments and blank lines are not options");
    }

    #[test]
    fn the_toml_names_its_source_lines_and_keeps_lists() {
        let import = import(
            "listening-ip=10.0.0.5\nmin-port=50000\nlistening-ip=10.0.0.6\nstatic-auth-secret=0123456789abcdef0123\n",
        );
        let toml_text = import.to_toml("turnserver.conf");
        assert!(
            toml_text.contains("# turnserver.conf line 1, 3\nlistening-ip = [\"10.0.0.5\", \"10.0.0.6\"]\n"),
            "{toml_text}"
        );
        let settings = Settings::from_toml(toml_text.as_bytes()).unwrap();
        assert_eq!(settings.min_port, Some(50000));
        assert_eq!(settings.static_auth_secret, ["0123456789abcdef0123"]);
        assert!(matches!(outcome_of("\n--no-auth", 2), Outcome::Refused(why) if why.contains("cannot be turned off")));
    }

    #[test]
    fn every_option_of_the_mapping_table_is_imported_as_documented() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/relay-config.md"));
        let table = doc.split("### Option mapping").nth(1).unwrap().split("\n### ").next().unwrap();
        let mut checked = 0;
        for row in table.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (names, status) = (cells[1], cells[3]);
            for name in names.split('`').skip(1).step_by(2).filter(|n| !n.starts_with('-')) {
                let kind = match rule(name) {
                    Rule::Setting(..) => "mapped",
                    Rule::NotNeeded(_) => "not needed",
                    Rule::Refused(_) => "refused",
                    Rule::Unsupported("not a coturn 4.6 option") => "unknown",
                    Rule::Unsupported(_) => "unsupported",
                };
                let agrees = match status {
                    "same" | "renamed" | "different default" => kind == "mapped",
                    "not needed" => kind == "not needed",
                    "not supported" => kind == "refused" || kind == "unsupported",
                    "different" => kind != "unknown",
                    other => panic!("status {other:?} of {name}"),
                };
                assert!(agrees, "{name}: documented {status:?}, imported as {kind}");
                checked += 1;
            }
        }
        assert!(checked > 90, "{checked} options checked");
    }

    fn option_line() -> impl Strategy<Value = String> {
        let names = prop::sample::select(vec![
            "listening-ip",
            "relay-ip",
            "external-ip",
            "min-port",
            "max-port",
            "listening-port",
            "realm",
            "static-auth-secret",
            "no-tls",
            "no-tcp",
            "relay-threads",
            "user-quota",
            "total-quota",
            "stale-nonce",
            "max-allocate-lifetime",
            "alternate-server",
            "keep-address-family",
            "allowed-peer-ip",
            "cert",
            "no-auth",
            "prometheus",
            "allocation-default-address-family",
            "lt-cred-mech",
            "unknown-thing",
        ]);
        let values = prop::sample::select(vec![
            "",
            "=",
            "=0",
            "=1",
            "=yes",
            "=maybe",
            "=10.0.0.5",
            "=::1",
            "=10.0.0.300",
            "=203.0.113.5/10.0.0.5",
            "=65536",
            "=-1",
            "=99999999999999999999",
            "=\"",
            "=\"quoted\"",
            "=0123456789abcdef0123",
            "= a b c ",
            "=[1]",
            "=\u{0}",
            "=\\",
            "=ipv6",
            "=1.2.3.4:3478",
            "=#",
        ]);
        (names, values, "[ \t#-]{0,2}").prop_map(|(n, v, prefix)| format!("{prefix}{n}{v}"))
    }

    proptest! {
        /// Whatever the lines, the import never panics, reports only lines that exist, and
        /// writes TOML the relay's own reader parses.
        #[test]
        fn any_file_is_reported_line_by_line_and_its_toml_parses(
            lines in prop::collection::vec(prop_oneof![option_line(), ".{0,40}"], 0..24)
        ) {
            let text = lines.join("\n");
            let import = import(&text);
            prop_assert!(import.report.iter().all(|r| (1..=lines.len().max(1)).contains(&r.line)));
            if !import.is_malformed() {
                let toml_text = import.to_toml("fuzz.conf");
                prop_assert!(Settings::from_toml(toml_text.as_bytes()).is_ok(), "{}", toml_text);
            }
        }
    }
}
