//! Drives the real built app (`conclave-app`) through tauri-driver and WebKitWebDriver.
//!
//! Each [`App`] owns everything it starts: an Xvfb (when no DISPLAY is set), a tauri-driver
//! on free local ports, and the WebDriver session that launches the app. The app's data
//! root (`CONCLAVE_DATA_DIR`) and WebKit's storage (`XDG_*`) point into one temp folder, so
//! runs never see each other's history or remembered settings, and a "restart" is just a
//! second [`App`] on the same folder.
//!
//! Skips: when the app binary, tauri-driver or WebKitWebDriver is missing, a test prints
//! why and passes, unless `CONCLAVE_E2E=1`, which turns a missing piece into a failure
//! (`make test` sets it after building the app).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub type Res<T = ()> = anyhow::Result<T>;

/// One app at a time: the machines have two cores, and WebKitWebDriver sessions that race
/// for them make every timing-based assertion flaky.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// What the test needs from the machine, found or explained.
pub struct Setup {
    pub app: PathBuf,
    pub driver: PathBuf,
}

fn required() -> bool {
    std::env::var("CONCLAVE_E2E").is_ok_and(|v| v == "1")
}

/// `<target>/debug`: this test binary lives in `<target>/debug/deps`.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_path_buf())
}

fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The pieces, or None after printing why the test is skipped (a panic with
/// `CONCLAVE_E2E=1`).
pub fn setup() -> Option<Setup> {
    let app = std::env::var_os("CONCLAVE_APP_BIN")
        .map(PathBuf::from)
        .or_else(|| profile_dir().map(|d| d.join("conclave-app")));
    let mut missing = Vec::new();
    match &app {
        Some(a) if a.is_file() => {
            if !a.with_file_name("conclave-worker").is_file()
                && std::env::var_os("CONCLAVE_WORKER").is_none()
            {
                missing.push(format!(
                    "conclave-worker next to {} (cargo build -p conclave-worker)",
                    a.display()
                ));
            }
        }
        other => missing.push(format!(
            "the app binary {} (cd ui && npm ci && npm run build; cargo build -p conclave-app)",
            other
                .as_ref()
                .map_or("?".into(), |p| p.display().to_string())
        )),
    }
    let driver = std::env::var_os("TAURI_DRIVER")
        .map(PathBuf::from)
        .or_else(|| which("tauri-driver"));
    if driver.is_none() {
        missing.push("tauri-driver (cargo install tauri-driver --version ^2 --locked)".into());
    }
    if which("WebKitWebDriver").is_none() {
        missing.push("WebKitWebDriver (apt-get install webkit2gtk-driver)".into());
    }
    if std::env::var_os("DISPLAY").is_none() && which("Xvfb").is_none() {
        missing.push("a DISPLAY or Xvfb (apt-get install xvfb)".into());
    }
    let model = checkout().join("models").join(SMOLLM2_FILE);
    if !model.is_file() {
        missing.push(format!("{} (make models)", model.display()));
    }
    if !missing.is_empty() {
        let msg = format!("end-to-end test needs: {}", missing.join("; "));
        if required() {
            panic!("{msg} (CONCLAVE_E2E=1 makes this a failure)");
        }
        eprintln!("SKIPPED: {msg}. Set CONCLAVE_E2E=1 to fail instead.");
        return None;
    }
    Some(Setup {
        app: app?,
        driver: driver?,
    })
}

pub fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn shots_dir() -> PathBuf {
    std::env::var_os("CONCLAVE_SHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            profile_dir()
                .and_then(|d| d.parent().map(|t| t.join("e2e-shots")))
                .unwrap_or_else(|| PathBuf::from("target/e2e-shots"))
        })
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A private X server; `-displayfd` makes it pick a free display and tell us which.
fn start_xvfb() -> Res<(Owned, String)> {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("Xvfb stdout"))?;
    let owned = Owned(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let n = line.trim();
    anyhow::ensure!(
        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()),
        "Xvfb did not report a display: {line:?}"
    );
    Ok((owned, format!(":{n}")))
}

