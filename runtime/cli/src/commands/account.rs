//! `nimbus register` and `nimbus login`: the two commands that take a
//! username and password; `login` keeps the token so that the other client
//! commands need no `--token`. `nimbus account`: usage against the quotas.

use clap::Args;
use nimbus_cli::client;

use super::args::ClientArgs;

#[derive(Args)]
pub struct Credentials {
    /// Username.
    username: String,
    /// Password (default: read one line from stdin).
    #[arg(long, env = "NIMBUS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

impl Credentials {
    fn password(&self) -> anyhow::Result<String> {
        if let Some(password) = &self.password {
            return Ok(password.clone());
        }
        eprint!("password for {}: ", self.username);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

#[derive(Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    credentials: Credentials,
}

impl RegisterArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let Self { credentials } = self;
        let client = credentials.client.client();
        let message = client
            .register(&credentials.username, &credentials.password()?)
            .await?;
        println!("{message}");
        Ok(())
    }
}

#[derive(Args)]
pub struct LoginArgs {
    #[command(flatten)]
    credentials: Credentials,
}

impl LoginArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let Self { credentials } = self;
        let client = credentials.client.client();
        let token = client
            .login(&credentials.username, &credentials.password()?)
            .await?;
        let path = client::Config {
            url: Some(client.url().to_owned()),
            token: Some(token),
        }
        .save()?;
        println!(
            "logged in as {} at {} (token saved in {})",
            credentials.username,
            client.url(),
            path.display()
        );
        Ok(())
    }
}

#[derive(Args)]
pub struct AccountArgs {
    #[command(flatten)]
    client: ClientArgs,
}

impl AccountArgs {
    /// One line per quota (`used / limit`), then each function's.
    pub async fn run(self) -> anyhow::Result<()> {
        let account = self.client.client().account().await?;
        let pair = |v: &serde_json::Value| format!("{} / {}", v["used"], v["limit"]);
        println!("user {}", account["username"].as_str().unwrap_or("?"));
        if let Some(quotas) = account["quotas"].as_object() {
            for (name, quota) in quotas {
                println!("{name:<14} {}", pair(quota));
            }
        }
        for f in account["functions"].as_array().into_iter().flatten() {
            println!(
                "function {:<6} module {} bytes, logs {} entries, {} bytes",
                f["id"],
                f["module_bytes"],
                pair(&f["log_entries"]),
                pair(&f["log_bytes"]),
            );
        }
        Ok(())
    }
}
