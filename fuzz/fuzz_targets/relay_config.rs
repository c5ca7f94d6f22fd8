//! The relay's configuration file and `import-coturn`'s turnserver.conf, as text the relay
//! reads at start: parsing never panics, a file that parses is validated, and a validated
//! configuration renders as TOML (check-config's view). What `import-coturn` writes must be TOML the
//! relay's own parser reads.

#![no_main]

use libfuzzer_sys::fuzz_target;
use teletip_relay::config::{RelayConfig, Settings, coturn};

fuzz_target!(|data: &[u8]| {
    if let Ok(settings) = Settings::from_toml(data) {
        // Validation reads the files the settings name (secrets, certificates); a path could
        // name /dev/zero or a FIFO, which is the operator's choice, not a parser's input.
        if !data.contains(&b'/')
            && let Ok(config) = RelayConfig::from_settings(settings)
        {
            let shown = config.to_redacted_toml();
            if let Err(e) = toml::from_str::<toml::Table>(&shown) {
                panic!("check-config showed a file that is not TOML ({e}):\n{shown}");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let import = coturn::import(text);
        let written = import.to_toml("fuzz");
        if let Err(e) = toml::from_str::<toml::Table>(&written) {
            panic!("import-coturn wrote a file that is not TOML ({e}):\n{written}");
        }
    }
});
