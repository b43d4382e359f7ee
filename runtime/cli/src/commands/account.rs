//! `nimbus register` and `nimbus login`: the two commands that take a
//! username and password; `login` keeps the token so that the other client
//! commands need no `--token`.

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
