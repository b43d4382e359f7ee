//! `nimbus kv`: your key-value stores, the state your functions keep
//! (`key_value_stores`, `nimbus deploy --kv-store`).

use std::io::{Read, Write};

use clap::{Args, Subcommand};

use super::args::ClientArgs;

#[derive(Args)]
pub struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Subcommand)]
enum KvCommand {
    /// List your stores: keys and bytes each.
    Stores {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a store's keys, one per line, in byte order.
    Ls {
        /// The store (`default`, or another of yours).
        store: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a key's value (raw bytes, as stored).
    Get {
        /// The store.
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a key. The value is the argument, or stdin without one.
    Put {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The value.
        value: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a key.
    Rm {
        /// The store.
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl KvArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            KvCommand::Stores { client } => {
                for store in client.client().kv_stores().await? {
                    println!("{}\t{} keys\t{} bytes", store.name, store.keys, store.bytes);
                }
            }
            KvCommand::Ls {
                store,
                prefix,
                client,
            } => {
                for key in client.client().kv_keys(&store, &prefix).await? {
                    println!("{key}");
                }
            }
            KvCommand::Get { store, key, client } => {
                let value = client.client().kv_get(&store, &key).await?;
                std::io::stdout().write_all(&value)?;
            }
            KvCommand::Put {
                store,
                key,
                value,
                client,
            } => {
                let value = match value {
                    Some(value) => value.into_bytes(),
                    None => {
                        let mut value = Vec::new();
                        std::io::stdin().read_to_end(&mut value)?;
                        value
                    }
                };
                let revision = client.client().kv_put(&store, &key, value).await?;
                eprintln!("{store}/{key} set (revision {revision})");
            }
            KvCommand::Rm { store, key, client } => {
                client.client().kv_delete(&store, &key).await?;
                eprintln!("{store}/{key} deleted");
            }
        }
        Ok(())
    }
}
