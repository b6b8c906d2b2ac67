//! `watch`: the services' `develop.watch` triggers driven by inotify — `sync` copies changed
//! files into the running containers through the archive API, `rebuild` builds the image and
//! recreates the service, `sync+restart` syncs then restarts; `ignore` uses .dockerignore syntax.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_cli::IgnoreMatcher;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::Engine;
use crate::progress::Progress;
use crate::project::Project;
use crate::up;

/// One `develop.watch` entry of a service, its path made absolute.
struct Trigger {
    service: String,
    path: PathBuf,
    action: String,
    target: Option<String>,
    ignore: IgnoreMatcher,
    /// `include` patterns: when given, only matching paths count.
    include: Option<IgnoreMatcher>,
    /// The service's build context and its .dockerignore, which apply under it too.
    context: Option<(PathBuf, IgnoreMatcher)>,
}

/// What Compose never syncs: editors' temporary files and `.git`.
const DEFAULT_IGNORE: &str = ".git\n**/.git\n*.swp\n**/*.swp\n*~\n**/*~\n.#*\n**/.#*\n4913\n**/4913\n*___jb_tmp___\n**/*___jb_tmp___\n*___jb_old___\n**/*___jb_old___";

impl Trigger {
    /// The changed path relative to the trigger's path, unless outside it, not valid UTF-8,
    /// ignored (by the trigger, Compose's defaults or the build context's .dockerignore) or
    /// not included.
    fn relative(&self, changed: &Path) -> Option<String> {
        let rel = changed.strip_prefix(&self.path).ok()?;
        let rel = rel.to_str()?.to_string();
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        if !rel.is_empty() && (self.ignore.excluded(&rel) || default_ignore().excluded(&rel)) {
            return None;
        }
        if let Some(inc) = &self.include {
            if !rel.is_empty() && !inc.excluded(&rel) {
                return None;
            }
        }
        if let Some((dir, m)) = &self.context {
            if let Ok(in_ctx) = changed.strip_prefix(dir) {
                let in_ctx = in_ctx.to_string_lossy();
                if !in_ctx.is_empty() && m.excluded(&in_ctx) {
                    return None;
                }
            }
        }
        Some(rel)
    }
}

fn default_ignore() -> &'static IgnoreMatcher {
    static M: std::sync::OnceLock<IgnoreMatcher> = std::sync::OnceLock::new();
    M.get_or_init(|| IgnoreMatcher::parse(DEFAULT_IGNORE))
}

fn triggers(p: &Project, services: &[String]) -> Result<Vec<Trigger>, String> {
    let mut out = Vec::new();
    for s in p.selection(services, true)? {
        let svc = &p.model.services[&s];
        for w in svc.develop.iter().flat_map(|d| &d.watch) {
            if !matches!(w.action.as_str(), "sync" | "rebuild" | "sync+restart") {
                return Err(format!(
                    "service {s:?}: watch action {:?} is not supported (sync, rebuild, sync+restart)",
                    w.action
                ));
            }
            if w.action != "rebuild" && w.target.is_none() {
                return Err(format!(
                    "service {s:?}: watch action {} needs a target",
                    w.action
                ));
            }
            if w.action == "rebuild" && svc.build.is_none() {
                return Err(format!(
                    "service {s:?}: watch action rebuild needs a build section"
                ));
            }
            let context = svc.build.as_ref().map(|b| {
                let dir = p.working_dir.join(b.context.as_deref().unwrap_or("."));
                let text = std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default();
                (dir, IgnoreMatcher::parse(&text))
            });
            out.push(Trigger {
                service: s.clone(),
                path: p.working_dir.join(&w.path),
                action: w.action.clone(),
                target: w.target.clone(),
                ignore: IgnoreMatcher::parse(&w.ignore.join("\n")),
                include: (!w.include.is_empty())
                    .then(|| IgnoreMatcher::parse(&w.include.join("\n"))),
                context,
            });
        }
    }
    if out.is_empty() {
        return Err("none of the selected services is configured for watch, consider setting a 'develop' section".into());
    }
    Ok(out)
}

const MASK: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_ATTRIB);

/// Watches `dir` and every directory under it; a symlink is never followed (a directory
/// swapped for a link to elsewhere is not watched through it).
fn add_tree(
    ino: &Inotify,
    dir: &Path,
    wds: &mut HashMap<nix::sys::inotify::WatchDescriptor, PathBuf>,
) {
    let flags = MASK | AddWatchFlags::IN_DONT_FOLLOW | AddWatchFlags::IN_ONLYDIR;
    let wd = match ino.add_watch(dir, flags) {
        Ok(wd) => wd,
        Err(nix::errno::Errno::ENOTDIR) | Err(nix::errno::Errno::ENOENT) => return,
        Err(e) => {
            eprintln!("watch: cannot watch {}: {e}", dir.display());
            return;
        }
    };
    wds.insert(wd, dir.to_path_buf());
    for ent in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if ent.file_type().is_ok_and(|t| t.is_dir()) {
            add_tree(ino, &ent.path(), wds);
        }
    }
}

