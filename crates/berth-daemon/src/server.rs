//! Daemon start-up and shutdown: hosts checked, the data and exec roots prepared and locked,
//! the stores and services opened and composed into the [`Daemon`], containers restored, the
//! API served on every host (through `listen` and `front`) until a signal. It owns the order
//! of start-up only; requests are `front`'s and the routes', connections `listen`'s.

use crate::config::DaemonConfig;
use crate::front::Api;
use crate::listen;
use crate::routes;
use crate::state::Daemon;
use std::sync::Arc;

pub async fn run(mut cfg: DaemonConfig) -> Result<(), String> {
    // Hosts are checked before anything else happens: a refused one stops the daemon.
    let mut tcp = Vec::new();
    for host in &cfg.hosts {
        if let Some(addr) = host.strip_prefix("tcp://") {
            tcp.push(listen::check_tcp(host, addr, &cfg.api).await?);
        } else if !host.starts_with("unix://") {
            return Err(format!(
                "unsupported host {host:?}: use unix://PATH or tcp://HOST:PORT"
            ));
        }
    }
    for dir in [&mut cfg.data_root, &mut cfg.exec_root] {
        std::fs::create_dir_all(&*dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Real paths: mount points below the roots are recognised in /proc/self/mountinfo.
        *dir = std::fs::canonicalize(&*dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // One daemon per data root: a second one would restore and monitor the same shims.
    let lock_path = cfg.data_root.join("berth.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| {
            format!(
                "another berth daemon is using {} ({e})",
                cfg.data_root.display()
            )
        })?;
    std::fs::create_dir_all(cfg.data_root.join("containers"))
        .map_err(|e| format!("{}: {e}", cfg.data_root.display()))?;
    // Containers removed while the daemon was down to their last files. The directory itself
    // stays: boot needs no free space (making a directory can take a block).
    let trash = cfg.data_root.join("trash");
    for e in std::fs::read_dir(&trash).into_iter().flatten().flatten() {
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(e.path()),
            _ => std::fs::remove_file(e.path()),
        };
    }
    // Run dirs of stopped containers whose deletion did not finish.
    let _ = std::fs::remove_dir_all(cfg.exec_root.join("trash"));
    // Contexts and staging dirs of builds the last run did not finish.
    let _ = std::fs::remove_dir_all(cfg.data_root.join("builder").join("tmp"));
    std::fs::create_dir_all(&trash).map_err(|e| format!("{}: {e}", trash.display()))?;
    crate::container::rootfs::make_init_layer(&cfg.data_root)
        .map_err(|e| format!("init layer: {}", e.0.message))?;
    let images = berth_image::Store::open(&cfg.data_root).map_err(|e| e.to_string())?;
    std::fs::write(&cfg.pidfile, format!("{}\n", std::process::id()))
        .map_err(|e| format!("pidfile {}: {e}", cfg.pidfile.display()))?;
    let net = crate::container::network::open(&cfg).await?;
    let registry = berth_distribution::Client::new(berth_distribution::ClientConfig {
        insecure_registries: cfg.insecure_registries.clone(),
        mirrors: cfg.mirrors.clone().into_iter().collect(),
        user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        ..Default::default()
    })
    .map_err(|e| format!("registry client: {e}"))?;
    let remap = match cfg.userns_remap.as_deref() {
        Some(spec) => {
            let r = crate::userns::Remap::setup(spec)?;
            let (uid, gid) = r.root();
            tracing::info!(
                "user namespaces: containers' root is {uid}:{gid} ({})",
                r.name
            );
            Some(r)
        }
        None => None,
    };
    let volumes = berth_volume::VolumeService::load(
        &cfg.data_root,
        remap.as_ref().map(|r| r.root()),
        &|dir| crate::quarantine::move_aside(&cfg.data_root, "volumes", dir),
    )
    .map_err(|e| format!("volumes: {e}"))?;
    let containers = crate::container::service::Service::new(crate::container::service::Deps {
        cfg: cfg.clone(),
        images: Arc::new(images),
        net,
        volumes,
        events: Arc::new(crate::events::Events::default()),
        remap,
    });
    let daemon = Arc::new(Daemon::new(containers, registry));
    let to_restart = daemon.containers.restore().await.map_err(|e| e.0.message)?;
    let swarm = berth_swarm::cluster::Cluster::new(
        berth_swarm::cluster::NodeConfig {
            root: cfg.data_root.join("swarm"),
        },
        Arc::new(crate::swarm_exec::SwarmExecutor::new(
            Arc::downgrade(&daemon),
            &cfg.exec_root,
        )),
    );
    let _ = daemon.swarm.set(swarm.clone());
    tokio::spawn(crate::container::service::retry_unsaved(Arc::downgrade(
        &daemon.containers,
    )));
    let router = Api {
        router: routes::router(daemon.clone()),
        cors: Arc::new(cfg.api.cors_origins.clone()),
    };
    let cap = Arc::new(tokio::sync::Semaphore::new(listen::connection_cap()));
    let tls = match &cfg.api.tls {
        Some(t) => Some(listen::acceptor(t)?),
        None => None,
    };
    for host in &cfg.hosts {
        if let Some(path) = host.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{path}: {e}"))?;
            }
            let l = tokio::net::UnixListener::bind(path).map_err(|e| format!("{path}: {e}"))?;
            listen::secure_socket(path, &cfg.api.group);
            tracing::info!("API listening on {host}");
            listen::serve_unix(l, router.clone(), cap.clone());
        }
    }
    for host in tcp {
        listen::serve_tcp(host, tls.clone(), router.clone(), cap.clone()).await?;
    }
    daemon.boot_restarts(to_restart);
    // A node that was part of a swarm rejoins it (its task containers kept running).
    {
        let swarm = swarm.clone();
        tokio::spawn(async move {
            if let Err(e) = swarm.restore().await {
                tracing::error!("swarm: rejoining the cluster: {}", e.message);
            }
        });
    }
    // What booting touched of the binary (and freed on the heap) is given back once the daemon
    // has settled, as the shim does once its container runs.
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let _ = tokio::task::spawn_blocking(berth_shim::trim::trim).await;
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; containers keep running under their shims");
    swarm.shutdown().await;
    for host in &cfg.hosts {
        if let Some(path) = host.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
    }
    let _ = std::fs::remove_file(&cfg.pidfile);
    Ok(())
}
