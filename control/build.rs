//! Embeds the web client's bundle (control/webapp/dist/, written by `npm run build` there) into
//! teletip-control: lists its files, with their hashed names, into `$OUT_DIR/web_files.rs` for
//! `src/web.rs`. Without a bundle (a plain `cargo build` before the npm step) the binary gets a
//! one-page note saying how to build the client, and cargo warns, so Rust-only work still builds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("webapp").join("dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let mut files = Vec::new();
    walk(&dist, &mut files);
    files.sort();
    let mut code = String::from("/// (URL path, content type, body) of every file of the web client's bundle.\n");
    code.push_str("pub const FILES: &[(&str, &str, &[u8])] = &[\n");
    let has_index = files.iter().any(|f| f == &dist.join("index.html"));
    if has_index {
        for f in &files {
            let rel = f.strip_prefix(&dist).expect("under dist").to_string_lossy().replace('\\', "/");
            let url = if rel == "index.html" { "/".to_string() } else { format!("/{rel}") };
            writeln!(code, "    ({url:?}, {:?}, include_bytes!({:?})),", content_type(f), f.display().to_string())
                .expect("write to String");
        }
        code.push_str("];\npub const BUILT: bool = true;\n");
    } else {
        println!(
            "cargo:warning=control/webapp/dist/ is missing: teletip-control serves a page saying how to build the web client (cd control/webapp && npm ci && npm run build, or .ci/install), then rebuild"
        );
        let page = out.join("no-client.html");
        fs::write(
            &page,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>teletip: web client not built</title></head>\n<body><h1>The web client is not built</h1>\n<p>This teletip-control was compiled without the web client's bundle. Build it with <code>bash .ci/install</code> (or <code>cd control/webapp &amp;&amp; npm ci &amp;&amp; npm run build</code>), then build teletip-control again. The HTTP API works without it.</p></body></html>\n",
        )
        .expect("write the placeholder page");
        writeln!(code, "    (\"/\", \"text/html; charset=utf-8\", include_bytes!({:?})),", page.display().to_string())
            .expect("write to String");
        code.push_str("];\npub const BUILT: bool = false;\n");
    }
    fs::write(out.join("web_files.rs"), code).expect("write web_files.rs");
}
