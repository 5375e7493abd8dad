//! `wharf`: the whole registry in one local process (`wharf serve`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use wharf::api;
use wharf::auth::{Auth, Scope};
use wharf::config::{BlobBackend, Config, MetaBackend};
use wharf::runtime;
use wharf::storage::dynamodb::{self, DynamoMetaStore};
use wharf::storage::s3::{self, S3BlobStore};
use wharf_server::client::login::{LoginRequest, login};

mod audit;
mod catalog;
mod cp;
mod doctor;
mod gc;
mod serve;

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
        /// Allow a non-loopback listen address without `[auth]` configured: anyone who can
        /// reach the address could push.
        #[arg(long)]
        allow_non_loopback: bool,
        /// Serve only one endpoint group. `uploads` runs an upload lane: the uploads group
        /// (plus `GET /v2/` for health checks) on the same bucket and table as the registry,
        /// whose `upload_lane_url` points here.
        #[arg(long, value_enum)]
        only: Option<Only>,
    },
    /// Log in to a registry as a person, through your OIDC provider's device-code flow. Only
    /// the registry's refresh token is stored (0600); docker and podman use it through
    /// `docker-credential-wharf`.
    Login {
        /// The registry, e.g. `registry.example.com` or `127.0.0.1:5000`.
        registry: String,
        /// The OIDC provider's issuer URL (also `WHARF_OIDC_ISSUER`).
        #[arg(long, env = "WHARF_OIDC_ISSUER")]
        issuer: String,
        /// The OAuth client id registered for Wharf at the provider (also `WHARF_OIDC_CLIENT_ID`).
        #[arg(long, env = "WHARF_OIDC_CLIENT_ID")]
        client_id: String,
        /// Extra scopes to ask for (e.g. `email`, `groups`).
        #[arg(long)]
        scope: Vec<String>,
    },
    /// Copy an image or index into a Wharf repository: from an OCI layout (`oci:PATH[:TAG]`),
    /// a `docker save` archive (`docker-archive:PATH`) or another registry
    /// (`docker://HOST/NAME:TAG`). Blobs go straight to the object store where the registry
    /// offers it (so no body limit applies), skipping those already there, in parallel.
    Cp(cp::CpArgs),
    /// Smoke-test a live deployment (after `sam deploy`): the challenge, the upload routes at
    /// name depths 1 and 5, blob HEAD and GET (307 to the object store), a direct upload of
    /// wrong bytes, ten concurrent pushes; one line per check, then a verdict (exit 1 on any
    /// failure). Uses the identity `wharf cp` would, and deletes what it pushed.
    Doctor(doctor::DoctorArgs),
    /// Identity policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Administrative tasks.
    #[command(subcommand)]
    Admin(Admin),
    /// The static public catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Garbage collection: remove unreferenced blobs, expired upload sessions and abandoned
    /// staging idle for longer than the grace period; safe while the registry serves pushes.
    Gc(gc::GcArgs),
    /// The audit trail: every push, tag move and delete, with who made it (JSON lines).
    Audit(audit::AuditArgs),
}

/// Endpoint groups `wharf serve --only` can serve alone.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Only {
    /// The upload lane.
    Uploads,
}

#[derive(Subcommand, Debug)]
enum CatalogCommand {
    /// Render every public repository (per the `[auth]` policy) into a static site; a rebuild
    /// re-renders only repositories that changed.
    Build(catalog::BuildArgs),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Verify an OIDC ID token against the configured issuers and explain, for each scope,
    /// which rule allows or denies it. Exits 1 when any asked action is denied.
    Check {
        /// File holding the OIDC ID token (omit to check an anonymous caller).
        #[arg(long)]
        token: Option<PathBuf>,
        /// Scopes to check, e.g. `repository:acme/app:pull,push` (repeatable).
        #[arg(long, required = true)]
        scope: Vec<String>,
    },
    /// Validate a policy file and store it in the metadata store, for `policy_in_table = true`
    /// (every server and function sharing the table then uses it at its next start).
    Push {
        /// The policy file (TOML).
        file: PathBuf,
    },
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            allow_non_loopback,
            only,
        } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            config.allow_non_loopback |= allow_non_loopback;
            runtime::init_logging(config.log_format);
            serve(config, only).await
        }
        Command::Admin(admin) => {
            runtime::init_logging(config.log_format);
            run_admin(admin, &config).await
        }
        Command::Audit(args) => audit::run(&config, args).await,
        Command::Gc(args) => {
            runtime::init_logging(config.log_format);
            gc::run(&config, args).await
        }
        Command::Catalog(CatalogCommand::Build(args)) => {
            runtime::init_logging(config.log_format);
            catalog::build(&config, args).await
        }
        Command::Cp(args) => {
            runtime::init_logging(config.log_format);
            cp::run(args).await
        }
        Command::Doctor(args) => doctor::run(args).await,
        Command::Policy {
            command: PolicyCommand::Check { token, scope },
        } => policy_check(&config, token.as_deref(), &scope).await,
        Command::Policy {
            command: PolicyCommand::Push { file },
        } => policy_push(&config, &file).await,
        Command::Login {
            registry,
            issuer,
            client_id,
            scope,
        } => {
            let request = LoginRequest {
                registry,
                issuer,
                client_id,
                scopes: scope,
            };
            let host = login(&request, &mut std::io::stderr()).await?;
            eprintln!(
                "logged in to {host}. Docker and podman find the login through the credential \
                 helper: add \"credHelpers\": {{\"{host}\": \"wharf\"}} to ~/.docker/config.json"
            );
            Ok(())
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
            let data_dir = (config.blobs == BlobBackend::Fs)
                .then(|| runtime::data_dir(config))
                .transpose()?;
            let blobs = runtime::open_blobs(config, data_dir.as_deref()).await?;
            let store = DynamoMetaStore::connect(d.clone(), blobs).await;
            let created = dynamodb::admin::create_table(&store)
                .await
                .context("creating the table")?;
            tracing::info!(table = %d.table, created, "table ready");
        }
    }
    Ok(())
}

