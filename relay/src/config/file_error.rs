//! A configuration file's error as an operator reads it: the line, the setting and the reason
//! (`line 3: listening-ip: "10.0.0.300" is not an IP address`), from the span toml reports.

use std::fmt;

/// What is wrong in a configuration file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// 1-based; none when toml gives no position.
    pub line: Option<usize>,
    /// The setting the error is in, when the file parsed as TOML.
    pub key: Option<String>,
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl FileError {
    /// Explains `error`, which toml gave for `text`. `is_setting` tells setting names from
    /// others, for the message about an unknown key.
    pub fn explain(text: &str, error: &toml::de::Error, is_setting: impl Fn(&str) -> bool) -> FileError {
        let Some(span) = error.span() else {
            return FileError { line: None, key: None, reason: error.message().trim().to_owned() };
        };
        let line = line_of(text, span.start);
        let Ok(table) = toml::de::DeTable::parse(text) else {
            return FileError { line: Some(line), key: None, reason: syntax_reason(text, line, error.message()) };
        };
        for (key, value) in table.get_ref() {
            let name = key.get_ref().as_ref();
            if key.span() == span && !is_setting(name) {
                return FileError {
                    line: Some(line),
                    key: None,
                    reason: format!("{name:?} is not a setting{}", suggestion(name)),
                };
            }
            if key.span().contains(&span.start) || value.span().contains(&span.start) {
                let reason = error.message().trim().to_owned();
                return FileError { line: Some(line), key: Some(name.to_owned()), reason };
            }
        }
        FileError { line: Some(line), key: None, reason: error.message().trim().to_owned() }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// toml's reason for a line that is not TOML, with what to write instead when the line is in
/// coturn's syntax (`no-tls`, `realm=example.org`).
fn syntax_reason(text: &str, line: usize, message: &str) -> String {
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    let message = message.trim();
    let is_name = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if is_name(source) {
        return format!(
            "{source:?} has no value ({message}): this file is TOML, where every setting is `name = value` \
             (`{source} = true`); `teletip-relay import-coturn` converts a turnserver.conf"
        );
    }
    if let Some((name, value)) = source.split_once('=')
        && is_name(name.trim())
        && !value.trim().starts_with(['"', '\'', '['])
    {
        let (name, value) = (name.trim(), value.trim());
        return format!("{message}: text is quoted in TOML (`{name} = {value:?}`)");
    }
    message.to_owned()
}

/// ", did you mean …?" for a name close to a setting's; coturn names are listed by
/// `import-coturn`.
fn suggestion(name: &str) -> String {
    let close = super::Settings::keys()
        .into_iter()
        .map(|key| (strsim::levenshtein(name, &key), key))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    match close {
        Some((_, key)) => format!("; did you mean {key:?}?"),
        None => " (the settings are listed by --help and in docs/relay-config.md; `teletip-relay import-coturn` \
                  says what each turnserver.conf option becomes)"
            .to_owned(),
    }
}
