//! The web console at `/ui`, driven end to end in Debian's headless
//! Chromium by Playwright (`tests/browser/console.cjs`; `make setup`
//! installs both): register and log in through the page, deploy by pasting
//! WAT, invoke and read result, fuel and duration, follow a function's logs
//! live while it logs, see a chart drawn from real calls, and use it at a
//! phone's width and from the keyboard. Screenshots of each step are kept in
//! `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::Platform;

fn playwright() -> String {
    std::env::var("NIMBUS_PLAYWRIGHT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.tools/playwright/node_modules/playwright-core"
        )
        .into()
    })
}

#[tokio::test]
async fn the_console_logs_in_deploys_invokes_follows_logs_and_charts() {
    let platform = Platform::start().await;
    let screenshots = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/console-screenshots"
    ));
    std::fs::create_dir_all(&screenshots).unwrap();
    let playwright = playwright();
    assert!(
        std::path::Path::new(&playwright).exists(),
        "playwright-core not found at {playwright}: run `make test`, which installs it"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/browser/console.cjs");
    let url = platform.url("");
    let run = tokio::task::spawn_blocking({
        let screenshots = screenshots.clone();
        move || {
            Command::new("node")
                .arg(script)
                .env("NIMBUS_URL", url)
                .env("NIMBUS_PLAYWRIGHT", playwright)
                .env("NIMBUS_CHROMIUM", "/usr/bin/chromium")
                .env("NIMBUS_SCREENSHOTS", &screenshots)
                .env("NIMBUS_USER", "console-user")
                .env("NIMBUS_PASSWORD", "console-password-1")
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        screenshots.display()
    );
    for shot in [
        "login.png",
        "invoke.png",
        "logs.png",
        "charts.png",
        "phone.png",
    ] {
        let size = std::fs::metadata(screenshots.join(shot))
            .unwrap_or_else(|e| panic!("{shot}: {e}"))
            .len();
        assert!(size > 1000, "{shot} is {size} bytes");
    }
    // What the page showed is what the platform did: the calls it charted
    // were made.
    let token = platform.login("console-user", "console-password-1").await;
    let (_, list) = platform.get("/functions", Some(&token)).await;
    let functions = list["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 2, "{list}");
    let add = functions
        .iter()
        .find(|f| f["name"] == "console-add")
        .expect("the console deployed console-add");
    let (_, stats) = platform
        .get(&format!("/functions/{}/stats", add["id"]), Some(&token))
        .await;
    let calls: u64 = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["calls"].as_u64().unwrap())
        .sum();
    assert!(calls >= 2, "{stats}");
}
