//! Every client command against a real `nimbus up`, as a user types them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::stack::Up;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/functions");

struct Cli {
    config_dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            config_dir: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nimbus"));
        command
            .args(args)
            .env("NIMBUS_CONFIG_DIR", self.config_dir.path())
            .env_remove("NIMBUS_URL")
            .env_remove("NIMBUS_TOKEN")
            .env_remove("NIMBUS_PASSWORD");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Run; it must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "nimbus {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Run; it must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(!output.status.success(), "nimbus {args:?} should fail");
        String::from_utf8(output.stderr).unwrap()
    }
}

#[tokio::test]
async fn every_client_command_works_against_nimbus_up() {
    let data = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let up = Up::start_logged(data.path(), log.path()).await;
    let cli = Cli::new();
    let url = up.url.as_str();

    assert!(
        cli.ok(&["register", "ada", "--password", "password123", "--url", url])
            .contains("registrado")
    );
    assert!(
        cli.fails(&["register", "ada", "--password", "password123", "--url", url])
            .contains("conflict")
    );

    // login reads the password from stdin and saves URL and token privately.
    let mut login = cli
        .command(&["login", "ada", "--url", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    login
        .stdin
        .take()
        .unwrap()
        .write_all(b"password123\n")
        .unwrap();
    assert!(login.wait_with_output().unwrap().status.success());
    let config = cli.config_dir.path().join("config.json");
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        cli.fails(&["login", "ada", "--password", "wrong-password", "--url", url])
            .contains("unauthorized")
    );

    // From here on, no --url or --token: the saved ones are used.
    let add = cli.ok(&["deploy", &format!("{EXAMPLES}/add.wat"), "--name", "add"]);
    let add = add.trim();
    assert_eq!(cli.ok(&["invoke", add, "10"]).trim(), "11");
    let verbose = cli.run(&["invoke", "-v", add, "41"]);
    assert_eq!(String::from_utf8_lossy(&verbose.stdout).trim(), "42");
    assert!(String::from_utf8_lossy(&verbose.stderr).contains("fuel"));

    // Asynchronous: queue, then follow the invocation.
    let invocation = cli.ok(&["invoke", "--async", add, "99"]);
    let invocation = invocation.trim();
    assert_eq!(invocation.len(), 32, "{invocation}");
    assert_eq!(cli.ok(&["invocation", "--wait", invocation]).trim(), "100");
    let record: Value = serde_json::from_str(&cli.ok(&["invocation", invocation])).unwrap();
    assert_eq!(record["status"], "succeeded");
    assert!(
        cli.fails(&["invocation", "0123456789abcdef0123456789abcdef"])
            .contains("not_found")
    );

    // Usage against the quotas: one function so far.
    let account = cli.ok(&["account"]);
    assert!(account.contains("user ada"), "{account}");
    assert!(
        account
            .lines()
            .any(|l| l.starts_with("functions") && l.ends_with("1 / 100")),
        "{account}"
    );

    let wasm = data.path().join("echo.wasm");
    write_echo_wasm(&wasm);
    let echo = cli.ok(&[
        "deploy",
        wasm.to_str().unwrap(),
        "--name",
        "echo",
        "--fuel",
        "1000000",
    ]);
    let echo = echo.trim();
    assert_eq!(
        cli.ok(&["invoke", echo, r#"{"a":[1,2]}"#]).trim(),
        r#"{"a":[1,2]}"#
    );

    let greet = cli.ok(&["deploy", &format!("{EXAMPLES}/greet.js")]);
    let greet = greet.trim();
    let greeting = cli.ok(&["invoke", greet, r#"{"name": "Ada"}"#]);
    assert_eq!(greeting.trim(), r#"["Hello, Ada!"]"#);
    assert!(cli.ok(&["logs", greet]).contains("greeting Ada"));

    // Variables and secrets: the function reads them as process.env.
    assert_eq!(
        cli.ok(&["config", "set", greet, "LANGUAGE=es", "REGION=eu"]),
        "LANGUAGE=es\nREGION=eu\n"
    );
    let greeting = cli.ok(&["invoke", greet, r#"{"name": "Ada"}"#]);
    assert_eq!(greeting.trim(), r#"["Hola, Ada!"]"#);
    assert_eq!(
        cli.ok(&["config", "unset", greet, "REGION"]),
        "LANGUAGE=es\n"
    );
    assert_eq!(cli.ok(&["config", "get", greet]), "LANGUAGE=es\n");
    assert!(
        cli.fails(&["config", "set", greet, "lower=x"])
            .contains("not a valid name")
    );
    let mut put = cli
        .command(&["secret", "put", greet, "API_TOKEN"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin
        .take()
        .unwrap()
        .write_all(b"cli-secret-value\n")
        .unwrap();
    assert!(put.wait_with_output().unwrap().status.success());
    let secrets = cli.ok(&["secret", "ls", greet]);
    assert!(secrets.starts_with("API_TOKEN\t"), "{secrets}");
    assert!(!secrets.contains("cli-secret-value"), "{secrets}");
    // A call carries it (sealed) to the worker.
    let greeting = cli.ok(&["invoke", greet, r#"{"name": "Ada"}"#]);
    assert_eq!(greeting.trim(), r#"["Hola, Ada!"]"#);
    cli.ok(&["secret", "rm", greet, "API_TOKEN"]);
    assert_eq!(cli.ok(&["secret", "ls", greet]), "");
    assert!(
        cli.fails(&["secret", "rm", greet, "API_TOKEN"])
            .contains("not_found")
    );

    let listing = cli.ok(&["ls"]);
    for name in ["add", "echo"] {
        assert!(listing.contains(name), "{listing}");
    }
    assert_eq!(
        listing.lines().count(),
        4,
        "a header and three functions: {listing}"
    );

    let report = cli.ok(&[
        "bench", add, "-n", "30", "-c", "4", "--input", "1", "--json",
    ]);
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["requests"], 30);
    assert_eq!(report["ok"], 30);
    assert_eq!(
        report["fuel"]["min"], report["fuel"]["max"],
        "same input, same fuel"
    );
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0);

    assert!(
        cli.fails(&["bench", add, "--duration=-1"])
            .contains("positive")
    );
    assert!(cli.ok(&["rm", add]).contains("deleted"));
    assert!(cli.fails(&["invoke", add, "10"]).contains("not_found"));
    assert!(cli.fails(&["invoke", "999"]).contains("not_found"));
    assert!(
        cli.fails(&["ls", "--token", "bogus"])
            .contains("unauthorized")
    );
    assert!(
        cli.fails(&["invoke", echo, "not json"])
            .contains("not JSON")
    );
    assert!(
        cli.fails(&["deploy", &format!("{EXAMPLES}/Cargo.toml")])
            .contains(".wasm, .wat or .js")
    );

    // Key-value state: the owner's commands and a function granted the
    // store see the same keys.
    let visits = data.path().join("visits.js");
    std::fs::write(
        &visits,
        "const kv = Nimbus.kv.open();\n\
         return { greeting: kv.get('greeting'), visits: kv.increment('visits') };\n",
    )
    .unwrap();
    let visits = cli.ok(&["deploy", visits.to_str().unwrap(), "--kv-store", "default"]);
    let visits = visits.trim();
    cli.ok(&["kv", "put", "default", "greeting", "hello"]);
    assert_eq!(
        cli.ok(&["invoke", visits, "null"]).trim(),
        r#"{"greeting":"hello","visits":1}"#
    );
    assert_eq!(
        cli.ok(&["invoke", visits, "null"]).trim(),
        r#"{"greeting":"hello","visits":2}"#
    );
    assert_eq!(cli.ok(&["kv", "get", "default", "visits"]), "2");
    assert_eq!(cli.ok(&["kv", "ls", "default"]), "greeting\nvisits\n");
    assert_eq!(
        cli.ok(&["kv", "ls", "default", "--prefix", "vis"]),
        "visits\n"
    );
    let stores = cli.ok(&["kv", "stores"]);
    assert!(stores.starts_with("default\t2 keys\t"), "{stores}");
    cli.ok(&["kv", "rm", "default", "greeting"]);
    assert!(
        cli.fails(&["kv", "get", "default", "greeting"])
            .contains("not_found")
    );
    assert_eq!(
        cli.ok(&["invoke", visits, "null"]).trim(),
        r#"{"greeting":null,"visits":3}"#
    );
    up.terminate();
    // Nothing the platform wrote (its debug log, nats-server's store, the
    // keys it kept) holds the secret's value in clear; the variables are
    // there, so the search finds what is in clear.
    let written = |needle: &[u8]| {
        let mut files = vec![log.path().to_owned()];
        let mut dirs = vec![data.path().to_owned()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.iter().any(|file| {
            std::fs::read(file).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
    };
    assert!(written(b"LANGUAGE"));
    assert!(!written(b"cli-secret-value"));
}

fn write_echo_wasm(path: &Path) {
    let wat = include_str!("../../../engine/fixtures/echo.wat");
    let wasm = nimbus_engine::to_binary(wat.as_bytes()).unwrap();
    std::fs::write(path, wasm).unwrap();
}
