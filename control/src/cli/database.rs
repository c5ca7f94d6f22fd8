//! Whether the configured database is one this service has already set up. `user add` run from
//! the wrong folder, or with a mistyped `--config`, used to create an empty SQLite file (and
//! fresh keys beside it) and add the user there, silently: the operator then logged in to
//! nothing. Commands that act on existing data refuse a database that is not there unless told
//! to create it (`--init`).

use std::path::PathBuf;

use crate::store::DynStore;

/// The file of a `sqlite://` URL (without its `?options`), `None` for another engine.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Why the database at `url` is not an initialised teletip database, or `None` if it is.
/// Checked before anything opens the database, which for SQLite would create the file.
pub fn missing_file(url: &str) -> Option<String> {
    let file = sqlite_file(url)?;
    (!file.exists()).then(|| format!("the database {} does not exist", file.display()))
}

/// Why an opened database holds no teletip schema (never migrated), or `None` if it does.
pub async fn missing_schema(store: &DynStore) -> Option<String> {
    match store.count_users().await {
        Ok(_) => None,
        Err(e) => Some(format!("the {} database holds no teletip tables ({e})", store.engine())),
    }
}

/// The message for a refused command: what is wrong, and the two ways out.
pub fn refusal(why: &str, command: &str) -> String {
    format!(
        "{why}. Check --config (or TELETIP_CONTROL_CONFIG) and --database-url: they must name the database the \
         service uses. To create a new database here, run `{command} --init`."
    )
}
