//! Keeps the four places that name an IPC command in step, by reading them as text:
//! `generate_handler!` (src/lib.rs) with the `#[tauri::command]` fns it lists, the permission
//! list (build.rs), the main window's capability (capabilities/main.json) and the UI's calls
//! (ui/src/lib/api.ts and any other UI source that invokes the shell).
//! A command added in one place and forgotten in another would either be unreachable
//! ("not allowed") or allowed without existing; both fail here, before anyone clicks.
//! Also pins the security settings of tauri.conf.json that must not drift.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

type Names = BTreeSet<String>;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The text between `start` and the first `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("'{start}' not found"))
        + start.len();
    let len = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("'{end}' not found after '{start}'"));
    &text[from..from + len]
}

/// Every `prefix<name>` in `text`, where a name is `[a-z0-9_]+`.
fn names_after(text: &str, prefix: &str) -> Names {
    text.match_indices(prefix)
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// `(module, command)` for every entry of `generate_handler!` (`$crate::<module>::<name>`).
fn handler_entries() -> BTreeSet<(String, String)> {
    let lib = read(&crate_dir().join("src/lib.rs"));
    between(&lib, "generate_handler![", "]")
        .split(',')
        .filter_map(|entry| {
            let path = entry.trim().strip_prefix("$crate::")?;
            let (module, name) = path.rsplit_once("::")?;
            Some((module.to_owned(), name.to_owned()))
        })
        .collect()
}

fn handler_names() -> Names {
    handler_entries().into_iter().map(|(_, n)| n).collect()
}

/// Every `#[tauri::command]` fn in the modules the handler list names.
fn command_fns() -> Names {
    let modules: BTreeSet<String> = handler_entries().into_iter().map(|(m, _)| m).collect();
    let mut names = Names::new();
    for module in modules {
        let src = read(
            &crate_dir()
                .join("src")
                .join(format!("{}.rs", module.replace("::", "/"))),
        );
        // The first `fn` after each attribute is the command (later ones are helpers).
        names.extend(src.split("#[tauri::command]").skip(1).filter_map(|chunk| {
            let at = chunk.find("fn ")? + 3;
            let name: String = chunk[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        }));
    }
    names
}

fn build_rs_names() -> Names {
    let build = read(&crate_dir().join("build.rs"));
    between(&build, "const COMMANDS: &[&str] = &[", "];")
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn capability() -> serde_json::Value {
    let text = read(&crate_dir().join("capabilities/main.json"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("capabilities/main.json: {e}"))
}

fn permissions() -> Vec<String> {
    capability()["permissions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| p.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn capability_names() -> Names {
    permissions()
        .iter()
        .filter_map(|p| p.strip_prefix("allow-"))
        .map(|p| p.replace('-', "_"))
        .collect()
}

/// Command names the UI invokes: `call('x'` / `invoke('x'` in its sources (api.ts holds the
/// typed wrappers; any other file that talks to the shell counts too). Tests and the dev
/// mock are left out: they name commands without calling the shell.
fn ui_names() -> Names {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "mock" | "test" | "tests" | "node_modules") {
                    walk(&path, out);
                }
            } else if (name.ends_with(".ts") || name.ends_with(".svelte"))
                && !name.contains(".test.")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&crate_dir().join("../ui/src"), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("lib/api.ts")),
        "ui/src/lib/api.ts not found"
    );
    let mut names = Names::new();
    for f in files {
        let text = read(&f);
        names.extend(names_after(&text, "call('"));
        names.extend(names_after(&text, "invoke('"));
    }
    names
}

#[test]
fn every_place_names_the_same_commands() {
    let handlers = handler_names();
    assert!(
        handlers.len() >= 10,
        "parsed too few handlers: {handlers:?}"
    );
    assert_eq!(
        command_fns(),
        handlers,
        "#[tauri::command] fns vs generate_handler!"
    );
    assert_eq!(
        build_rs_names(),
        handlers,
        "build.rs COMMANDS vs generate_handler!"
    );
    assert_eq!(
        capability_names(),
        handlers,
        "capabilities/main.json vs generate_handler!"
    );
    assert_eq!(
        ui_names(),
        handlers,
        "ui/src/lib/api.ts vs generate_handler!"
    );
}

#[test]
fn the_capability_grants_nothing_beyond_our_commands_events_and_the_file_dialogs() {
    let cap = capability();
    assert_eq!(cap["windows"], serde_json::json!(["main"]));
    let allowed_core: BTreeSet<&str> = [
        "core:event:allow-listen",
        "core:event:allow-unlisten",
        "dialog:allow-open",
        "dialog:allow-save",
        // Tauri's zoom-hotkey polyfill (zoomHotkeysEnabled) calls set_webview_zoom.
        "core:webview:allow-set-webview-zoom",
    ]
    .into();
    for p in permissions() {
        assert!(
            p.starts_with("allow-") || allowed_core.contains(p.as_str()),
            "unexpected permission {p}: the window may only call our own commands"
        );
    }
}

#[test]
fn config_is_locked_down_and_offline() {
    let conf: serde_json::Value = serde_json::from_str(&read(&crate_dir().join("tauri.conf.json")))
        .unwrap_or_else(|e| panic!("tauri.conf.json: {e}"));
    assert_eq!(conf["identifier"], "org.conclave.app");
    assert_eq!(conf["app"]["withGlobalTauri"], false);
    // Ctrl+= / Ctrl+- / Ctrl+0 zoom the page (readability; issue #18).
    assert_eq!(conf["app"]["windows"][0]["zoomHotkeysEnabled"], true);
    assert_eq!(conf["bundle"]["targets"], serde_json::json!(["deb"]));
    let csp = conf["app"]["security"]["csp"].as_str().unwrap_or_default();
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.starts_with(name))
            .unwrap_or_else(|| panic!("CSP lacks {name}: {csp}"))
            .to_owned()
    };
    assert_eq!(directive("default-src"), "default-src 'self'");
    assert_eq!(directive("script-src"), "script-src 'self'");
    // The page may talk to the shell only: no http(s) origin besides the IPC bridge.
    assert_eq!(
        directive("connect-src"),
        "connect-src ipc: http://ipc.localhost"
    );
    assert!(!csp.contains("unsafe-eval") && !csp.contains('*'), "{csp}");
    // No plugins, no <base> rewriting relative URLs, no form posting anywhere: none of
    // these fall back to default-src.
    assert_eq!(directive("object-src"), "object-src 'none'");
    assert_eq!(directive("base-uri"), "base-uri 'none'");
    assert_eq!(directive("form-action"), "form-action 'none'");
    let windows = conf["app"]["windows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0]["label"], "main");
    for icon in conf["bundle"]["icon"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let path = crate_dir().join(icon.as_str().unwrap_or_default());
        assert!(path.is_file(), "icon {} missing", path.display());
    }
}