pub struct App {
    pub client: Client,
    pub data: PathBuf,
    name: String,
    // Field order is drop order: the driver goes before the X server it draws on.
    driver: Owned,
    _xvfb: Option<Owned>,
    watchdog: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The driver runs under `strace -f`, writing here (see [`App::start_traced`]).
    trace: Option<PathBuf>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.watchdog
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl App {
    /// Starts the app on `data` (its history, models folder and WebKit storage).
    pub async fn start(setup: &Setup, data: &Path, name: &str) -> Res<Self> {
        Self::start_with(setup, data, name, None).await
    }

    /// [`start`](Self::start) with tauri-driver, and so WebKitWebDriver, the app, WebKit's
    /// web and network processes and the model workers, under `strace -f`: every socket,
    /// connect, send, open and exec of every one of them goes to `trace`, read back with
    /// [`network_report`] after [`close`](Self::close).
    pub async fn start_traced(setup: &Setup, data: &Path, name: &str, trace: &Path) -> Res<Self> {
        anyhow::ensure!(
            which("strace").is_some(),
            "strace is missing (apt-get install strace; scripts/setup installs it)"
        );
        Self::start_with(setup, data, name, Some(trace)).await
    }

    async fn start_with(setup: &Setup, data: &Path, name: &str, trace: Option<&Path>) -> Res<Self> {
        let (xvfb, display) = match std::env::var("DISPLAY") {
            Ok(d) if !d.is_empty() => (None, d),
            _ => {
                let (x, d) = start_xvfb()?;
                (Some(x), d)
            }
        };
        clear_shots(name);
        let watchdog = watchdog(name, session_limit());
        let port = free_port()?;
        let native = free_port()?;
        let log = std::fs::File::create(data.join(format!("tauri-driver-{name}.log")))?;
        let mut command = match trace {
            Some(file) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "-s", "256", "-e", "signal=none", "-e"])
                    .arg(format!("trace={TRACED_CALLS}"))
                    .arg("-o")
                    .arg(file)
                    .arg(&setup.driver);
                c
            }
            None => Command::new(&setup.driver),
        };
        let driver = Owned(
            command
                .args([
                    "--port",
                    &port.to_string(),
                    "--native-port",
                    &native.to_string(),
                ])
                // WebKitWebDriver starts the app with this environment.
                .env("DISPLAY", &display)
                .env("CONCLAVE_DATA_DIR", data)
                .env("XDG_DATA_HOME", data.join("xdg-data"))
                .env("XDG_CACHE_HOME", data.join("xdg-cache"))
                .env("XDG_CONFIG_HOME", data.join("xdg-config"))
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        let url = format!("http://127.0.0.1:{port}");
        let caps = json!({ "tauri:options": { "application": setup.app } });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("a json! object"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => anyhow::bail!(
                    "no WebDriver session at {url}: {e} (see {}/tauri-driver-{name}.log)",
                    data.display()
                ),
            }
        };
        let app = App {
            client,
            data: data.to_path_buf(),
            name: name.to_owned(),
            driver,
            _xvfb: xvfb,
            watchdog,
            trace: trace.map(Path::to_path_buf),
        };
        app.wait_js(
            "return document.querySelector('[data-testid=\"new-chat\"]') !== null",
            30,
            "the UI to mount",
        )
        .await?;
        Ok(app)
    }

    /// Ends the session (which closes the app), then the driver and X server.
    pub async fn close(mut self) -> Res {
        let r = guard(self.client.clone().close()).await;
        if self.trace.is_some() {
            // Killing strace would lose what it has not written yet: end what it traces,
            // and it exits by itself once the last of them is gone.
            let tracer = self.driver.0.id();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.driver.0.try_wait(), Ok(None)) {
                for pid in descendants(tracer) {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Dropping `self` ends the driver, then the X server (field order).
        drop(self);
        r?.map_err(Into::into)
    }

    pub fn driver_pid(&self) -> u32 {
        self.driver.0.id()
    }

    /// Runs `script` with a completion callback as its last argument.
    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Res<Value> {
        Ok(guard(self.client.execute_async(script, args)).await??)
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Res<Value> {
        Ok(guard(self.client.execute(script, args)).await??)
    }

    /// Polls `script` until it returns something other than null/false/""/0.
    pub async fn wait_js(&self, script: &str, secs: u64, what: &str) -> Res<Value> {
        self.wait_js_args(script, vec![], secs, what).await
    }

    /// The catalog id of the first model offered in a compare column whose name matches
    /// `pattern` (a case-insensitive regular expression).
    pub async fn compare_model_option(&self, pattern: &str) -> Res<String> {
        let v = self
            .wait_js_args(
                "const re = new RegExp(arguments[0], 'i'); \
                 const s = document.querySelector('[data-testid=\"compare-model\"]'); \
                 const o = s && [...s.options].find(o => re.test(o.textContent) && o.value); \
                 return o ? o.value : null;",
                vec![serde_json::json!(pattern)],
                30,
                "the model in the column picker",
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Opens the Compare screen and puts the first model matching each pattern in the
    /// columns, in order.
    pub async fn open_compare_with(&self, patterns: &[&str]) -> Res {
        self.click("nav-compare").await?;
        self.wait_js_args(
            "return document.querySelectorAll('[data-testid=\"compare-column\"]').length >= arguments[0]",
            vec![serde_json::json!(patterns.len())],
            15,
            "the compare columns",
        )
        .await?;
        for (column, pattern) in patterns.iter().enumerate() {
            let id = self.compare_model_option(pattern).await?;
            self.pick_compare_model(column, &id).await?;
        }
        Ok(())
    }

    /// Sets the `column`-th compare column's model (a select; the UI applies it on change).
    pub async fn pick_compare_model(&self, column: usize, id: &str) -> Res {
        let ok = self
            .js(
                "const s = document.querySelectorAll('[data-testid=\"compare-model\"]')[arguments[0]]; \
                 if (!s) return false; s.value = arguments[1]; \
                 s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === arguments[1];",
                vec![serde_json::json!(column), serde_json::json!(id)],
            )
            .await?;
        anyhow::ensure!(
            ok == serde_json::json!(true),
            "could not pick {id} in column {column}"
        );
        Ok(())
    }

    pub async fn wait_js_args(
        &self,
        script: &str,
        args: Vec<Value>,
        secs: u64,
        what: &str,
    ) -> Res<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last_err = None;
        loop {
            match guard(self.client.execute(script, args.clone())).await {
                Ok(Ok(v)) if truthy(&v) => return Ok(v),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => last_err = Some(e.to_string()),
                Err(e) => last_err = Some(e.to_string()),
            }
            if Instant::now() >= deadline {
                let errors = self.visible_errors().await.unwrap_or_default();
                let shot = self
                    .shot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await
                    .ok();
                anyhow::bail!(
                    "timed out after {secs} s waiting for {what}; last script error: {last_err:?}; \
                     errors on screen: {errors:?}; screenshot: {shot:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn visible_errors(&self) -> Res<Vec<String>> {
        let v = self
            .js("return [...document.querySelectorAll('[data-testid=\"error\"]')].map(e => e.innerText)", vec![])
            .await?;
        Ok(serde_json::from_value(v).unwrap_or_default())
    }

    pub async fn click(&self, testid: &str) -> Res {
        let el = guard(self.client.find(Locator::Css(&tid(testid)))).await??;
        el.click().await?;
        Ok(())
    }

    pub async fn click_last(&self, testid: &str) -> Res {
        let all = guard(self.client.find_all(Locator::Css(&tid(testid)))).await??;
        let el = all.last().ok_or_else(|| anyhow::anyhow!("no {testid}"))?;
        el.click().await?;
        Ok(())
    }

    /// Sets an input/select the way a user's edit ends: value, then `input` and `change`
    /// (the settings fields apply on change, which typing alone does not fire).
    pub async fn set_value(&self, testid: &str, value: &str) -> Res {
        let ok = self
            .js(
                "const el = document.querySelector(arguments[0]); if (!el) return false; \
                 el.value = arguments[1]; \
                 el.dispatchEvent(new Event('input', {bubbles: true})); \
                 el.dispatchEvent(new Event('change', {bubbles: true})); return true;",
                vec![json!(tid(testid)), json!(value)],
            )
            .await?;
        anyhow::ensure!(ok == json!(true), "no element {testid}");
        Ok(())
    }

    /// Picks SmolLM2 in the model picker and waits until it is loaded.
    pub async fn load_smollm2(&self) -> Res {
        let id = self
            .wait_js(
                "const o = [...document.querySelectorAll('[data-testid=\"model-option\"]')] \
                   .find(o => /smollm2/i.test(o.textContent) && !o.disabled); return o ? o.value : null;",
                30,
                "SmolLM2 in the model picker",
            )
            .await?;
        let id = id.as_str().unwrap_or_default().to_owned();
        self.set_value("model-picker", &id).await?;
        self.wait_js(
            "const s = document.querySelector('[data-testid=\"model-status\"]'); \
             return s && /^Loaded/.test(s.textContent.trim());",
            120,
            "the model to load",
        )
        .await?;
        Ok(())
    }

    /// Opens the settings drawer if it is closed.
    pub async fn open_settings(&self) -> Res {
        let open = self
            .js(
                "return document.querySelector('[data-testid=\"setting-temperature\"]') !== null",
                vec![],
            )
            .await?;
        if open != json!(true) {
            self.click("settings-toggle").await?;
            self.wait_js(
                "return document.querySelector('[data-testid=\"setting-temperature\"]') !== null",
                10,
                "the settings drawer",
            )
            .await?;
        }
        Ok(())
    }

    pub async fn close_settings(&self) -> Res {
        let open = self
            .js(
                "return document.querySelector('[data-testid=\"setting-temperature\"]') !== null",
                vec![],
            )
            .await?;
        if open == json!(true) {
            self.click("settings-toggle").await?;
        }
        Ok(())
    }

    pub async fn assistant_count(&self) -> Res<usize> {
        let v = self
            .js(
                "return document.querySelectorAll('[data-testid=\"message-assistant\"]').length",
                vec![],
            )
            .await?;
        Ok(v.as_u64().unwrap_or(0) as usize)
    }

    /// Types a prompt and presses the send button.
    pub async fn send(&self, prompt: &str) -> Res {
        self.type_prompt(prompt).await?;
        self.click("send").await
    }

    /// Types the prompt and waits for the send button, without sending (the benchmark times
    /// from the click, not from the typing).
    pub async fn type_prompt(&self, prompt: &str) -> Res {
        let input = guard(self.client.find(Locator::Css(&tid("prompt")))).await??;
        input.clear().await?;
        input.send_keys(prompt).await?;
        self.wait_js(
            "const b = document.querySelector('[data-testid=\"send\"]'); return b && !b.disabled",
            10,
            "the send button",
        )
        .await?;
        Ok(())
    }

    /// Waits until there are `n` answers on screen and the last one is no longer streaming;
    /// returns its status.
    pub async fn wait_answer_done(&self, n: usize, secs: u64) -> Res<String> {
        let v = self
            .wait_js_args(
                "const a = document.querySelectorAll('[data-testid=\"message-assistant\"]'); \
                 if (a.length < arguments[0]) return null; const s = a[a.length - 1].dataset.status; \
                 const busy = document.querySelector('[data-testid=\"stop\"]') !== null; \
                 return (s && s !== 'streaming' && !busy) ? s : null;",
                vec![json!(n)],
                secs,
                "the answer to finish",
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The visible text of the last answer.
    pub async fn last_answer(&self) -> Res<String> {
        let v = self
            .js(
                "const a = document.querySelectorAll('[data-testid=\"message-assistant\"]'); \
                 const m = a[a.length - 1]; const t = m && m.querySelector('.md[data-testid=\"answer\"]'); \
                 return t ? t.innerText : '';",
                vec![],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    pub async fn text_of(&self, testid: &str) -> Res<String> {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
                vec![json!(tid(testid))],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Saves a screenshot of the app's window as `<shots>/<test>-<nn>-<label>.png`: taken
    /// from the X server (ImageMagick's `import`), what is really on screen. WebKitWebDriver's
    /// own screenshot never returns when WebKit paints without GL, which the app chooses on
    /// machines without a GPU (src-tauri/src/rendering.rs); it is the fallback only.
    pub async fn shot(&self, label: &str) -> Res<PathBuf> {
        let dir = shots_dir();
        std::fs::create_dir_all(&dir)?;
        // The last change may not be painted yet.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let n = SHOT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{}-{n:02}-{label}.png", self.name));
        let from_x = tokio::process::Command::new("import")
            .args(["-window", "Conclave"])
            .arg(&path)
            .kill_on_drop(true)
            .output();
        match guard(from_x).await {
            Ok(Ok(out)) if out.status.success() => return Ok(path),
            Ok(Ok(out)) => eprintln!(
                "import could not capture the window: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Ok(Err(e)) => eprintln!("no ImageMagick import ({e}); using WebDriver's screenshot"),
            Err(e) => eprintln!("{e}"),
        }
        let png = guard(self.client.screenshot()).await??;
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

/// The app and every process below it (the worker, WebKit's web and network processes),
/// as (pid, name), found from tauri-driver's pid through /proc.
/// One WebDriver call, bounded: a wedged session (seen once in CI after a worker was killed)
/// must fail the test with a reason, never hang the whole run.
pub async fn guard<T>(call: impl std::future::Future<Output = T>) -> Res<T> {
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .map_err(|_| anyhow::anyhow!("a WebDriver call got no answer in 20 s"))
}

/// Ends the test process if one app session lasts far past any scenario's length, so a hang
/// can never eat CI's time budget. Disarmed when the session's `App` is dropped.
fn watchdog(name: &str, secs: u64) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let name = name.to_owned();
    std::thread::spawn(move || {
        for _ in 0..secs {
            std::thread::sleep(Duration::from_secs(1));
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        eprintln!("e2e: '{name}' still running after {secs} s: giving up");
        std::process::exit(101);
    });
    done
}

/// Sessions longer than this are hung (the longest scenario takes about 40 s here).
/// Benchmarks that drive one session for minutes raise it with CONCLAVE_E2E_SESSION_SECS.
fn session_limit() -> u64 {
    std::env::var("CONCLAVE_E2E_SESSION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

pub fn app_processes(driver_pid: u32) -> Res<Vec<(u32, String)>> {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    let mut names: std::collections::HashMap<u32, String> = Default::default();
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may contain spaces, so split after the last ')'.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
        names.insert(pid, comm);
    }
    // Everything below the driver, minus the WebDriver plumbing itself (it talks to us).
    let mut stack = vec![driver_pid];
    let mut app = Vec::new();
    let mut in_app = std::collections::HashSet::new();
    while let Some(pid) = stack.pop() {
        let name = names.get(&pid).map(String::as_str).unwrap_or_default();
        let parent_in_app = in_app.contains(&pid);
        if parent_in_app || name.starts_with("conclave-app") {
            app.push((pid, name.to_owned()));
            for c in children.get(&pid).into_iter().flatten() {
                in_app.insert(*c);
            }
        }
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    anyhow::ensure!(
        !app.is_empty(),
        "no conclave-app process under tauri-driver {driver_pid}"
    );
    Ok(app)
}

/// Every process under `pid`, children before their own children.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

/// The calls [`App::start_traced`] records: every way to open a socket, reach a peer or
/// send it data, the opens (a resolver reads /etc/resolv.conf first), and the execs that
/// say which program each process id is.
pub const TRACED_CALLS: &str = "socket,connect,sendto,sendmsg,sendmmsg,openat,execve";

/// What a trace of [`App::start_traced`] shows.
#[derive(Debug, Default)]
pub struct NetworkReport {
    /// Programs started under the trace (file names of successful execs).
    pub programs: Vec<String>,
    /// Peers reached over IP, as "ip:port" (loopback ones included).
    pub ip_peers: Vec<String>,
    /// Anything that left the machine or resolved a name, with the trace line.
    pub violations: Vec<String>,
}

/// Reads an strace log: a connect or send to any IP address but loopback, any use of port
/// 53, a socket of a family that reaches beyond the machine (packet, raw links), a read
/// of /etc/resolv.conf or a connect to systemd-resolved is a violation.
pub fn network_report(trace: &str) -> NetworkReport {
    let mut r = NetworkReport::default();
    for line in trace.lines() {
        if let Some(rest) = line.split_once("execve(\"").map(|(_, r)| r) {
            if !line.contains("= -1") && !line.contains("resumed") {
                if let Some(path) = rest.split('"').next() {
                    let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                    if !r.programs.contains(&name) {
                        r.programs.push(name);
                    }
                }
            }
            continue;
        }
        if line.contains("openat(") {
            if line.contains("\"/etc/resolv.conf\"") {
                r.violations
                    .push(format!("resolver configuration read: {line}"));
            }
            continue;
        }
        if line.contains("socket(") {
            // Netlink sockets are SOCK_RAW too, and stay inside the kernel.
            if line.contains("AF_PACKET") || line.contains("SOCK_RAW") && line.contains("AF_INET") {
                r.violations.push(format!("raw or packet socket: {line}"));
            }
            continue;
        }
        let sending = ["connect(", "sendto(", "sendmsg(", "sendmmsg("]
            .iter()
            .any(|c| line.contains(c));
        if !sending {
            continue;
        }
        if line.contains("sun_path=") && line.contains("resolve") {
            r.violations.push(format!("name resolver reached: {line}"));
        }
        let Some(peer) = ip_peer(line) else {
            continue;
        };
        let (ip, port) = peer;
        let shown = format!("{ip}:{port}");
        if !r.ip_peers.contains(&shown) {
            r.ip_peers.push(shown.clone());
        }
        if !ip.is_loopback() && !ip.is_unspecified() {
            r.violations
                .push(format!("off the machine ({shown}): {line}"));
        } else if port == 53 {
            r.violations.push(format!("DNS ({shown}): {line}"));
        }
    }
    r
}

/// Runs `script` (bash) under the same strace options as [`App::start_traced`] and returns
/// the report: a check that the trace and its reading catch real traffic on this machine.
pub fn trace_of(script: &str) -> Res<NetworkReport> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("trace.txt");
    Command::new("strace")
        .args(["-f", "-qq", "-s", "256", "-e", "signal=none", "-e"])
        .arg(format!("trace={TRACED_CALLS}"))
        .arg("-o")
        .arg(&file)
        .args(["bash", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(network_report(&std::fs::read_to_string(&file)?))
}

/// The IP address and port in an strace line's socket address, if it has one.
fn ip_peer(line: &str) -> Option<(std::net::IpAddr, u16)> {
    let quoted = |after: &str| -> Option<String> {
        let rest = line.split_once(after)?.1;
        Some(rest.split('"').next()?.to_owned())
    };
    let port = |key: &str| -> Option<u16> {
        let rest = line.split_once(key)?.1;
        rest.split(')').next()?.parse().ok()
    };
    if line.contains("sa_family=AF_INET6") {
        let ip: std::net::Ipv6Addr = quoted("inet_pton(AF_INET6, \"")?.parse().ok()?;
        let ip = ip.to_ipv4_mapped().map_or(ip.into(), Into::into);
        Some((ip, port("sin6_port=htons(")?))
    } else if line.contains("sa_family=AF_INET") {
        let ip: std::net::Ipv4Addr = quoted("inet_addr(\"")?.parse().ok()?;
        Some((ip.into(), port("sin_port=htons(")?))
    } else {
        None
    }
}

/// Every TCP/UDP peer that the app or any process it started (the worker, WebKit's web
/// and network processes) is connected to right now, as "ip:port". Loopback peers and
/// unconnected sockets are left out: what remains would be a connection off the machine.
pub fn app_remote_peers(driver_pid: u32) -> Res<Vec<String>> {
    let app_pids: Vec<u32> = app_processes(driver_pid)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let mut inodes = std::collections::HashSet::new();
    for pid in &app_pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut peers = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || !inodes.contains(cols[9]) {
                continue;
            }
            if let Some(peer) = off_machine(cols[2]) {
                peers.push(format!("{table} {peer}"));
            }
        }
    }
    Ok(peers)
}

/// A /proc/net address ("0100007F:1F90", or 32 hex digits for IPv6) that is neither
/// unconnected nor loopback, formatted for a message.
fn off_machine(hex: &str) -> Option<String> {
    let (addr, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let bytes: Vec<u8> = (0..addr.len() / 2)
        .filter_map(|i| u8::from_str_radix(&addr[2 * i..2 * i + 2], 16).ok())
        .collect();
    // /proc prints each 32-bit word in host (little-endian) order.
    let fixed: Vec<u8> = bytes
        .chunks(4)
        .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    let ip: std::net::IpAddr = match fixed.len() {
        4 => std::net::Ipv4Addr::new(fixed[0], fixed[1], fixed[2], fixed[3]).into(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&fixed);
            let v6 = std::net::Ipv6Addr::from(a);
            v6.to_ipv4_mapped().map_or(v6.into(), Into::into)
        }
        _ => return None,
    };
    (!ip.is_unspecified() && !ip.is_loopback()).then(|| format!("{ip}:{port}"))
}

/// Screenshots of an earlier run of the same test would pass for this run's.
fn clear_shots(name: &str) {
    let prefix = format!("{name}-");
    let Ok(entries) = std::fs::read_dir(shots_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let rest = file.strip_prefix(&prefix).unwrap_or_default();
        // `<name>-<nn>-…`, so "restart-1" does not clear "restart-10".
        if rest.len() > 2
            && rest.as_bytes()[..2].iter().all(u8::is_ascii_digit)
            && rest.ends_with(".png")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

static SHOT_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn tid(testid: &str) -> String {
    format!("[data-testid=\"{testid}\"]")
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A fresh data root for one test.
pub fn data_dir() -> Res<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("conclave-e2e-").tempdir()?)
}

#[test]
fn strace_lines_are_judged() {
    let trace = r#"101 execve("/usr/bin/tauri-driver", ["tauri-driver"], 0x7ffd /* 9 vars */) = 0
102 execve("/opt/conclave-worker", ["conclave-worker"], 0x1 /* 2 vars */) = 0
103 execve("/usr/bin/nothing", ["x"], 0x1) = -1 ENOENT (No such file or directory)
101 connect(5, {sa_family=AF_INET, sin_port=htons(4444), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
101 connect(6, {sa_family=AF_INET6, sin6_port=htons(4445), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0
104 connect(7, {sa_family=AF_UNIX, sun_path="/tmp/.X11-unix/X99"}, 110) = 0
104 socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE) = 8"#;
    let r = network_report(trace);
    assert_eq!(r.programs, ["tauri-driver", "conclave-worker"]);
    assert_eq!(r.ip_peers, ["127.0.0.1:4444", "::1:4445"]);
    assert!(
        r.violations.is_empty(),
        "loopback, X11 and netlink are local: {r:?}"
    );

    let bad = [
        r#"9 connect(3, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("93.184.216.34")}, 16) = -1 EINPROGRESS"#,
        r#"9 sendto(3, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 1"#,
        r#"9 connect(4, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>"#,
        r#"9 openat(AT_FDCWD, "/etc/resolv.conf", O_RDONLY|O_CLOEXEC) = 3"#,
        r#"9 connect(5, {sa_family=AF_UNIX, sun_path="/run/systemd/resolve/io.systemd.Resolve"}, 110) = 0"#,
        r#"9 socket(AF_PACKET, SOCK_RAW, 768) = 3"#,
    ];
    for line in bad {
        assert_eq!(network_report(line).violations.len(), 1, "{line}");
    }
}

#[test]
fn proc_net_addresses_decode() {
    assert_eq!(off_machine("0100007F:1F90"), None, "127.0.0.1");
    assert_eq!(off_machine("00000000:0000"), None, "unconnected");
    assert_eq!(
        off_machine("0F02000A:0050").as_deref(),
        Some("10.0.2.15:80")
    );
    assert_eq!(
        off_machine("00000000000000000000000001000000:1F90"),
        None,
        "::1"
    );
    assert_eq!(
        off_machine("0000000000000000FFFF00000100007F:0035"),
        None,
        "::ffff:127.0.0.1"
    );
    assert_eq!(
        off_machine("0000000000000000FFFF00000F02000A:01BB").as_deref(),
        Some("10.0.2.15:443")
    );
}
