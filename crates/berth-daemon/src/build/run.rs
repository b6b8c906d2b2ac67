//! The RUN step: its command line (shell form, heredocs, build args in the environment), its
//! `--mount` and `--network` flags, and the build container that runs it (created, started,
//! its output streamed as build output, waited for, committed and removed). It reaches the
//! container service only through its methods (`create_for_build`, `start`, `wait`, `remove`),
//! the container's handle and `container::logs`.

use super::options::PROXY_ARGS;
use super::{bad_msg, short, BResult, Builder, Failure, Stage, Work};
use crate::error::Error;
use berth_api::progress::Message;
use berth_build::cache::Inputs;
use berth_build::instruction::Command;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What RUN's flags add to its container.
#[derive(Default)]
pub(super) struct RunMounts {
    binds: Vec<String>,
    tmpfs: BTreeMap<String, String>,
    network: Option<String>,
}

impl Builder {
    /// RUN: the command line and environment, then the step (cached or run in a container).
    pub(super) async fn run_step(
        &self,
        st: &mut Stage,
        cmd: &Command,
        flags: &[String],
        heredocs: &[berth_build::Heredoc],
        mut inputs: Inputs,
    ) -> BResult<()> {
        let argv = match cmd {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let script = heredoc_script(s, heredocs);
                st.shell()
                    .into_iter()
                    .chain(std::iter::once(script))
                    .collect()
            }
        };
        // Declared args join the environment (ENV wins) and the cache key.
        let env = st.env();
        let mut run_env = env.clone();
        let mut shown = Vec::new();
        for (k, v) in &st.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                run_env.push(format!("{k}={v}"));
            }
            if !PROXY_ARGS.contains(&k.as_str()) {
                inputs.args.insert(k.clone(), v.clone());
                shown.push(format!("{k}={v}"));
            }
        }
        for (k, v) in &self.opts.build_args {
            if PROXY_ARGS.contains(&k.as_str()) && !st.args.contains_key(k) {
                run_env.push(format!("{k}={v}"));
            }
        }
        let mut created_by = argv.join(" ");
        if !shown.is_empty() {
            created_by = format!("|{} {} {created_by}", shown.len(), shown.join(" "));
        }
        let mounts = self.run_mounts(flags)?;
        self.commit_step(
            st,
            inputs,
            created_by,
            Work::Run {
                argv,
                env: run_env,
                mounts,
            },
        )
        .await
    }

    /// RUN's `--mount` (cache, bind from the context, tmpfs) and `--network` flags.
    fn run_mounts(&self, flags: &[String]) -> BResult<RunMounts> {
        let mut m = RunMounts::default();
        for f in flags {
            if let Some(n) = f.strip_prefix("--network=") {
                m.network = Some(match n {
                    "default" => self.opts.network.clone(),
                    "none" | "host" => n.to_string(),
                    other => {
                        return Err(bad_msg(format!(
                            "unsupported RUN --network mode {other:?} (default, none, host)"
                        )))
                    }
                });
                continue;
            }
            let Some(spec) = f.strip_prefix("--mount=") else {
                if f.starts_with("--security") {
                    return Err(bad_msg(format!("{f} is not supported by berth's builder")));
                }
                continue;
            };
            let mut kv: BTreeMap<String, String> = BTreeMap::new();
            for part in spec.split(',') {
                let (k, v) = part.split_once('=').unwrap_or((part, "true"));
                kv.insert(k.to_ascii_lowercase(), v.to_string());
            }
            let get = |ks: &[&str]| ks.iter().find_map(|k| kv.get(*k).cloned());
            let kind = get(&["type"]).unwrap_or_else(|| "bind".to_string());
            if !matches!(kind.as_str(), "cache" | "tmpfs" | "bind") {
                return Err(bad_msg(format!(
                    "RUN --mount=type={kind} is not supported by berth's builder (cache, bind, tmpfs)"
                )));
            }
            let target = get(&["target", "dst", "destination"])
                .ok_or_else(|| bad_msg(format!("mount {spec:?}: target is required")))?;
            if !target.starts_with('/') {
                return Err(bad_msg(format!("mount {spec:?}: target must be absolute")));
            }
            let ro = get(&["readonly", "ro"]).is_some_and(|v| v != "false");
            match kind.as_str() {
                "cache" => {
                    // One directory per cache id (the target when no id), kept across builds.
                    let id = get(&["id"]).unwrap_or_else(|| target.clone());
                    let name = berth_build::cache::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                        id.as_bytes(),
                    ));
                    let dir = self
                        .d
                        .cfg
                        .data_root
                        .join("builder")
                        .join("cachemounts")
                        .join(name);
                    std::fs::create_dir_all(&dir)?;
                    let opt = if ro { ":ro" } else { "" };
                    m.binds.push(format!("{}:{target}{opt}", dir.display()));
                }
                "tmpfs" => {
                    let opts = get(&["size"])
                        .map(|s| format!("size={s}"))
                        .unwrap_or_default();
                    m.tmpfs.insert(target, opts);
                }
                _ => {
                    // "bind", the default.
                    if let Some(from) = get(&["from"]) {
                        return Err(bad_msg(format!(
                            "RUN --mount=type=bind,from={from} is not supported by berth's builder (bind mounts come from the context)"
                        )));
                    }
                    let src = berth_build::ignore::clean(
                        get(&["source", "src"])
                            .unwrap_or_default()
                            .trim_start_matches('/'),
                    );
                    if src.starts_with("..") {
                        return Err(bad_msg(format!(
                            "mount {spec:?}: source is outside the context"
                        )));
                    }
                    // Symlinks in the context resolve inside it, never to the host's files.
                    let missing = || {
                        bad_msg(format!(
                            "mount {spec:?}: {src} not found in the build context"
                        ))
                    };
                    let host = berth_image::archive::resolve_in_root(&self.ctx, Path::new(&src))
                        .map_err(|_| missing())?;
                    match std::fs::symlink_metadata(&host) {
                        Err(_) => return Err(missing()),
                        Ok(m) if m.file_type().is_symlink() => {
                            return Err(bad_msg(format!(
                                "mount {spec:?}: {src} is a symlink; bind a file or directory"
                            )))
                        }
                        Ok(_) => {}
                    }
                    let rw = get(&["rw", "readwrite"]).is_some_and(|v| v != "false");
                    let opt = if rw { "" } else { ":ro" };
                    m.binds.push(format!("{}:{target}{opt}", host.display()));
                }
            }
        }
        Ok(m)
    }

    /// RUN: a container from the stage's image runs `argv`; its changes become the layer.
    pub(super) async fn run_container(
        &self,
        st: &Stage,
        argv: Vec<String>,
        env: Vec<String>,
        mounts: RunMounts,
        opts: berth_image::CommitOptions,
    ) -> BResult<berth_image::Image> {
        if st.image.is_empty() {
            return Err(bad_msg(format!(
                "The command '{}' cannot run: the stage has no filesystem (FROM scratch)",
                argv.join(" ")
            )));
        }
        let config = berth_api::container::Config {
            image: st.image.clone(),
            cmd: Some(argv.clone()),
            entrypoint: Some(Vec::new()),
            env: Some(env),
            working_dir: st.str("WorkingDir"),
            user: st.str("User"),
            attach_stdout: true,
            attach_stderr: true,
            healthcheck: Some(berth_api::container::HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let host_config = berth_api::container::HostConfig {
            network_mode: mounts.network.unwrap_or_else(|| self.opts.network.clone()),
            binds: (!mounts.binds.is_empty()).then_some(mounts.binds),
            tmpfs: (!mounts.tmpfs.is_empty()).then_some(mounts.tmpfs),
            ..self.opts.run_host.clone()
        };
        let req = berth_api::container::CreateRequest {
            config,
            host_config,
            networking_config: None,
        };
        let id = self.d.create_for_build(req).await?;
        let c = self.d.find(&id)?;
        self.say(format!(" ---> Running in {}\n", short(&id)));
        let res = self.run_in(&c, &argv, opts).await;
        // Kept, it becomes an ordinary stopped container (no longer removed at boot).
        if res.is_ok() && self.opts.keep_containers && c.update_durable(|r| r.build = false).is_ok()
        {
            return res;
        }
        let _ = self.d.remove(&c, true, true).await;
        if res.is_ok() {
            self.say(format!(
                " ---> Removed intermediate container {}\n",
                short(&id)
            ));
        }
        res
    }

    pub(super) async fn run_in(
        &self,
        c: &Arc<crate::container::handle::Container>,
        argv: &[String],
        opts: berth_image::CommitOptions,
    ) -> BResult<berth_image::Image> {
        self.d.start(c).await?;
        let (ltx, mut lrx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let lopts = crate::container::logs::Options {
            stdout: true,
            stderr: true,
            follow: true,
            timestamps: false,
            tail: None,
            since: None,
            until: None,
            tty: false,
            details: None,
        };
        let logs = tokio::spawn(crate::container::logs::stream(c.clone(), lopts, ltx));
        let tx = self.tx.clone();
        let quiet = self.opts.quiet;
        let forward = tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = lrx.recv().await {
                buf.extend_from_slice(&chunk);
                // Multiplexed frames: 8-byte header (stream, 0, 0, 0, big-endian size).
                while buf.len() >= 8 {
                    let size = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                    if buf.len() < 8 + size {
                        break;
                    }
                    let mut text = String::from_utf8_lossy(&buf[8..8 + size]).to_string();
                    // The classic builder shows RUN's stderr in red.
                    if buf[0] == berth_api::stdcopy::STDERR {
                        text = format!("\x1b[91m{text}\x1b[0m");
                    }
                    buf.drain(..8 + size);
                    if !quiet {
                        let _ = tx.send(Bytes::from(Message::stream(text).line()));
                    }
                }
            }
        });
        let code = self.d.wait(c, "not-running").await?;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), logs).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), forward).await;
        if code != 0 {
            return Err(Failure {
                code: Some(code),
                msg: format!(
                    "The command '{}' returned a non-zero code: {code}",
                    argv.join(" ")
                ),
            });
        }
        let (d, c2) = (self.d.clone(), c.clone());
        let parent = c.rec().image_id.clone();
        let mut opts = opts;
        opts.ids = d.remap_of(&c.rec()).map(|r| r.ids.clone());
        let img = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(c2.paths.upper())?;
            d.images
                .commit(&c2.paths.upper(), Some(&parent), &opts)
                .map_err(Error::from)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        Ok(img)
    }
}

/// A RUN shell command with its heredocs: `RUN <<EOF` alone runs the body as the script;
/// otherwise the heredocs follow the command line as the shell's own heredocs.
fn heredoc_script(cmd: &str, heredocs: &[berth_build::Heredoc]) -> String {
    match heredocs {
        [] => cmd.to_string(),
        [h] if cmd
            .trim()
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(['"', '\''])
            == h.name =>
        {
            h.content.clone()
        }
        hs => {
            let mut s = cmd.to_string();
            s.push('\n');
            for h in hs {
                s.push_str(&h.content);
                s.push_str(&h.name);
                s.push('\n');
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_scripts() {
        let h = berth_build::Heredoc {
            name: "EOF".into(),
            content: "echo a\necho b\n".into(),
            expand: true,
        };
        assert_eq!(
            heredoc_script("<<EOF", std::slice::from_ref(&h)),
            "echo a\necho b\n"
        );
        assert_eq!(
            heredoc_script("cat > /f <<EOF", std::slice::from_ref(&h)),
            "cat > /f <<EOF\necho a\necho b\nEOF\n"
        );
        assert_eq!(heredoc_script("echo x", &[]), "echo x");
    }
}
