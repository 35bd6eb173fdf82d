//! A small synchronous W3C WebDriver client, for the browser tests of the
//! hosted pages (tests/it/ui_browser.rs), driving Debian's ChromeDriver
//! and Chromium.
//!
//! Why not `thirtyfour` or `fantoccini`: both are async on tokio and
//! bring hyper and a second HTTP stack into the test build, for a dozen
//! JSON calls to a driver on loopback. These few calls over `ureq`
//! (already a dependency, synchronous like the rest of the suite) are the
//! whole protocol the tests need: sessions, navigation, elements, script,
//! cookies, screenshots, and ChromeDriver's `goog/cdp/execute` for the
//! DevTools commands (bypassing the CSP for the accessibility checker).
//!
//! The driver and the browser are given by path (no driver download:
//! there is no network), the browser runs headless as root with
//! `--no-sandbox --headless=new --disable-dev-shm-usage`, and both are
//! killed, process group and all, when the [`Driver`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The key of an element reference in W3C WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Longest a driver call may take (a page load included).
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// A running ChromeDriver on a port of loopback.
pub struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
    _logs: tempfile::TempDir,
}

/// A WebDriver error answer, or a transport failure.
#[derive(Debug)]
pub struct DriverError(pub String);

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Driver {
    /// Starts `chromedriver` on a free port (`--port=0`: it prints the one
    /// it took), in a process group of its own.
    pub fn start(chromedriver: &Path) -> Driver {
        use std::os::unix::process::CommandExt as _;

        let logs = tempfile::tempdir().unwrap();
        let out = logs.path().join("chromedriver.out");
        let child = Command::new(chromedriver)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let port = text
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse::<u16>().ok());
            if let Some(port) = port {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start within 20 s: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_LIMIT))
            .build()
            .into();
        Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent,
            _logs: logs,
        }
    }

    /// One call: `method path` with a JSON `body`; the answer's `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, DriverError> {
        let url = format!("{}{path}", self.base);
        let fail = |e: ureq::Error| DriverError(format!("{method} {path}: {e}"));
        let mut answer = match (method, body) {
            ("GET", _) => self.agent.get(&url).call().map_err(fail)?,
            ("DELETE", _) => self.agent.delete(&url).call().map_err(fail)?,
            (_, body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(&json!({})).to_string())
                .map_err(fail)?,
        };
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(fail)?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| DriverError(format!("{method} {path}: {e}: {text}")))?;
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 {
            return Err(DriverError(format!(
                "{method} {path}: {status} {}: {}",
                value["error"].as_str().unwrap_or("?"),
                value["message"].as_str().unwrap_or("?")
            )));
        }
        Ok(value)
    }

    /// A new browser session: headless Chromium at `chromium`, its
    /// profile in `profile`, the window `width` by `height`.
    pub fn session(
        &self,
        chromium: &Path,
        profile: &Path,
        (width, height): (u32, u32),
    ) -> Session<'_> {
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-dev-shm-usage",
                            "--disable-gpu",
                            "--no-first-run",
                            "--no-default-browser-check",
                            "--disable-extensions",
                            "--disable-background-networking",
                            "--disable-features=Translate,PasswordLeakDetection",
                            "--lang=en-US",
                            "--hide-scrollbars",
                            format!("--window-size={width},{height}"),
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                },
            },
        });
        let value = self
            .call("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {value}"))
            .to_owned();
        let session = Session { driver: self, id };
        session.post(
            "timeouts",
            &json!({"implicit": 0, "pageLoad": 30_000, "script": 30_000}),
        );
        session
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group was made for this child (process_group(0)): the
        // driver and the browsers it started.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// One browser session; ended on drop.
pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/session/{}/{rest}", self.id)
    }

    fn post(&self, rest: &str, body: &Value) -> Value {
        self.try_post(rest, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_post(&self, rest: &str, body: &Value) -> Result<Value, DriverError> {
        self.driver.call("POST", &self.path(rest), Some(body))
    }

    fn get(&self, rest: &str) -> Value {
        self.driver
            .call("GET", &self.path(rest), None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.post("url", &json!({ "url": url }));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.get("url").as_str().unwrap_or_default().to_owned()
    }

    /// The current page's title.
    pub fn title(&self) -> String {
        self.get("title").as_str().unwrap_or_default().to_owned()
    }

    /// The element `css` selects, if one does.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let value = self
            .try_post("element", &json!({"using": "css selector", "value": css}))
            .ok()?;
        value[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// The element `css` selects (fails the test without one).
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css).unwrap_or_else(|| {
            panic!(
                "no element {css:?} on {} ({}):\n{}",
                self.url(),
                self.title(),
                self.text("body")
            )
        })
    }

    /// Every element `css` selects.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let value = self.post("elements", &json!({"using": "css selector", "value": css}));
        value
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element(id.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Types `text` into the element `css` selects, after clearing it.
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.post(&format!("element/{}/clear", element.0), &json!({}));
        self.post(
            &format!("element/{}/value", element.0),
            &json!({ "text": text }),
        );
    }

    /// Clicks `element`, a link or a form's button, and waits for the
    /// page it leads to: until the clicked element's document is gone
    /// (ChromeDriver may answer a click before the navigation it starts
    /// has replaced the page), after which commands wait for the load.
    pub fn click(&self, element: &Element) {
        self.post(&format!("element/{}/click", element.0), &json!({}));
        let deadline = Instant::now() + Duration::from_secs(30);
        let name = self.path(&format!("element/{}/name", element.0));
        while self.driver.call("GET", &name, None).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the click did not leave {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Clicks the element `css` selects.
    pub fn click_on(&self, css: &str) {
        let element = self.find(css);
        self.click(&element);
    }

    /// Moves the focus to the element `css` selects.
    pub fn focus(&self, css: &str) {
        let element = self.find(css);
        self.execute("arguments[0].focus();", json!([{ ELEMENT: element.0 }]));
    }

    /// Presses and releases Tab, on whatever has the focus.
    pub fn press_tab(&self) {
        let tab = "\u{E004}";
        self.post(
            "actions",
            &json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": tab}, {"type": "keyUp", "value": tab}]}]}),
        );
        self.driver
            .call("DELETE", &self.path("actions"), None)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The rendered text of `element`.
    pub fn text_of(&self, element: &Element) -> String {
        self.get(&format!("element/{}/text", element.0))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The rendered text of the element `css` selects, or `""`.
    pub fn text(&self, css: &str) -> String {
        self.try_find(css)
            .map(|element| self.text_of(&element))
            .unwrap_or_default()
    }

    /// An attribute of `element`.
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.get(&format!("element/{}/attribute/{name}", element.0))
            .as_str()
            .map(str::to_owned)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and
    /// returns what it returns.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.post("execute/sync", &json!({"script": script, "args": args}))
    }

    /// Runs `script`, whose last argument is the callback it calls with
    /// its result.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.post("execute/async", &json!({"script": script, "args": args}))
    }

    /// A DevTools protocol command, through ChromeDriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("goog/cdp/execute", &json!({"cmd": cmd, "params": params}))
    }

    /// The browser's cookies for the current page, `HttpOnly` ones
    /// included, as one `Cookie` header value.
    pub fn cookie_header(&self) -> String {
        let cookies = self.get("cookie");
        cookies
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|c| {
                        format!(
                            "{}={}",
                            c["name"].as_str().unwrap_or_default(),
                            c["value"].as_str().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    /// A PNG of the whole page at `width` CSS pixels: the viewport is
    /// made as tall as the page for the shot, then given back.
    pub fn screenshot(&self, width: u32) -> Vec<u8> {
        let height = self
            .execute(
                "return Math.ceil(document.documentElement.scrollHeight);",
                json!([]),
            )
            .as_u64()
            .unwrap_or(800)
            .clamp(200, 4000);
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.cdp("Page.captureScreenshot", json!({"format": "png"}));
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}));
        let data = shot["data"].as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("screenshot: {e}"))
    }

    /// Emulates a viewport `width` CSS pixels wide (a phone's, say) until
    /// [`Session::reset_viewport`].
    pub fn emulate_width(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}),
        );
    }

    pub fn reset_viewport(&self) {
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}));
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

/// A program on `PATH`, or at one of `fixed`'s paths.
pub fn find_program(names: &[&str], fixed: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(
            on_path
                .iter()
                .flat_map(|dir| names.iter().map(move |name| dir.join(name))),
        )
        .find(|candidate| candidate.is_file())
}