/// A thread reading inotify events, sending each changed path.
fn spawn_watcher(roots: Vec<PathBuf>) -> Result<mpsc::UnboundedReceiver<PathBuf>, String> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| format!("inotify: {e}"))?;
    let mut wds = HashMap::new();
    for r in &roots {
        if r.is_dir() {
            add_tree(&ino, r, &mut wds);
            continue;
        }
        // A file is watched through its directory, that directory alone.
        let dir = r.parent().map(Path::to_path_buf).unwrap_or_default();
        if !dir.is_dir() {
            return Err(format!("watch path {} does not exist", r.display()));
        }
        let flags = MASK | AddWatchFlags::IN_DONT_FOLLOW | AddWatchFlags::IN_ONLYDIR;
        let wd = ino
            .add_watch(&dir, flags)
            .map_err(|e| format!("watch: cannot watch {}: {e}", dir.display()))?;
        wds.insert(wd, dir);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        let Ok(events) = ino.read_events() else {
            return;
        };
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                eprintln!("watch: too many changes at once; some were missed");
                continue;
            }
            // A watched directory that went away (or was moved out) is forgotten, so that
            // later events cannot be read against its old path.
            if ev
                .mask
                .intersects(AddWatchFlags::IN_IGNORED | AddWatchFlags::IN_MOVE_SELF)
            {
                if let Some(old) = wds.remove(&ev.wd) {
                    wds.retain(|_, p| !p.starts_with(&old));
                }
                continue;
            }
            let (Some(dir), Some(name)) = (wds.get(&ev.wd), ev.name) else {
                continue;
            };
            let path = dir.join(name);
            if ev.mask.contains(AddWatchFlags::IN_ISDIR)
                && ev
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            {
                add_tree(&ino, &path, &mut wds);
            }
            if tx.send(path).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Copies `changes` (relative to the trigger's path) into the service's running containers
/// under the target; removed paths are removed there.
async fn sync(
    e: &Engine,
    p: &Project,
    t: &Trigger,
    changes: &BTreeSet<String>,
) -> Result<(), String> {
    let target = t.target.as_deref().unwrap_or("/");
    let ctrs =
        crate::down::service_containers(e, p, std::slice::from_ref(&t.service), false).await?;
    // Sources are opened only inside the trigger's path as it really is: no component of
    // a changed path may be a symlink that leads out of it.
    let root = std::fs::canonicalize(&t.path)
        .map_err(|e| format!("watch path {}: {e}", t.path.display()))?;
    let mut tar = Tar::new(&root);
    let mut gone = Vec::new();
    for rel in changes {
        let src = if rel.is_empty() {
            t.path.clone()
        } else {
            t.path.join(rel)
        };
        let dst = if rel.is_empty() {
            target.to_string()
        } else {
            format!("{}/{rel}", target.trim_end_matches('/'))
        };
        let name = dst.trim_start_matches('/').to_string();
        match std::fs::symlink_metadata(&src) {
            Ok(_) if !tar.inside(&src) => continue,
            Ok(m) if m.is_dir() => tar.add_dir(t, &src, &name)?,
            Ok(_) => tar.add(&src, &name)?,
            Err(_) => gone.push(dst),
        }
    }
    let tar = bytes::Bytes::from(tar.finish()?);
    for c in &ctrs {
        e.put_archive(&c.id, "/", tar.clone())
            .await
            .map_err(|e| format!("syncing into {}: {e}", c.name))?;
        if !gone.is_empty() {
            let mut cmd = vec!["rm".to_string(), "-rf".to_string()];
            cmd.extend(gone.iter().cloned());
            let v =
                e.c.post(
                    &format!("/containers/{}/exec", berth_cli::client::enc(&c.id)),
                    Some(json!({"Cmd": cmd})),
                )
                .await
                .map_err(|e| e.to_string())?;
            let Some(exec) = v["Id"].as_str() else {
                return Err(format!("removing files in {}: no exec id", c.name));
            };
            e.c.post(
                &format!("/exec/{}/start", berth_cli::client::enc(exec)),
                Some(json!({"Detach": true})),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The most one sync sends (a branch switch or a package install in a synced path should be
/// a rebuild).
const MAX_SYNC: u64 = 512 << 20;

/// The tar one sync sends, from sources that must stay inside `root`.
struct Tar {
    root: PathBuf,
    b: tar::Builder<Vec<u8>>,
    size: u64,
}

impl Tar {
    fn new(root: &Path) -> Tar {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        Tar {
            root: root.to_path_buf(),
            b,
            size: 0,
        }
    }

    /// The path's directory resolves inside the root (the path itself may be a symlink: it
    /// is stored as one, never followed).
    fn inside(&self, path: &Path) -> bool {
        let parent = path.parent().unwrap_or(path);
        std::fs::canonicalize(parent).is_ok_and(|p| p.starts_with(&self.root))
    }

    fn add(&mut self, src: &Path, name: &str) -> Result<(), String> {
        let m = std::fs::symlink_metadata(src)
            .map_err(|e| format!("reading {}: {e}", src.display()))?;
        self.size += m.len();
        if self.size > MAX_SYNC {
            return Err(format!(
                "sync of more than {} MiB at once; use a rebuild for this path",
                MAX_SYNC >> 20
            ));
        }
        self.b
            .append_path_with_name(src, name)
            .map_err(|e| format!("reading {}: {e}", src.display()))
    }

    /// A directory and what is under it that the trigger does not ignore; symlinks are
    /// stored as links, never followed.
    fn add_dir(&mut self, t: &Trigger, dir: &Path, name: &str) -> Result<(), String> {
        self.add(dir, name)?;
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for ent in entries {
            let path = ent.path();
            let Some(file) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if t.relative(&path).is_none() {
                continue;
            }
            let child = format!("{name}/{file}");
            if ent.file_type().is_ok_and(|ft| ft.is_dir()) {
                self.add_dir(t, &path, &child)?;
            } else {
                self.add(&path, &child)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, String> {
        self.b.into_inner().map_err(|e| e.to_string())
    }
}

async fn rebuild(
    e: &Engine,
    p: &Arc<Project>,
    service: &str,
    pr: &Arc<Progress>,
) -> Result<(), String> {
    let svc = &p.model.services[service];
    crate::build::build(e, p, service, svc, &p.image_name(service, svc), pr).await?;
    let o = up_opts(vec![service.to_string()], true, up::BuildPolicy::Never);
    up::up(e, p.clone(), o, pr.clone()).await.map(drop)
}

fn up_opts(services: Vec<String>, no_deps: bool, build: up::BuildPolicy) -> up::UpOpts {
    up::UpOpts {
        services,
        no_deps,
        recreate: up::Recreate::Diverged,
        remove_orphans: false,
        scale: BTreeMap::new(),
        no_start: false,
        build,
        pull: None,
        timeout: None,
        parallel: None,
        quiet_pull: false,
    }
}

/// Brings the services up (unless `no_up`), then acts on changes until interrupted.
pub async fn run(
    e: &Engine,
    p: Arc<Project>,
    services: &[String],
    no_up: bool,
    pr: Arc<Progress>,
) -> Result<(), String> {
    let ts = triggers(&p, services)?;
    // One handler for the whole session: a Ctrl-C during a sync or rebuild is not lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("signal handler: {e}"))?;
    if !no_up {
        let o = up_opts(services.to_vec(), false, up::BuildPolicy::Missing);
        up::up(e, p.clone(), o, pr.clone()).await?;
        pr.reset();
    }
    let mut rx = spawn_watcher(ts.iter().map(|t| t.path.clone()).collect())?;
    eprintln!("Watch enabled");
    loop {
        let first = tokio::select! {
            p = rx.recv() => p,
            _ = interrupt.recv() => return Ok(()),
        };
        let Some(first) = first else {
            return Err("the inotify watcher stopped".into());
        };
        let mut changed = vec![first];
        // Changes come in bursts (an editor's save is several events): what comes in the
        // next moment joins this batch.
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(more)) = tokio::time::timeout_at(until, rx.recv()).await {
            changed.push(more);
        }
        for (i, t) in ts.iter().enumerate() {
            let rels: BTreeSet<String> = changed.iter().filter_map(|c| t.relative(c)).collect();
            if rels.is_empty() {
                continue;
            }
            // A service with several triggers rebuilds once for a burst.
            if t.action == "rebuild"
                && ts[..i].iter().any(|o| {
                    o.service == t.service
                        && o.action == "rebuild"
                        && changed.iter().any(|c| o.relative(c).is_some())
                })
            {
                continue;
            }
            pr.reset();
            let res = match t.action.as_str() {
                "rebuild" => {
                    eprintln!(
                        "Rebuilding service {:?} after changes were detected...",
                        t.service
                    );
                    rebuild(e, &p, &t.service, &pr).await
                }
                action => {
                    eprintln!(
                        "Syncing service {:?} after {} changes were detected",
                        t.service,
                        rels.len()
                    );
                    match sync(e, &p, t, &rels).await {
                        Ok(()) if action == "sync+restart" => {
                            match crate::down::service_containers(
                                e,
                                &p,
                                std::slice::from_ref(&t.service),
                                false,
                            )
                            .await
                            {
                                Ok(ctrs) => {
                                    crate::down::each(
                                        e,
                                        &p,
                                        ctrs,
                                        crate::down::Act::Restart(None),
                                        &pr,
                                    )
                                    .await
                                }
                                Err(m) => Err(m),
                            }
                        }
                        r => r,
                    }
                }
            };
            if let Err(m) = res {
                eprintln!("{m}");
            }
        }
    }
}
