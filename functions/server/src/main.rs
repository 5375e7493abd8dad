//! `wharf`: the whole registry in one local process (`wharf serve`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wharf::api::{self, AppState};
use wharf::config::{BlobBackend, Config, LogFormat, MetaBackend};
use wharf::storage::dynamodb::{self, DynamoMetaStore};
use wharf::storage::fs::FsBlobStore;
use wharf::storage::redb::RedbMetaStore;
use wharf::storage::s3::{self, S3BlobStore};
use wharf::storage::{BlobStore, MetaStore};

/// File name of the embedded metadata database inside the data directory.
const META_FILE: &str = "meta.redb";

/// How long requests in flight may run on after SIGINT/SIGTERM. A stalled client must not keep
/// the process alive forever, and nothing is lost by cutting it off: an interrupted chunk is
/// discarded and the upload session resumes from its last committed offset.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = "wharf", version, about = "Wharf: a passwordless OCI registry")]
struct Cli {
    /// TOML configuration file (also `WHARF_CONFIG`).
    #[arg(long, global = true, env = "WHARF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every endpoint group in one process, on the embedded local storage.
    Serve {
        /// Address to listen on (default 127.0.0.1:5000; also `WHARF_LISTEN`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data directory (default ./wharf-data; also `WHARF_DATA_DIR`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Allow a non-loopback listen address. There is no authentication yet: anyone who can
        /// reach the address can push.
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// Administrative tasks.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand, Debug)]
enum Admin {
    /// Create the S3 bucket configured as the blob store (`WHARF_BLOBS=s3://…`), with a
    /// lifecycle rule that drops abandoned uploads. Does nothing if it exists.
    CreateBucket,
    /// Create the DynamoDB table configured as the metadata store (`WHARF_META=dynamodb://…`),
    /// with TTL on upload sessions. Does nothing if it exists.
    CreateTable,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            allow_non_loopback,
        } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            config.allow_non_loopback |= allow_non_loopback;
            init_logging(config.log_format);
            serve(config).await
        }
        Command::Admin(admin) => {
            init_logging(config.log_format);
            run_admin(admin, &config).await
        }
    }
}

async fn run_admin(admin: Admin, config: &Config) -> anyhow::Result<()> {
    match admin {
        Admin::CreateBucket => {
            let BlobBackend::S3(s3) = &config.blobs else {
                bail!("the blob store is not S3: set WHARF_BLOBS=s3://<bucket>?endpoint=…");
            };
            let store = S3BlobStore::connect(s3.clone()).await;
            let setup = s3::admin::create_bucket(&store)
                .await
                .context("creating the bucket")?;
            tracing::info!(bucket = %s3.bucket, created = setup.created, lifecycle = setup.lifecycle, "bucket ready");
            if !setup.lifecycle {
                tracing::warn!(
                    "the server refused the lifecycle rule: abandoned uploads are not cleaned up by the bucket"
                );
            }
        }
        Admin::CreateTable => {
            let MetaBackend::DynamoDb(d) = &config.meta else {
                bail!(
                    "the metadata store is not DynamoDB: set WHARF_META=dynamodb://<table>?endpoint=…"
                );
            };
            let data_dir = data_dir(config)?;
            let (blobs, _) = open_blobs(config, &data_dir).await?;
            let store = DynamoMetaStore::connect(d.clone(), blobs).await;
            let created = dynamodb::admin::create_table(&store)
                .await
                .context("creating the table")?;
            tracing::info!(table = %d.table, created, "table ready");
        }
    }
    Ok(())
}

fn data_dir(config: &Config) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    Ok(config.data_dir.canonicalize()?)
}

async fn open_blobs(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<(Arc<dyn BlobStore>, String)> {
    Ok(match &config.blobs {
        BlobBackend::Fs => {
            let store = FsBlobStore::open(data_dir)
                .await
                .context("opening blob store")?;
            (Arc::new(store), format!("fs:{}", data_dir.display()))
        }
        BlobBackend::S3(s3) => {
            let describe = format!("s3:{}", s3.bucket);
            (Arc::new(S3BlobStore::connect(s3.clone()).await), describe)
        }
    })
}

/// The blob and metadata stores the configuration names (any mix of embedded and cloud).
async fn open_stores(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<(Arc<dyn BlobStore>, Arc<dyn MetaStore>)> {
    let (blobs, blobs_at) = open_blobs(config, data_dir).await?;
    let (meta, meta_at): (Arc<dyn MetaStore>, String) = match &config.meta {
        MetaBackend::Redb => {
            let path = data_dir.join(META_FILE);
            let store = RedbMetaStore::open(&path).context("opening metadata store")?;
            (Arc::new(store), format!("redb:{}", path.display()))
        }
        MetaBackend::DynamoDb(d) => (
            Arc::new(DynamoMetaStore::connect(d.clone(), blobs.clone()).await),
            format!("dynamodb:{}", d.table),
        ),
    };
    tracing::info!(blobs = %blobs_at, meta = %meta_at, "storage");
    Ok((blobs, meta))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if !config.listen.ip().is_loopback() && !config.allow_non_loopback {
        bail!(
            "refusing to listen on {}: Wharf has no authentication yet, so a non-loopback address \
             would let anyone push. Pass --allow-non-loopback (or WHARF_ALLOW_NON_LOOPBACK=1) \
             if that is really what you want.",
            config.listen
        );
    }
    let data_dir = data_dir(&config)?;
    let (blobs, meta) = open_stores(&config, &data_dir).await?;
    let app = api::router(AppState::new(blobs, meta));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, data = %data_dir.display(), "wharf is serving on http://{addr} with data in {}", data_dir.display());
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = stopping.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown().await;
        signal.notify_one();
    });
    let grace = async {
        stopping.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result?,
        () = grace => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "requests still in flight after the grace period were cut off"
        ),
    }
    tracing::info!("wharf stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then get [`SHUTDOWN_GRACE`] to finish.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
