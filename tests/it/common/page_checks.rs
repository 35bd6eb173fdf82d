//! What the browser tests of the hosted pages check every page with: the
//! HTML checker (Debian's `tidy`), the accessibility checker (axe-core,
//! from the `axe-playwright-python` wheel, which ships `axe.min.js`; npm
//! is out of reach), and a screenshot under `target/ui-screenshots/`.
//!
//! The tools are found at fixed places (each overridable by an
//! environment variable). Under CI a missing one fails the test; outside
//! CI the test is skipped with a note saying what to install.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::webdriver::{find_program, Session};

/// The programs and the script the browser tests need.
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub tidy: PathBuf,
    /// The source of `axe.min.js`.
    pub axe: String,
}

/// Whether this run is CI's (`CI` set, and not `false` or `0`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"))
}

/// `axe.min.js`: `AUTHD_AXE_JS`, or the file the `axe-playwright-python`
/// package installs (found without importing it: its own dependencies
/// are not needed).
fn axe_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AUTHD_AXE_JS") {
        return Some(PathBuf::from(path));
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('axe_playwright_python'); \
             print(s.submodule_search_locations[0] if s else '')",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let path = Path::new(dir.trim()).join("axe.min.js");
    (!dir.trim().is_empty() && path.is_file()).then_some(path)
}

/// Every tool, or `None` (with a note) to skip: outside CI only.
pub fn tools_or_skip(test: &str) -> Option<Tools> {
    let env_path = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let chromium = env_path("AUTHD_CHROMIUM").or_else(|| {
        // Debian's browser itself; /usr/bin/chromium is a shell wrapper.
        find_program(
            &["chromium", "chromium-browser"],
            &["/usr/lib/chromium/chromium"],
        )
    });
    let chromedriver = env_path("AUTHD_CHROMEDRIVER")
        .or_else(|| find_program(&["chromedriver"], &["/usr/bin/chromedriver"]));
    let tidy = find_program(&["tidy"], &[]);
    let axe = axe_path().and_then(|path| std::fs::read_to_string(path).ok());
    let missing: Vec<&str> = [
        ("chromium (apt-get install chromium)", chromium.is_none()),
        (
            "chromedriver (apt-get install chromium-driver)",
            chromedriver.is_none(),
        ),
        ("tidy (apt-get install tidy)", tidy.is_none()),
        (
            "axe.min.js (pip install --no-deps axe-playwright-python==0.1.8, or AUTHD_AXE_JS)",
            axe.is_none(),
        ),
    ]
    .into_iter()
    .filter_map(|(what, missing)| missing.then_some(what))
    .collect();
    if let (Some(chromium), Some(chromedriver), Some(tidy), Some(axe)) =
        (chromium, chromedriver, tidy, axe)
    {
        return Some(Tools {
            chromium,
            chromedriver,
            tidy,
            axe,
        });
    }
    assert!(
        !under_ci(),
        "{test}: CI is set and these are missing: {} (.ci/run installs them)",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED {test}: missing {} (with CI=true this fails)",
        missing.join(", ")
    );
    None
}

/// Checks `html` (the bytes a page was served as) with tidy: no error,
/// no warning.
pub fn tidy_clean(tidy: &Path, what: &str, html: &str) {
    let mut child = Command::new(tidy)
        .args(["-quiet", "-errors", "--show-warnings", "yes", "-utf8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidy runs");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(html.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && report.trim().is_empty(),
        "tidy on {what} ({:?}):\n{report}\n{html}",
        output.status.code()
    );
}

/// Runs axe-core on the session's current page: no violation of any rule
/// it runs by default (WCAG 2.x A and AA, and its best practices). The
/// page's policy forbids scripts: the session must bypass it
/// ([`bypass_csp`]) for axe to be injected.
pub fn axe_clean(session: &Session<'_>, axe: &str, what: &str) {
    let loaded = session.execute(&format!("{axe}\nreturn typeof window.axe;"), json!([]));
    assert_eq!(loaded, json!("object"), "axe did not load on {what}");
    let result = session.execute_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, {resultTypes: ['violations']})
           .then(r => done(JSON.stringify(r.violations.map(v => ({
             id: v.id, impact: v.impact, help: v.help,
             nodes: v.nodes.map(n => n.html)})))))
           .catch(e => done('ERROR ' + e));",
        json!([]),
    );
    let text = result.as_str().unwrap_or_default();
    let violations: Value =
        serde_json::from_str(text).unwrap_or_else(|_| panic!("axe failed on {what}: {text}"));
    assert_eq!(
        violations,
        json!([]),
        "accessibility violations on {what}: {violations:#}"
    );
}

/// Lets scripts from the test run on pages whose policy forbids them:
/// DevTools' `Page.setBypassCSP`, in this session only (the pages' CSP
/// itself is checked in tests/it/ui.rs).
pub fn bypass_csp(session: &Session<'_>) {
    session.cdp("Page.setBypassCSP", json!({"enabled": true}));
}

/// Where the screenshots go: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a PNG of the current page as `NAME.png` under
/// [`screenshot_dir`].
pub fn screenshot(session: &Session<'_>, name: &str, width: u32) -> PathBuf {
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, session.screenshot(width)).unwrap();
    path
}