async fn serve(config: Config, only: Option<Only>) -> anyhow::Result<()> {
    if !config.listen.ip().is_loopback() && config.auth.is_none() && !config.allow_non_loopback {
        bail!(
            "refusing to listen on {}: no [auth] is configured, so a non-loopback address would \
             let anyone push. Configure [auth] (see the README), or pass --allow-non-loopback \
             (WHARF_ALLOW_NON_LOOPBACK=1) if that is really what you want.",
            config.listen
        );
    }
    config.check_serve_exposure()?;
    // An upload lane in a deployment reads the same secrets as the uploads function.
    let secrets = runtime::secrets_from_env()
        .await
        .context("reading the deployment secrets")?;
    let state = runtime::build_state(&config, secrets.as_ref(), runtime::KeyUse::Sign)
        .await
        .context("setting up the registry")?;
    gc::schedule(state.clone(), &config);
    let app = match only {
        None => api::router(state),
        Some(Only::Uploads) => {
            tracing::info!("serving the uploads group only (an upload lane)");
            api::uploads::lane_router(state)
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, "wharf is serving on http://{addr}");
    serve::run(
        listener,
        app,
        std::time::Duration::from_secs(config.header_read_timeout_secs.max(1)),
        shutdown(),
        SHUTDOWN_GRACE,
    )
    .await;
    tracing::info!("wharf stopped");
    Ok(())
}

/// `wharf policy push`: validates the file, then stores it in the metadata store.
async fn policy_push(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let policy =
        wharf::auth::Policy::parse(&text).context("the policy is invalid; nothing was stored")?;
    let data_dir = runtime::data_dir(config)?;
    let (_, meta) = runtime::open_stores(config, Some(&data_dir)).await?;
    meta.put_policy_document(&text)
        .await
        .context("storing the policy")?;
    eprintln!(
        "stored the policy ({} identities, {} public patterns); servers with policy_in_table = true \
         use it from their next start",
        policy.identities.len(),
        policy.public.len()
    );
    Ok(())
}

/// `wharf policy check`: prints the decision for each scope, and why.
#[expect(
    clippy::print_stdout,
    reason = "the explanation is the command's output"
)]
async fn policy_check(
    config: &Config,
    token: Option<&std::path::Path>,
    scopes: &[String],
) -> anyhow::Result<()> {
    let auth_config = config
        .auth
        .as_ref()
        .context("no [auth] section in the configuration")?;
    let data_dir = runtime::data_dir(config)?;
    let (_, meta) = runtime::open_stores(config, Some(&data_dir)).await?;
    let policy = runtime::load_policy(auth_config, meta.as_ref()).await?;
    let keys = Auth::load_keys(auth_config, &data_dir)?;
    let auth = Auth::new(auth_config, policy, keys)?;
    let identity = match token {
        Some(path) => {
            let raw = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let identity = auth
                .identify(raw.trim())
                .await
                .context("the token was refused")?;
            println!(
                "identity: issuer {:?}, subject {:?}",
                identity.issuer, identity.subject
            );
            Some(identity)
        }
        None => {
            println!("identity: anonymous");
            None
        }
    };
    let mut denied = false;
    for raw in scopes {
        match Scope::parse(raw)? {
            Scope::Repository(repo, actions) => {
                let allowed = auth.policy().allowed(identity.as_ref(), &repo);
                denied |= !actions.is_subset(&allowed);
                for line in auth.policy().explain(identity.as_ref(), &repo, &actions) {
                    println!("  {line}");
                }
            }
            Scope::Catalog => {
                let patterns = auth.policy().pull_patterns(identity.as_ref());
                println!(
                    "  the catalog lists repositories matching: {}",
                    patterns.join(", ")
                );
            }
        }
    }
    if denied {
        bail!("at least one asked action is denied");
    }
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
