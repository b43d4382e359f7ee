//! `nimbus config` and `nimbus secret`: a function's variables and secrets,
//! which its code reads as environment variables.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nimbus_core::FunctionId;

use super::args::ClientArgs;

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the function's variables, one NAME=value per line.
    Get {
        /// Function id.
        id: FunctionId,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set variables (NAME=value ...), keeping the others.
    Set {
        /// Function id.
        id: FunctionId,
        /// NAME=value pairs; names are [A-Z_][A-Z0-9_]*.
        #[arg(required = true)]
        pairs: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove variables by name.
    Unset {
        /// Function id.
        id: FunctionId,
        /// Names to remove.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl ConfigArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            ConfigCommand::Get { id, client } => {
                print_vars(&client.client().vars(id).await?);
            }
            ConfigCommand::Set { id, pairs, client } => {
                let client = client.client();
                let mut vars = client.vars(id).await?;
                for pair in pairs {
                    let Some((name, value)) = pair.split_once('=') else {
                        bail!("{pair:?} is not NAME=value");
                    };
                    vars.insert(name.to_owned(), value.to_owned());
                }
                print_vars(&client.set_vars(id, &vars).await?);
            }
            ConfigCommand::Unset { id, names, client } => {
                let client = client.client();
                let mut vars = client.vars(id).await?;
                for name in &names {
                    if vars.remove(name).is_none() {
                        bail!("function {id} has no variable {name}");
                    }
                }
                print_vars(&client.set_vars(id, &vars).await?);
            }
        }
        Ok(())
    }
}

fn print_vars(vars: &std::collections::BTreeMap<String, String>) {
    for (name, value) in vars {
        println!("{name}={value}");
    }
}

#[derive(Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    command: SecretCommand,
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Set a secret. The value is read from stdin (all of it, one trailing
    /// newline removed) unless --value gives it (which shows it to `ps`).
    Put {
        /// Function id.
        id: FunctionId,
        /// Its name, [A-Z_][A-Z0-9_]*.
        name: String,
        /// The value.
        #[arg(long, env = "NIMBUS_SECRET_VALUE", hide_env_values = true)]
        value: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the function's secrets: names and when they were set, never values.
    Ls {
        /// Function id.
        id: FunctionId,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a secret.
    Rm {
        /// Function id.
        id: FunctionId,
        /// Its name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl SecretArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            SecretCommand::Put {
                id,
                name,
                value,
                client,
            } => {
                let value = match value {
                    Some(value) => value,
                    None => {
                        let mut value = String::new();
                        std::io::stdin()
                            .read_to_string(&mut value)
                            .context("cannot read the secret from stdin")?;
                        let trimmed = value.strip_suffix('\n').unwrap_or(&value);
                        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
                    }
                };
                client.client().put_secret(id, &name, &value).await?;
                eprintln!("secret {name} set");
            }
            SecretCommand::Ls { id, client } => {
                for secret in client.client().secrets(id).await? {
                    println!("{}\t{}", secret.name, secret.updated);
                }
            }
            SecretCommand::Rm { id, name, client } => {
                client.client().delete_secret(id, &name).await?;
                eprintln!("secret {name} deleted");
            }
        }
        Ok(())
    }
}
