//! `nimbus deploy`, `ls`, `rm` and `logs`: managing your functions (running
//! them is in `invoke.rs`).

use std::path::PathBuf;

use clap::Args;
use nimbus_cli::client::DeployOptions;
use nimbus_core::{Access, FunctionId, LimitsRequest};

use super::args::ClientArgs;

#[derive(Args)]
pub struct DeployArgs {
    /// The module or source: .wasm, .wat or .js.
    file: PathBuf,
    /// A name for the function, unique among yours (lowercase letters,
    /// digits and '-'): it answers on /fn/<you>/<name>.
    #[arg(long)]
    name: Option<String>,
    /// Anyone may call it on its URL, without a token (default: only you).
    #[arg(long)]
    public: bool,
    /// A host it may call over HTTP, as scheme://host[:port]
    /// (`https://api.example.com`, `https://*.example.org:8443`); repeat
    /// for more. None by default.
    #[arg(long = "allow-outbound", value_name = "PATTERN")]
    allow_outbound: Vec<String>,
    /// A key-value store of yours it may open (`default`, or any name of
    /// a-z, 0-9, `_`, `-`); repeat for more. None by default.
    #[arg(long = "kv-store", value_name = "STORE")]
    kv_stores: Vec<String>,
    #[command(flatten)]
    limits: LimitsRequest,
    #[command(flatten)]
    client: ClientArgs,
}

impl DeployArgs {
    /// Upload; the id goes to stdout (for scripts), the rest to stderr.
    pub async fn run(self) -> anyhow::Result<()> {
        let created = self
            .client
            .client()
            .deploy(
                &self.file,
                &DeployOptions {
                    name: self.name.as_deref(),
                    access: if self.public {
                        Access::Public
                    } else {
                        Access::Private
                    },
                    limits: self.limits,
                    allowed_outbound_hosts: &self.allow_outbound,
                    key_value_stores: &self.kv_stores,
                },
            )
            .await?;
        eprintln!(
            "deployed {} as function {} ({}, {} bytes, sha256 {})",
            self.file.display(),
            created.id,
            created.runtime.as_str(),
            created.size,
            created.digest,
        );
        if let Some(url) = &created.url {
            eprintln!(
                "{} at {}{url}",
                created.access.as_str(),
                self.client.client().url()
            );
        }
        println!("{}", created.id);
        Ok(())
    }
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
}

impl ListArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let functions = self.client.client().list().await?;
        println!(
            "{:>6}  {:<20}  {:<7}  {:>9}  CREATED",
            "ID", "NAME", "RUNTIME", "SIZE"
        );
        for f in functions {
            println!(
                "{:>6}  {:<20}  {:<7}  {:>9}  {}",
                f.id,
                f.name.as_deref().unwrap_or("-"),
                f.runtime.as_str(),
                f.size,
                f.created,
            );
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Function id.
    id: FunctionId,
    #[command(flatten)]
    client: ClientArgs,
}

impl RemoveArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        self.client.client().remove(self.id).await?;
        println!("deleted function {}", self.id);
        Ok(())
    }
}

#[derive(Args)]
pub struct LogsArgs {
    /// Function id.
    id: FunctionId,
    /// How many recent entries.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Keep printing new entries as the function writes them (Ctrl-C to
    /// stop).
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

impl LogsArgs {
    /// Each line of each entry, prefixed with the entry's time.
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.client.client();
        if self.follow {
            return client.follow_logs(self.id, self.limit, print_entry).await;
        }
        for entry in client.logs(self.id, self.limit).await? {
            print_entry(entry);
        }
        Ok(())
    }
}

fn print_entry(entry: nimbus_store::LogEntry) {
    let truncated = if entry.truncated { " [truncated]" } else { "" };
    for line in entry.text.lines() {
        println!("{} {line}{truncated}", entry.time);
    }
}
